"""The Speech Commands v0.02 look-alike, and the dataset's own rule that splits its files.

:func:`make_speech_commands` writes the 35 words of v0.02 per speaker, long
background noise recordings and the validation and testing lists;
:func:`speech_commands_set` is the dataset's hash rule, which the lists agree with.
"""

import hashlib
import random
import re
from pathlib import Path

import numpy as np

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.atomic_wav import write_atomic_wav
from speechbrain_dsl.data.espeak import synthesize_batches
from speechbrain_dsl.data.synthetic_signals import silence_like
from speechbrain_dsl.data.synthetic_speech import plan_utterance, render, speaker_profile

__all__ = [
    "SPEECH_COMMANDS_MAX_WAVS_PER_CLASS",
    "SPEECH_COMMANDS_WORDS",
    "make_speech_commands",
    "speech_commands_set",
]

SPEECH_COMMANDS_WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn "
    "left marvin nine no off on one right seven sheila six stop three tree two up visual "
    "wow yes zero"
).split()


SPEECH_COMMANDS_MAX_WAVS_PER_CLASS = 2**27 - 1  # ~134M, from the dataset's README


def speech_commands_set(filename, validation_percentage=10, testing_percentage=10):
    """The split of a Speech Commands file by the dataset's own rule (its README's ``which_set``).

    The speaker id (the name before ``_nohash_``) is hashed with SHA-1, so a
    speaker's files always land in the same split whatever else is added.

    Arguments
    ---------
    filename : str
        A file name or path such as ``yes/0a7c2a8d_nohash_0.wav``.
    validation_percentage, testing_percentage : float

    Returns
    -------
    str
        ``"validation"``, ``"testing"`` or ``"training"``.

    Example
    -------
    >>> [speech_commands_set(f"yes/{s}_nohash_0.wav") for s in ("d82c07cd", "9e4d6e3c", "c2094cac")]
    ['training', 'validation', 'testing']
    """
    base_name = Path(filename).name
    speaker = re.sub(r"_nohash_.*$", "", base_name)
    hashed = hashlib.sha1(speaker.encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (SPEECH_COMMANDS_MAX_WAVS_PER_CLASS + 1)) * (
        100.0 / SPEECH_COMMANDS_MAX_WAVS_PER_CLASS
    )
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def make_speech_commands(out, seed=0, speakers=30, noise_files=3):
    """Writes a Speech Commands v0.02 look-alike under ``out/SpeechCommands``.

    A tenth of the speakers (at least one) go to ``validation_list.txt`` and a
    tenth to ``testing_list.txt``, and every speaker id (``<8hex>``) is drawn so
    that the dataset's hash rule (:func:`speech_commands_set`) puts the speaker in
    that same split: splitting by the lists or by the hash gives the same sets.
    """
    if speakers < 10:
        raise ValueError(f"--speakers must be >= 10 (for 80/10/10 splits), got {speakers}")
    root = Path(out) / "SpeechCommands"
    rng = random.Random(seed)
    profiles = [speaker_profile(rng, i) for i in range(speakers)]
    hashes = [f"{rng.getrandbits(32):08x}" for _ in range(speakers)]
    batches, words = [], []
    for profile in profiles:
        requests, files = [], []
        for word in SPEECH_COMMANDS_WORDS:
            for n in range(rng.choice((1, 1, 2))):
                plan = plan_utterance(profile, word, rng, noise_prob=0.3)
                plan["request"]["rate"] = rng.randint(120, 220)
                plan["lead"], plan["trail"] = rng.uniform(0.0, 0.2), 0.0
                requests.append(plan)
                files.append((word, n))
        batches.append(requests)
        words.append(files)
    spoken = synthesize_batches([[p["request"] for p in plans] for plans in batches])
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir(parents=True, exist_ok=True)
    np_rng = np.random.default_rng(seed)
    for kind in ("white", "pink", "room", "hum")[:noise_files]:
        noise = silence_like(kind, 60.0, 16000, rng, np_rng) * 30  # audible, ~-25 dBFS
        write_atomic_wav(noise_dir / f"{kind}_noise.wav", np.clip(noise, -1, 1), 16000)
    order = list(range(speakers))
    rng.shuffle(order)
    n_val = n_test = max(1, speakers // 10)
    split = {i: "training" for i in order}
    split.update({i: "validation" for i in order[:n_val]})
    split.update({i: "testing" for i in order[n_val : n_val + n_test]})
    hashes = _speaker_ids_for_splits(hashes, [split[i] for i in range(speakers)], seed)
    names = [
        [f"{word}/{speaker}_nohash_{n}.wav" for word, n in files]
        for speaker, files in zip(hashes, words)
    ]
    for plans, files, audio in zip(batches, names, spoken):
        for plan, name, speech in zip(plans, files, audio):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic_wav(path, render(plan, speech, 16000)[:16000], 16000)
    for list_name, chosen in (
        ("validation_list.txt", order[:n_val]),
        ("testing_list.txt", order[n_val : n_val + n_test]),
    ):
        lines = sorted(name for i in chosen for name in names[i])
        write_text(root / list_name, "\n".join(lines) + "\n")
    return root


def _speaker_ids_for_splits(ids, splits, seed):
    """``ids`` (8-hex speaker ids), each redrawn until the hash rule gives its split.

    Ids the rule already agrees with are kept; redraws come from their own
    generator, so the rest of the corpus is what the seed always gave.
    """
    rng = random.Random(f"speech-commands-speaker-ids-{seed}")
    chosen = []
    for speaker, split in zip(ids, splits):
        while speech_commands_set(f"{speaker}_nohash_0.wav") != split or speaker in chosen:
            speaker = f"{rng.getrandbits(32):08x}"
        chosen.append(speaker)
    return chosen
