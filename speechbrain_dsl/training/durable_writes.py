"""Writes that survive a crash or a power cut: files synced before they are renamed, folders after.

A rename is atomic, but only durable once the renamed file's data and the folder
holding it are on disk. :func:`stage_synced_file` writes a synced temporary file
(with the mode of the file it will replace) ready to be renamed over it;
:func:`sync_folder` syncs a folder's files and the folder itself after renames.
Checkpoints are written this way (:mod:`speechbrain_dsl.training.checkpoints`,
:mod:`speechbrain_dsl.training.checkpoint_update`).

Example
-------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "a.txt").write_text("old")
>>> tmp = stage_synced_file(folder, "a.txt", lambda p: Path(p).write_text("new"))
>>> os.replace(tmp, folder / "a.txt")
>>> sync_folder(folder)
>>> (folder / "a.txt").read_text()
'new'
"""

import errno
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["stage_synced_file", "sync_folder"]


def stage_synced_file(folder: Path, name: str, write) -> str:
    """A synced temporary file ``folder/.name.*`` that ``write(path)`` filled, with
    the mode of ``folder/name`` (mkstemp makes 0600 files)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    os.close(fd)
    try:
        shutil.copymode(folder / name, tmp)
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def sync_folder(folder: Path) -> None:
    """fsyncs the files of ``folder`` and the folder itself (best effort on odd file systems)."""
    paths = [p for p in folder.iterdir() if p.is_file()] + [folder]
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
                raise
        finally:
            os.close(fd)
