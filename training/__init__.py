"""Training for Matryoshka models: data pipelines, backbones, strategy selection, the fit
program and evaluation of representations (installed as `mrl_keras.training`).

May import `mrl_keras`, TensorFlow and TensorFlow Datasets; never `export` or `serving`.
"""
