"""speechbrain-dsl: Dynamic Switch Layers for neural audio codecs in SpeechBrain."""

__version__ = "0.1.0"
