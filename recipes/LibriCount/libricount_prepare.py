"""Data preparation for LibriCount (speaker counting, 0..10 speakers).

Layout (<https://zenodo.org/record/1216072> or ``python -m speechbrain_dsl.data.synthetic
libricount``): ``test/<k>_<id>.wav`` (5 s, 16 kHz) with ``<k>_<id>.json``, a list
of ``{"sex", "activity", "speaker_id"}`` whose length is the count ``k``.

Only this set exists, so evaluation is k-fold cross-validation: every entry gets a
``fold`` in ``0..folds-1`` (seeded, stratified by count). Manifest entries:
``{"wav", "count", "fold", "duration"}``.
"""

import json
import random
from pathlib import Path

import soundfile as sf

from speechbrain_dsl.atomic import write_json


def prepare_libricount(data_folder, save_json, folds=5, seed=1986, skip_prep=False):
    """Writes one manifest with a cross-validation ``fold`` per mixture."""
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
    for wav in wavs:
        meta_file = wav.with_suffix(".json")
        if not meta_file.is_file():
            raise ValueError(f"{wav} has no {meta_file.name} next to it")
        try:
            speakers = json.loads(meta_file.read_text())
            assert isinstance(speakers, list)
        except (ValueError, AssertionError):
            raise ValueError(f"{meta_file}: expected a JSON list of speakers") from None
        prefix = wav.stem.split("_")[0]
        if not prefix.isdigit() or int(prefix) != len(speakers):
            raise ValueError(f"{wav.name}: the name says {prefix} speakers but "
                             f"{meta_file.name} lists {len(speakers)}")
        try:
            info = sf.info(str(wav))
        except RuntimeError as err:
            raise ValueError(f"unreadable audio file {wav}: {err}") from None
        entries[wav.stem] = {"wav": str(wav.resolve()), "count": len(speakers),
                             "duration": info.frames / info.samplerate}
        by_count.setdefault(len(speakers), []).append(wav.stem)
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
