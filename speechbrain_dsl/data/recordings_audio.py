"""A source clip as the corpus stores it: 24-kHz mono, levels as recorded, edge silence trimmed.

Each clip keeps its own silence around the words, up to ``--max-edge-silence``
(0.4 s) at each end: silence beyond that (some clips carry 2-4 s of it) is cut,
where silence is 10-ms frames more than :data:`EDGE_SILENCE_DB` below the clip's
loudest frame (:func:`trim_edge_silence`).

Channels are averaged to mono, then resampled to 24 kHz with
``torchaudio.functional.resample`` and a Kaiser-windowed sinc of 64 zero
crossings (:data:`RESAMPLING`: the "kaiser_best" parameters of torchaudio's
resampling tutorial, as in resampy). torchaudio
is already a dependency (``soxr`` is not) and is well kept; its default filter
(Hann window, 6 zero crossings) lets a 12.5 kHz tone through at -9 dB when
downsampling 44.1 kHz to 24 kHz, this one at -120 dB. Levels are left as
recorded, except that a clip whose peak exceeds full scale after resampling is
scaled down, as a whole, to exactly full scale instead of being clipped; the
summary counts these and the largest cut. Many Vorbis files of clipped
recordings decode a little above 1.0 (ml, sl, nb: up to +7 dB), and most
``klettres/tn`` files were encoded 17-36 dB above full scale (their waveform is
intact, only too loud; ``tn/alpha/i.ogg`` also has a silent left channel).
Pauses are digital silence, so an utterance never exceeds full scale either.
(:func:`speechbrain_dsl.data.recordings.build_corpus` does the scaling and adds the pauses.)
"""

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_dsl.data.recordings_sources import Clip

__all__ = [
    "DEFAULT_MAX_EDGE_SILENCE",
    "EDGE_SILENCE_DB",
    "FRAME_SECONDS",
    "FULL_SCALE",
    "RESAMPLING",
    "SAMPLE_RATE",
    "load_clip",
    "trim_edge_silence",
]

SAMPLE_RATE = 24000
DEFAULT_MAX_EDGE_SILENCE = 0.4
EDGE_SILENCE_DB = -40.0  # below the clip's loudest frame
FRAME_SECONDS = 0.01
FULL_SCALE = 1.0
RESAMPLING = dict(  # "kaiser_best" (torchaudio's resampling tutorial)
    resampling_method="sinc_interp_kaiser",
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    beta=14.769656459379492,
)


def trim_edge_silence(
    audio: np.ndarray, sample_rate: int, keep_seconds: float, threshold_db: float = EDGE_SILENCE_DB
) -> np.ndarray:
    """Cuts leading and trailing silence beyond ``keep_seconds`` at each end.

    Silence: 10-ms frames whose RMS is more than ``threshold_db`` below the
    loudest frame's. Nothing inside the first and last loud frame is touched.

    Example
    -------
    >>> x = np.concatenate([np.zeros(3000), np.ones(1000), np.zeros(500)])
    >>> len(trim_edge_silence(x, 1000, keep_seconds=1.0))
    2500
    """
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    n = len(audio) // frame
    if n == 0:
        return audio
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return audio
    keep = int(round(keep_seconds * sample_rate))
    start = max(0, loud[0] * frame - keep)
    end = min(len(audio), (loud[-1] + 1) * frame + keep)
    return audio[start:end]


def load_clip(clip: Clip, max_edge_silence: float = DEFAULT_MAX_EDGE_SILENCE) -> np.ndarray:
    """A clip as 24-kHz mono float32, edge silence trimmed (levels untouched)."""
    audio, rate = sf.read(str(clip.path), dtype="float32", always_2d=True)
    mono = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1)))
    if rate != SAMPLE_RATE:
        mono = torchaudio.functional.resample(mono, rate, SAMPLE_RATE, **RESAMPLING)
    return trim_edge_silence(mono.numpy(), SAMPLE_RATE, max_edge_silence)
