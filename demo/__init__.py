"""`mrl demo`: the whole life of a Matryoshka model end to end (installed as `mrl_keras.demo`).

The one package that may import all the others (training, export, serving).
"""
