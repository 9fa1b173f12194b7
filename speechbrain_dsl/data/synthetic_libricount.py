"""The LibriCount look-alike: 5-s mixtures of 0 to 10 espeak-ng speakers, with who speaks when.

:func:`make_libricount` writes ``test/<k>_<id>.wav`` and ``<k>_<id>.json`` (one
``{"sex", "activity", "speaker_id"}`` per speaker), as the real set has them.
"""

import json
import random
from pathlib import Path

import numpy as np

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.atomic_wav import write_atomic_wav
from speechbrain_dsl.data.espeak import synthesize_batches
from speechbrain_dsl.data.synthetic_signals import fit_to
from speechbrain_dsl.data.synthetic_speech import (
    plan_utterance,
    random_sentence,
    render,
    speaker_profile,
)

__all__ = ["make_libricount"]


def make_libricount(out, seed=0, mixtures_per_count=10, max_count=5, seconds=5.0):
    """Writes a LibriCount look-alike under ``out/LibriCount/test``."""
    if not 0 < max_count <= 10:
        raise ValueError(f"--max-count must be in 1..10, got {max_count}")
    root = Path(out) / "LibriCount"
    folder = root / "test"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = int(seconds * 16000)
    pool = [speaker_profile(rng, i) for i in range(40)]
    mixtures = []
    for k in range(max_count + 1):
        for _ in range(mixtures_per_count):
            speakers = rng.sample(pool, k)
            plans = []
            for profile in speakers:
                text = " ".join(random_sentence(rng)[1] for _ in range(2))
                plan = plan_utterance(profile, text, rng, noise_prob=0.0)
                plan["lead"], plan["trail"] = rng.uniform(0.0, 1.5), 0.0
                plan["gain"] = rng.uniform(0.2, 0.5)
                plans.append(plan)
            mixtures.append((k, f"{rng.getrandbits(40):010x}", speakers, plans))
    spoken = synthesize_batches([[p["request"] for p in m[3]] for m in mixtures])
    for (k, mix_id, speakers, plans), audio in zip(mixtures, spoken):
        mix = np.zeros(n, np.float32)
        meta = []
        for profile, plan, speech in zip(speakers, plans, audio):
            voice = fit_to(render(plan, speech, 16000), n)[:n]
            voice = np.pad(voice, (0, n - len(voice)))
            mix += voice
            active = np.abs(voice) > 1e-3
            meta.append(
                {
                    "sex": profile["gender"],
                    "speaker_id": profile["id"],
                    "activity": [[float(s) / 16000, float(e) / 16000] for s, e in _spans(active)],
                }
            )
        peak = float(np.abs(mix).max())
        write_atomic_wav(folder / f"{k}_{mix_id}.wav", mix / max(1.0, peak / 0.95), 16000)
        write_text(folder / f"{k}_{mix_id}.json", json.dumps(meta))
    return root


def _spans(active, min_gap=1600):
    """Start/end sample pairs of runs of True, merging gaps under ``min_gap``."""
    spans, start, last = [], None, None
    for i in np.flatnonzero(active):
        if start is None:
            start = last = i
        elif i - last > min_gap:
            spans.append((start, last + 1))
            start = i
        last = i
    if start is not None:
        spans.append((start, last + 1))
    return spans
