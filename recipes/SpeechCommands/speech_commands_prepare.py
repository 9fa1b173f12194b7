"""Data preparation for Speech Commands v0.02 (12-class and 35-class tasks).

Layout (<http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz> or
``python -m speechbrain_dsl.data.synthetic speech_commands``)::

    <word>/<8hex>_nohash_<n>.wav      16 kHz, at most 1 s, 35 words
    _background_noise_/*.wav          long noise recordings
    validation_list.txt, testing_list.txt

Splits follow the two lists (everything else is train). The 12-class task keeps
the 10 command words, maps the other 25 to ``_unknown_`` and cuts 1-s
``_silence_`` clips from the background noise (as many per split as the average
command word has). Manifest entries: ``{"wav", "start", "stop", "label", "duration"}``
(``start``/``stop`` in samples; whole files have ``stop`` -1). Bad audio
(unreadable, empty, truncated, a name that is not UTF-8, a looping symlink) is
refused, all named in one error, or left out with ``skip_bad_audio=True`` (the
rule of :mod:`speechbrain_dsl.data.audio`, the same in every prepare script).
"""

import random
from pathlib import Path

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.data.audio import AudioChecker, read_text

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn "
    "left marvin nine no off on one right seven sheila six stop three tree two up visual "
    "wow yes zero"
).split()
SPLITS = ("train", "valid", "test")


def prepare_speech_commands(
    data_folder, save_folder, task="12", seed=1986, skip_prep=False, skip_bad_audio=False
):
    """Writes ``train.json``, ``valid.json``, ``test.json`` for ``task`` ("12" or "35")."""
    save_folder = Path(save_folder)
    paths = {s: save_folder / f"{s}.json" for s in SPLITS}
    if skip_prep:
        return paths
    if str(task) not in ("12", "35"):
        raise ValueError(f"task must be '12' or '35', got {task!r}")
    root = Path(data_folder)
    if not root.is_dir():
        raise ValueError(f"Speech Commands data_folder does not exist: {root}")
    lists = {}
    for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        if not (root / name).is_file():
            raise ValueError(f"{root} is missing {name} (is this Speech Commands v0.02?)")
        lists[split] = set(read_text(root / name, "Speech Commands list").split())
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if not words:
        raise ValueError(f"{root} holds no <word>/ folders")
    entries = {s: {} for s in SPLITS}
    checker = AudioChecker(skip_bad=skip_bad_audio)
    for word in words:
        for wav in sorted((root / word).glob("*.wav")):
            info = checker.check(wav)
            if info is None:
                continue
            rel = f"{word}/{wav.name}"
            split = (
                "valid" if rel in lists["valid"] else "test" if rel in lists["test"] else "train"
            )
            label = word if task == "35" or word in COMMANDS else "_unknown_"
            entries[split][rel[:-4].replace("/", "_")] = {
                "wav": str(info.path),
                "start": 0,
                "stop": -1,
                "label": label,
                "duration": info.duration,
            }
    if task == "12":
        _add_silence(root, entries, seed, checker)
    checker.finish(f"Speech Commands {root}")
    for split in SPLITS:
        write_json(paths[split], entries[split])
    return paths


def _add_silence(root, entries, seed, checker):
    noise_files = sorted((root / "_background_noise_").glob("*.wav"))
    infos = [(info.path, info) for info in map(checker.check, noise_files) if info is not None]
    if not infos:
        checker.finish(f"Speech Commands {root}")  # names the bad ones, if any
        raise ValueError(
            f"{root / '_background_noise_'} holds no (good) noise recordings "
            f"(the 12-class task cuts _silence_ from them)"
        )
    rng = random.Random(seed)
    for split in SPLITS:
        per_word = sum(1 for e in entries[split].values() if e["label"] in COMMANDS)
        count = max(1, per_word // len(COMMANDS))
        for i in range(count):
            path, info = rng.choice(infos)
            start = rng.randint(0, max(0, info.frames - info.samplerate))
            entries[split][f"_silence_{split}_{i}"] = {
                "wav": str(path.resolve()),
                "start": start,
                "stop": start + info.samplerate,
                "label": "_silence_",
                "duration": 1.0,
            }
