"""The held-out speakers: which whole speakers go to ``dev-recorded`` and ``test-recorded``.

Whole speakers are held out for ``dev-recorded`` and ``test-recorded``,
deterministically for the seed, among the *eligible* ones: the only speaker of
their language in both packages (so a volunteer who recorded for both packages
cannot end up on both sides of the split; ``en`` and ``en_GB`` count as one
language), with at least ``min_heldout_seconds`` of source audio and at
most :data:`MAX_HELDOUT_CLIPPED_FRACTION` of samples at full scale (some
sources are clipped: 3.7% of ``klettres/ml``, 0.5% of ``ktuberling/sl``). The
rest train.
"""

import random
from typing import Sequence

import numpy as np
import soundfile as sf

from speechbrain_dsl.data.recordings_sources import Clip, Speaker

__all__ = [
    "CLIP_LEVEL",
    "DEFAULT_HELDOUT_SPEAKERS",
    "DEFAULT_MIN_HELDOUT_SECONDS",
    "DEV",
    "MAX_HELDOUT_CLIPPED_FRACTION",
    "SUBSETS",
    "TEST",
    "TRAIN",
    "clipped_fraction",
    "split_speakers",
]

SUBSETS = ("train-recorded", "dev-recorded", "test-recorded")
TRAIN, DEV, TEST = SUBSETS
DEFAULT_HELDOUT_SPEAKERS = 3
DEFAULT_MIN_HELDOUT_SECONDS = 40.0
CLIP_LEVEL = 0.99  # a decoded sample this close to full scale counts as clipped
MAX_HELDOUT_CLIPPED_FRACTION = 1e-3


def clipped_fraction(clips: Sequence[Clip]) -> float:
    """Share of decoded samples (any channel) at or above :data:`CLIP_LEVEL`."""
    clipped = total = 0
    for clip in clips:
        audio, _ = sf.read(str(clip.path), dtype="float32", always_2d=True)
        clipped += int(np.count_nonzero(np.abs(audio).max(axis=1) >= CLIP_LEVEL))
        total += len(audio)
    return clipped / max(total, 1)


def split_speakers(
    speakers: Sequence[Speaker],
    seed: int = 0,
    dev_speakers: int = DEFAULT_HELDOUT_SPEAKERS,
    test_speakers: int = DEFAULT_HELDOUT_SPEAKERS,
    min_heldout_seconds: float = DEFAULT_MIN_HELDOUT_SECONDS,
    max_clipped_fraction: float = MAX_HELDOUT_CLIPPED_FRACTION,
) -> dict:
    """Speaker id -> subset; held-out speakers drawn from the eligible ones.

    Eligible: the only speaker of its language (:func:`language_of`), at least
    ``min_heldout_seconds`` of source audio, at most ``max_clipped_fraction`` of
    its samples clipped (decoded only for speakers that pass the rest).

    Raises
    ------
    ValueError
        If fewer speakers are eligible than ``dev_speakers + test_speakers``.
    """
    per_language = {}
    for s in speakers:
        per_language[s.language] = per_language.get(s.language, 0) + 1
    eligible = [
        s
        for s in sorted(speakers, key=lambda s: s.id)
        if per_language[s.language] == 1 and s.seconds >= min_heldout_seconds
    ]
    wanted = dev_speakers + test_speakers
    if wanted <= len(eligible):  # decoding is slow: only when it can matter
        eligible = [s for s in eligible if clipped_fraction(s.clips) <= max_clipped_fraction]
    eligible = [s.id for s in eligible]
    if wanted > len(eligible):
        raise ValueError(
            f"--dev-speakers {dev_speakers} + --test-speakers {test_speakers} = {wanted} held-out "
            f"speakers wanted, but only {len(eligible)} are eligible (the only speaker of their "
            f"language, >= {min_heldout_seconds:g} s of audio, <= {max_clipped_fraction:.2%} "
            f"clipped samples)"
        )
    chosen = random.Random(f"{seed}-split").sample(eligible, wanted)
    subset_of = {s.id: TRAIN for s in speakers}
    subset_of.update({i: DEV for i in chosen[:dev_speakers]})
    subset_of.update({i: TEST for i in chosen[dev_speakers:]})
    return subset_of
