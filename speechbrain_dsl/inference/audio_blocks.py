"""Reading an audio file a block at a time, resampled to the model's rate.

What lets ``encode_file`` tokenize an hour-long recording in bounded memory: each
block is read with ``soundfile``, checked and resampled with torchaudio.
"""

import math
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_dsl.checks import MAX_PEAK

__all__ = ["read_blocks"]


def _check_block(audio: np.ndarray, name: str) -> None:
    """The checks ``DSLCodec.check_input`` makes on a whole input, on one block of a file."""
    if not np.isfinite(audio).all():
        raise ValueError(f"{name}: contains NaN or inf values")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > MAX_PEAK:
        raise ValueError(f"{name}: expected a waveform in [-1, 1], got a peak of {peak:g}")


def read_blocks(
    reader: sf.SoundFile, target_rate: int, block_seconds: float, name: str = "audio"
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of an open sound file at ``target_rate``, ``block_seconds`` each.

    Resampling (``torchaudio.functional.resample``) is done per block on the
    block plus one second of audio either side, cut at whole resampling periods,
    and the margins' output is dropped: every output sample sees the input it
    sees when the whole file is resampled at once, so the blocks concatenate to
    the whole file's resampled signal while memory holds one block.

    Example
    -------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> sf.write(buffer, np.random.default_rng(0).uniform(-0.5, 0.5, 22050 * 3), 22050,
    ...          format="WAV", subtype="FLOAT")
    >>> _ = buffer.seek(0)
    >>> with sf.SoundFile(buffer) as reader:
    ...     blocks = list(read_blocks(reader, 16000, 1.0))
    >>> _ = buffer.seek(0)
    >>> audio = torch.from_numpy(sf.read(buffer, dtype="float32")[0])
    >>> whole = torchaudio.functional.resample(audio, 22050, 16000)
    >>> [len(b) for b in blocks], np.allclose(np.concatenate(blocks), whole.numpy(), atol=1e-6)
    ([16000, 16000, 16000], True)
    """
    rate, total = reader.samplerate, reader.frames
    if rate == target_rate:
        step = max(1, round(block_seconds * rate))
        reader.seek(0)
        while True:
            audio = reader.read(step, dtype="float32", always_2d=True)
            if not len(audio):
                return
            _check_block(audio, name)
            yield torch.from_numpy(audio).mean(1).numpy()
    gcd = math.gcd(rate, target_rate)
    period, out_period = rate // gcd, target_rate // gcd  # input / output samples per period
    step = max(1, round(block_seconds * rate / period)) * period
    margin = math.ceil(rate / period) * period  # >= 1 s: far beyond the sinc kernel's reach
    for start in range(0, total, step):
        end = min(start + step, total)
        left, right = max(0, start - margin), min(total, end + margin)
        reader.seek(left)
        audio = reader.read(right - left, dtype="float32", always_2d=True)
        _check_block(audio, name)
        wav = torchaudio.functional.resample(torch.from_numpy(audio).mean(1), rate, target_rate)
        first = (start - left) // period * out_period
        last = math.ceil(end * out_period / period) - left // period * out_period
        yield wav[first:last].numpy()
