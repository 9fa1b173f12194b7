"""Data preparation for LibriTTS: JSON manifests for SpeechBrain's DynamicItemDataset.

Expected layout (a real download from https://www.openslr.org/60/ or the output of
``python -m speechbrain_dsl.data.synthetic libritts``)::

    LibriTTS/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<6d>_<6d>.wav   (24 kHz)
    LibriTTS/<subset>/<speaker>/<chapter>/<utterance>.normalized.txt

Each manifest maps utterance ids to ``{"wav", "duration", "spk_id", "label"}``,
with ``wav`` written as ``{data_root}/<relative path>`` so manifests survive moving
the data. Audio is never modified: resampling to the model's rate happens in the
data pipeline. Bad audio files (unreadable, empty, truncated, a name that is not
UTF-8) are refused, all named in one error (with any missing or empty subset,
after every split is checked), or left out with
``skip_bad_audio=True`` (the rule of :mod:`speechbrain_dsl.data.audio`, the same in
every prepare script). A manifest or option file that does not parse is named in a
warning and rebuilt.
"""

import logging
from pathlib import Path

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.data.audio import (
    AudioChecker,
    problems_message,
    read_json,
    read_text,
    show_path,
)

logger = logging.getLogger(__name__)
OPT_FILE = "opt_libritts_prepare.json"


def prepare_libritts(
    data_folder,
    save_folder,
    train_subsets=("train-clean-100",),
    valid_subsets=("dev-clean",),
    test_subsets=("test-clean",),
    skip_prep=False,
    skip_bad_audio=False,
):
    """Writes ``train.json``, ``valid.json`` and ``test.json`` in ``save_folder``.

    Arguments
    ---------
    data_folder : str
        The LibriTTS folder (the one holding the subset folders), or its parent.
    save_folder : str
        Where the manifests go.
    train_subsets, valid_subsets, test_subsets : sequence of str
        LibriTTS subset folder names, e.g. ``train-clean-100``.
    skip_prep : bool
        Do nothing (manifests already exist).
    skip_bad_audio : bool
        Leave bad audio files out (each named in a warning) instead of refusing.

    Returns
    -------
    dict
        Split name -> manifest path.

    Raises
    ------
    ValueError
        For a missing data folder or subset, a subset without wavs, bad audio
        files (unless ``skip_bad_audio``) or a transcript that is not UTF-8; the
        message names the folder or files. Every split is checked first, and one
        error names all the problems found.
    """
    save_folder = Path(save_folder)
    paths = {split: save_folder / f"{split}.json" for split in ("train", "valid", "test")}
    if skip_prep:
        return paths
    root = find_libritts_root(data_folder)
    splits = {
        "train": list(train_subsets),
        "valid": list(valid_subsets),
        "test": list(test_subsets),
    }
    options = {"data_folder": str(root), "splits": splits}
    opt_path = save_folder / OPT_FILE
    if all(p.exists() for p in paths.values()) and opt_path.exists():
        if _previous_output_is_usable(opt_path, options, paths):
            logger.info("LibriTTS manifests exist with the same options; skipping.")
            return paths
    save_folder.mkdir(parents=True, exist_ok=True)
    manifests = {}
    checker = AudioChecker(skip_bad=skip_bad_audio)  # one for all splits: one report
    problems = []  # missing or empty subsets, reported with the bad audio
    for split, subsets in splits.items():  # all splits are checked before any is written
        manifests[split] = {}
        for subset in subsets:
            try:
                manifests[split].update(_subset_entries(root, subset, checker))
            except ValueError as err:
                problems.append(str(err))
    named = ", ".join(f"{split} {subsets}" for split, subsets in splits.items())
    try:
        checker.finish(f"the LibriTTS subsets ({named}) of {root}")
    except ValueError as err:
        problems.insert(0, str(err))
    if problems:
        raise ValueError(problems_message(problems, f"the LibriTTS subsets ({named}) of {root}"))
    for split, entries in manifests.items():
        if not entries:
            raise ValueError(
                f"LibriTTS {split} subsets {splits[split]} in {root} hold no usable "
                f"audio: every file was bad and left out"
            )
        write_json(paths[split], entries)
        logger.info(f"{split}: {len(entries)} utterances from {splits[split]}")
    write_json(opt_path, options)
    return paths


def _previous_output_is_usable(opt_path, options, paths):
    """True if the option file and the manifests parse and the options are the same."""
    try:
        same = read_json(opt_path, "option file", expect=dict) == options
        for path in paths.values():
            read_json(path, "manifest", expect=dict)
    except ValueError as err:
        logger.warning(f"{err}; rebuilding the LibriTTS manifests")
        return False
    return same


def find_libritts_root(data_folder):
    """The folder holding the subsets: ``data_folder`` or ``data_folder/LibriTTS``."""
    data_folder = Path(data_folder)
    try:
        str(data_folder).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"LibriTTS data_folder name is not valid UTF-8: {show_path(data_folder)}"
        ) from None
    if not data_folder.is_dir():
        raise ValueError(f"LibriTTS data_folder does not exist: {data_folder}")
    if (data_folder / "LibriTTS").is_dir():
        return data_folder / "LibriTTS"
    return data_folder


def _subset_entries(root, subset, checker):
    folder = root / subset
    if not folder.is_dir():
        found = sorted(show_path(p.name) for p in root.iterdir() if p.is_dir())
        raise ValueError(
            f"LibriTTS subset {subset!r} not found in {root} (found: {found or 'nothing'})"
        )
    wavs = sorted(folder.glob("*/*/*.wav"))
    if not wavs:
        raise ValueError(f"LibriTTS subset {folder} holds no <speaker>/<chapter>/*.wav files")
    entries = {}
    for wav in wavs:
        info = checker.check(wav)
        if info is None:
            continue
        text_file = wav.with_suffix(".normalized.txt")
        label = read_text(text_file, "transcript").strip() if text_file.exists() else ""
        entries[wav.stem] = {
            "wav": "{data_root}/" + wav.relative_to(root).as_posix(),
            "duration": info.duration,
            "spk_id": wav.parent.parent.name,
            "label": label,
        }
    return entries
