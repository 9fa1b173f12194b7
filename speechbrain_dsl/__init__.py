"""speechbrain-dsl: Dynamic Switch Layers for neural audio codecs in SpeechBrain."""

from speechbrain_dsl import _moved

__version__ = "0.1.0"

_moved.install()
