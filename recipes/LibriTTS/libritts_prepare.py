"""Data preparation for LibriTTS: JSON manifests for SpeechBrain's DynamicItemDataset.

Expected layout (a real download from https://www.openslr.org/60/ or the output of
``python -m speechbrain_dsl.data.synthetic libritts``)::

    LibriTTS/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<6d>_<6d>.wav   (24 kHz)
    LibriTTS/<subset>/<speaker>/<chapter>/<utterance>.normalized.txt

Each manifest maps utterance ids to ``{"wav", "duration", "spk_id", "label"}``,
with ``wav`` written as ``{data_root}/<relative path>`` so manifests survive moving
the data. Audio is never modified: resampling to the model's rate happens in the
data pipeline.
"""

import json
import logging
from pathlib import Path

import soundfile as sf

from speechbrain_dsl.atomic import write_json

logger = logging.getLogger(__name__)
OPT_FILE = "opt_libritts_prepare.json"


def prepare_libritts(
    data_folder,
    save_folder,
    train_subsets=("train-clean-100",),
    valid_subsets=("dev-clean",),
    test_subsets=("test-clean",),
    skip_prep=False,
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

    Returns
    -------
    dict
        Split name -> manifest path.

    Raises
    ------
    ValueError
        For a missing data folder or subset, a subset without wavs, or an
        unreadable audio file (the message names it).
    """
    save_folder = Path(save_folder)
    paths = {split: save_folder / f"{split}.json" for split in ("train", "valid", "test")}
    if skip_prep:
        return paths
    root = find_libritts_root(data_folder)
    splits = {"train": list(train_subsets), "valid": list(valid_subsets), "test": list(test_subsets)}
    options = {"data_folder": str(root), "splits": splits}
    opt_path = save_folder / OPT_FILE
    if all(p.exists() for p in paths.values()) and opt_path.exists():
        if json.loads(opt_path.read_text()) == options:
            logger.info("LibriTTS manifests exist with the same options; skipping.")
            return paths
    save_folder.mkdir(parents=True, exist_ok=True)
    for split, subsets in splits.items():
        entries = {}
        for subset in subsets:
            entries.update(_subset_entries(root, subset))
        write_json(paths[split], entries)
        logger.info(f"{split}: {len(entries)} utterances from {subsets}")
    write_json(opt_path, options)
    return paths


def find_libritts_root(data_folder):
    """The folder holding the subsets: ``data_folder`` or ``data_folder/LibriTTS``."""
    data_folder = Path(data_folder)
    if not data_folder.is_dir():
        raise ValueError(f"LibriTTS data_folder does not exist: {data_folder}")
    if (data_folder / "LibriTTS").is_dir():
        return data_folder / "LibriTTS"
    return data_folder


def _subset_entries(root, subset):
    folder = root / subset
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ValueError(
            f"LibriTTS subset {subset!r} not found in {root} (found: {found or 'nothing'})"
        )
    wavs = sorted(folder.glob("*/*/*.wav"))
    if not wavs:
        raise ValueError(
            f"LibriTTS subset {folder} holds no <speaker>/<chapter>/*.wav files"
        )
    entries = {}
    for wav in wavs:
        try:
            info = sf.info(str(wav))
        except RuntimeError as err:
            raise ValueError(f"unreadable audio file {wav}: {err}") from None
        if info.frames == 0:
            raise ValueError(f"empty audio file {wav}")
        text_file = wav.with_suffix(".normalized.txt")
        label = text_file.read_text(encoding="utf-8").strip() if text_file.exists() else ""
        entries[wav.stem] = {
            "wav": "{data_root}/" + wav.relative_to(root).as_posix(),
            "duration": info.frames / info.samplerate,
            "spk_id": wav.parent.parent.name,
            "label": label,
        }
    return entries

