"""In-memory espeak-ng speech clips for quick experiments (sweeps, benchmarks).

Unlike :mod:`speechbrain_dsl.data.synthetic`, nothing is written to disk: a list
of 1-D tensors at the requested rate, and random fixed-length crops of them.
"""

import numpy as np
import torch
import torchaudio

from speechbrain_dsl.data.espeak import (
    ACCENTS,
    ESPEAK_SAMPLE_RATE,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    synthesize,
)

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her.",
    "A rainbow is a division of white light into many beautiful colors.",
    "When the sunlight strikes raindrops in the air, they act as a prism.",
    "The boy was there when the sun rose over the quiet harbour.",
    "Numbers like forty two and seven hundred are easy to say.",
    "Turn left at the next corner, then walk straight for two minutes.",
)


def speech_corpus(count, sample_rate, rng):
    """``count`` utterances of espeak-ng speech with pauses, at ``sample_rate``."""
    clips = []
    for _ in range(count):
        variant = rng.choice(FEMALE_VARIANTS + MALE_VARIANTS)
        audio = synthesize(
            rng.choice(SENTENCES),
            f"{rng.choice(ACCENTS)}+{variant}",
            rate=rng.randint(130, 210),
            pitch=rng.randint(25, 75),
            pitch_range=rng.randint(30, 80),
        )
        pad = [np.zeros(int(rng.uniform(0.1, 0.6) * ESPEAK_SAMPLE_RATE), np.float32)]
        audio = np.concatenate(pad + [audio] + pad) * rng.uniform(0.3, 0.9)
        wav = torchaudio.functional.resample(
            torch.from_numpy(audio), ESPEAK_SAMPLE_RATE, sample_rate
        )
        clips.append(wav)
    return clips


def crops(clips, seconds, sample_rate, count, gen):
    """``count`` random crops of ``seconds`` from ``clips`` as a [count, S] batch."""
    n = int(seconds * sample_rate)
    out = []
    for _ in range(count):
        clip = clips[int(torch.randint(len(clips), (1,), generator=gen))]
        if len(clip) <= n:
            clip = torch.nn.functional.pad(clip, (0, n - len(clip) + 1))
        start = int(torch.randint(len(clip) - n + 1, (1,), generator=gen))
        out.append(clip[start : start + n])
    return torch.stack(out)
