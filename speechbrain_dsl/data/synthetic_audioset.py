"""The AudioSet look-alike: Speech and Silence clips, segment CSVs and local file names.

:func:`make_audioset` writes ``eval_segments.csv``, ``class_labels_indices.csv``
and 10-s clips under ``audio/`` in the common naming schemes, with a few Music
clips and a few rows whose audio is missing (see :mod:`speechbrain_dsl.data.synthetic`).
"""

import random
from pathlib import Path

import numpy as np

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.atomic_wav import write_atomic_wav
from speechbrain_dsl.data.espeak import synthesize_batches
from speechbrain_dsl.data.synthetic_signals import (
    SILENCE_KINDS,
    fit_to,
    music_like,
    silence_like,
)
from speechbrain_dsl.data.synthetic_speech import (
    plan_utterance,
    random_sentence,
    render,
    speaker_profile,
)

__all__ = ["AUDIOSET_CLASSES", "make_audioset"]

AUDIOSET_CLASSES = (
    ("/m/09x0r", "Speech"),
    ("/m/028v0c", "Silence"),
    ("/m/04rlf", "Music"),
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/02zsn", "Female speech, woman speaking"),
)


def make_audioset(
    out, seed=0, clips_per_class=20, sample_rate=16000, seconds=10.0, music_clips=3, missing_clips=2
):
    """Writes an AudioSet look-alike (Speech vs Silence) under ``out/AudioSet``.

    Returns
    -------
    Path
    """
    if clips_per_class < 1:
        raise ValueError(f"--clips-per-class must be >= 1, got {clips_per_class}")
    root = Path(out) / "AudioSet"
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    ytid = lambda: "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        for _ in range(11)
    )  # noqa: E731
    n = int(seconds * sample_rate)

    rows, clips = [], []  # rows: (ytid, start, labels); clips: (ytid, start, audio)
    for i in range(clips_per_class):
        kind = SILENCE_KINDS[i % len(SILENCE_KINDS)]
        rows.append((ytid(), float(rng.randint(0, 300)), ["/m/028v0c"]))
        clips.append(silence_like(kind, seconds, sample_rate, rng, np_rng))
    requests, speech_rows = [], []
    for i in range(clips_per_class):
        profile = speaker_profile(rng, i)
        text = " ".join(random_sentence(rng)[1] for _ in range(rng.choice((1, 2))))
        plan = plan_utterance(profile, text, rng, noise_prob=0.5)
        plan["lead"], plan["trail"] = rng.uniform(0.0, 1.0), 0.0
        requests.append(plan)
        labels = ["/m/09x0r", "/m/05zppz" if profile["gender"] == "M" else "/m/02zsn"]
        speech_rows.append((ytid(), float(rng.randint(0, 300)), labels))
    spoken = synthesize_batches([[p["request"] for p in requests]])[0]
    for row, plan, speech in zip(speech_rows, requests, spoken):
        rows.append(row)
        clips.append(fit_to(render(plan, speech, sample_rate), n))
    for _ in range(music_clips):
        rows.append((ytid(), float(rng.randint(0, 300)), ["/m/04rlf"]))
        clips.append(music_like(seconds, sample_rate, rng))
    order = list(range(len(rows)))
    rng.shuffle(order)
    schemes = ("Y{id}.wav", "{id}.wav", "{id}_{start}.wav")
    for k in order:
        yt, start, _ = rows[k]
        name = schemes[k % len(schemes)].format(id=yt, start=int(start))
        write_atomic_wav(audio_dir / name, clips[k], sample_rate)
    for _ in range(missing_clips):  # listed in the CSV, never downloaded
        rows.append((ytid(), float(rng.randint(0, 300)), [rng.choice(("/m/09x0r", "/m/028v0c"))]))
        order.append(len(rows) - 1)

    lines = [
        "# Segments csv created by speechbrain_dsl.data.synthetic",
        f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(AUDIOSET_CLASSES)}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    for k in order:
        yt, start, labels = rows[k]
        lines.append(f'{yt}, {start:.3f}, {start + seconds:.3f}, "{",".join(labels)}"')
    write_text(root / "eval_segments.csv", "\n".join(lines) + "\n")
    index = ["index,mid,display_name"] + [
        f'{i},{mid},"{name}"' for i, (mid, name) in enumerate(AUDIOSET_CLASSES)
    ]
    write_text(root / "class_labels_indices.csv", "\n".join(index) + "\n")
    return root
