"""Wav files written whole or not at all: 16-bit PCM through a temporary file and a rename.

The one audio format the look-alike corpora write (:mod:`speechbrain_dsl.data.synthetic`,
:mod:`speechbrain_dsl.data.recordings`); the temporary name and the rename are those of
:mod:`speechbrain_dsl.atomic`.

Example
-------
>>> import tempfile
>>> import numpy as np
>>> path = f"{tempfile.mkdtemp()}/a.wav"
>>> write_atomic_wav(path, np.zeros(160, np.float32), 16000)
>>> sf.info(path).subtype, sf.info(path).frames
('PCM_16', 160)
"""

import soundfile as sf

from speechbrain_dsl.atomic import atomic_path

__all__ = ["write_atomic_wav"]


def write_atomic_wav(path, audio, sample_rate):
    """Writes 16-bit PCM ``audio`` to ``path`` via a temporary file and a rename."""
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16")
