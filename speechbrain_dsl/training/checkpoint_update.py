"""Changing a saved checkpoint in place, all at once: entries of its meta and of its state dicts.

For results that belong to a checkpoint but are made after it was saved (a
threshold calibrated before testing). The checkpoint keeps its ``SHA256SUMS``
manifest up to date, and a kill leaves either the old checkpoint or the new one
(see :func:`update_checkpoint`).
"""

import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch
import yaml
from speechbrain.utils.checkpoints import METAFNAME, PARAMFILE_EXT

from speechbrain_dsl.inference.manifest import (
    MANIFEST,
    CheckpointError,
    manifest_text,
    read_manifest,
    sha256_file,
    verify_manifest,
)
from speechbrain_dsl.training.durable_writes import stage_synced_file, sync_folder

__all__ = ["update_checkpoint"]
PathLike = Union[str, os.PathLike]


def update_checkpoint(folder: PathLike, meta: Optional[Dict] = None, tensors=None) -> Path:
    """Changes a saved checkpoint in place: entries of its meta and of its state dicts.

    For a result that belongs to the checkpoint but is made after it was saved
    (a threshold calibrated on ViSQOL before testing). Every new file (the
    changed ``<recoverable>.ckpt``, ``CKPT.yaml``, ``SHA256SUMS``) is written and
    synced under a temporary name (with the mode of the file it replaces) first,
    then all are renamed into place at once, the manifest last: a kill leaves the
    old checkpoint or the new one, and one inside the window of the renames leaves
    a checkpoint that fails its checksum check at load, naming the file.

    Arguments
    ---------
    folder : path
        A ``CKPT+...`` folder.
    meta : dict, optional
        Entries added to (or replacing those of) its ``CKPT.yaml``.
    tensors : dict, optional
        ``{recoverable: {state key: tensor}}``; each key must exist already.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_dsl.training.checkpoints import AtomicCheckpointer
    >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"layer": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint(meta={"loss": 1.0})
    >>> _ = update_checkpoint(saved.path, {"note": "x"}, {"layer": {"bias": torch.ones(2)}})
    >>> torch.load(saved.path / "layer.ckpt")["bias"].tolist(), verify_manifest(saved.path)
    ([1.0, 1.0], True)
    >>> found = ckpt.find_checkpoint()
    >>> found.meta["note"], found.meta["loss"], found.meta["unixtime"] == saved.meta["unixtime"]
    ('x', 1.0, True)
    """
    folder = Path(folder)
    if not verify_manifest(folder):
        raise CheckpointError(f"{folder}: no {MANIFEST} to keep up to date; not a checkpoint?")
    staged = {}  # final name -> temporary path
    manifest = None
    try:
        for name, changes in (tensors or {}).items():
            path = folder / f"{name}{PARAMFILE_EXT}"
            state = torch.load(path, map_location="cpu", weights_only=True)
            unknown = sorted(set(changes) - set(state))
            if unknown:
                raise KeyError(f"{path} has no entries {', '.join(unknown)}")
            state.update({key: torch.as_tensor(value) for key, value in changes.items()})
            staged[path.name] = stage_synced_file(
                folder, path.name, lambda tmp, state=state: torch.save(state, tmp)
            )
        if meta:
            old = yaml.safe_load((folder / METAFNAME).read_text(encoding="utf-8"))
            text = "# yamllint disable\n" + yaml.dump({**old, **meta})
            staged[METAFNAME] = stage_synced_file(
                folder, METAFNAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8")
            )
        sums = read_manifest(folder)
        for name, tmp in staged.items():
            sums[name] = sha256_file(tmp)
        sums_text = manifest_text(sums)
        manifest = stage_synced_file(folder, MANIFEST, lambda tmp: Path(tmp).write_text(sums_text))
        for name, tmp in staged.items():
            os.replace(tmp, folder / name)
        os.replace(manifest, folder / MANIFEST)
        sync_folder(folder)
    finally:
        for tmp in [*staged.values(), manifest]:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
    return folder
