"""Non-speech audio for the look-alike corpora: AudioSet's Silence, noise and simple music.

What AudioSet labels Silence (digital silence, quiet tones, room tone, pink and
white noise, mains hum; :data:`SILENCE_KINDS`), a few bars of sine notes as a
non-target class, and :func:`fit_to`, which pads or cuts a clip to a length.
"""

import numpy as np

__all__ = ["SILENCE_KINDS", "fit_to", "music_like", "pink_noise", "silence_like"]

SILENCE_KINDS = ("digital", "tone", "room", "pink", "white", "hum")


def pink_noise(n, np_rng):
    """Pink (1/f) noise by spectral shaping of white noise, unit RMS."""
    spectrum = np.fft.rfft(np_rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def silence_like(kind, seconds, sample_rate, rng, np_rng):
    """A clip of what AudioSet labels Silence (quiet, stationary, or nothing)."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    level = 10 ** (rng.uniform(-60, -40) / 20)  # -60..-40 dBFS
    if kind == "digital":
        return np.zeros(n, np.float32)
    if kind == "tone":
        return (level * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32)
    if kind == "room":
        room = pink_noise(n, np_rng) * level
        return (room + 0.3 * level * np.sin(2 * np.pi * 120 * t)).astype(np.float32)
    if kind == "pink":
        return (pink_noise(n, np_rng) * level).astype(np.float32)
    if kind == "white":
        return (np_rng.standard_normal(n) * level).astype(np.float32)
    base = rng.choice((50, 60))  # mains hum with harmonics
    hum = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3))
    return (level * hum).astype(np.float32)


def music_like(seconds, sample_rate, rng):
    """A few bars of decaying sine notes (a non-target class)."""
    n = int(seconds * sample_rate)
    out = np.zeros(n, np.float32)
    note = int(0.25 * sample_rate)
    for start in range(0, n - note, note):
        t = np.arange(note) / sample_rate
        freq = 220 * 2 ** (rng.randint(0, 24) / 12)
        out[start : start + note] += 0.2 * np.sin(2 * np.pi * freq * t) * np.exp(-4 * t)
    return out


def fit_to(audio, n):
    """Pads (centred) or cuts ``audio`` to ``n`` samples."""
    if len(audio) >= n:
        return audio[:n]
    left = (n - len(audio)) // 2
    return np.pad(audio, (left, n - len(audio) - left))
