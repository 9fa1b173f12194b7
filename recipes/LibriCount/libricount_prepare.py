"""Data preparation for LibriCount (speaker counting, 0..10 speakers).

Layout (<https://zenodo.org/record/1216072> or ``python -m speechbrain_dsl.data.synthetic
libricount``): ``test/<k>_<id>.wav`` (5 s, 16 kHz) with ``<k>_<id>.json``, a list
of ``{"sex", "activity", "speaker_id"}`` whose length is the count ``k``.

Only this set exists, so evaluation is k-fold cross-validation: every entry gets a
``fold`` in ``0..folds-1`` (seeded, stratified by count). Manifest entries:
``{"wav", "count", "fold", "duration"}``. Bad mixtures (unreadable, empty,
truncated, a name that is not UTF-8) are refused, all named in one error, or left
out with ``skip_bad_audio=True`` (the rule of :mod:`speechbrain_dsl.data.audio`,
the same in every prepare script); a metadata file that does not parse is named.
All files are checked first: metadata problems and bad audio are reported together.
"""

import random
from pathlib import Path

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.data.audio import AudioChecker, problems_message, read_json, show_path


def prepare_libricount(
    data_folder, save_json, folds=5, seed=1986, skip_prep=False, skip_bad_audio=False
):
    """Writes one manifest with a cross-validation ``fold`` per mixture.

    Raises a ``ValueError`` naming the file for a mixture without metadata,
    metadata that does not parse or disagrees with the name, and bad audio
    (unless ``skip_bad_audio``, which leaves bad mixtures out with a warning);
    every file is checked first, and one error names all the problems found.
    """
    save_json = Path(save_json)
    if skip_prep:
        return save_json
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    root = Path(data_folder)
    folder = root / "test" if (root / "test").is_dir() else root
    if not folder.is_dir():
        raise ValueError(f"LibriCount data_folder does not exist: {root}")
    wavs = sorted(folder.glob("*.wav"))
    if not wavs:
        raise ValueError(f"{folder} holds no <k>_<id>.wav mixtures")
    entries, by_count = {}, {}
    checker = AudioChecker(skip_bad=skip_bad_audio)
    problems = []  # metadata errors, reported with the bad audio once all files are checked
    for wav in wavs:
        info = checker.check(wav)
        if info is None:
            continue
        try:
            count = _speaker_count(wav)
        except ValueError as err:
            problems.append(str(err))
            continue
        entries[wav.stem] = {"wav": str(info.path), "count": count, "duration": info.duration}
        by_count.setdefault(count, []).append(wav.stem)
    try:
        checker.finish(f"LibriCount {folder}")
    except ValueError as err:
        problems.insert(0, str(err))
    if problems:
        raise ValueError(problems_message(problems, f"LibriCount {folder}"))
    rng = random.Random(seed)
    offset = 0  # carried across counts, so fold sizes differ by at most one
    for count in sorted(by_count):  # stratified: each fold gets every count it can
        ids = by_count[count]
        rng.shuffle(ids)
        for i, utt in enumerate(ids):
            entries[utt]["fold"] = (offset + i) % folds
        offset += len(ids)
    if len(entries) < folds:
        raise ValueError(f"{folder}: {len(entries)} mixtures cannot fill {folds} folds")
    write_json(save_json, entries)
    return save_json


def _speaker_count(wav):
    """The speaker count of a mixture from its metadata; a ValueError naming the file."""
    meta_file = wav.with_suffix(".json")
    if not meta_file.is_file():
        raise ValueError(f"{show_path(wav)} has no {show_path(meta_file.name)} next to it")
    try:
        speakers = read_json(meta_file, "LibriCount metadata")
    except ValueError as err:
        raise ValueError(f"{err}; expected a JSON list of speakers") from None
    if not isinstance(speakers, list):
        raise ValueError(
            f"LibriCount metadata {show_path(meta_file)}: expected a JSON list "
            f"of speakers, got a JSON {type(speakers).__name__}"
        )
    prefix = wav.stem.split("_")[0]
    if not prefix.isdigit() or int(prefix) != len(speakers):
        raise ValueError(
            f"{show_path(wav)}: the name says {prefix} speakers but "
            f"{meta_file.name} lists {len(speakers)}"
        )
    return len(speakers)
