"""mrl_keras: Matryoshka Representation Learning for Keras 3."""

from mrl_keras.version import __version__

__all__ = ["__version__"]
