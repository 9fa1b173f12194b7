"""The checksum manifest of a folder: ``SHA256SUMS``, in ``sha256sum``'s format.

Every checkpoint folder, packaged model and folder of exported graphs carries one
(``<hex>  <name>`` per line, so ``sha256sum -c SHA256SUMS`` checks it by hand).
This is the one place that hashes a file, writes the manifest (atomically) and
reads it. Reading is strict: a line that is not ``<64 hex digits> <space or
*><name>``, an empty manifest or one that is not UTF-8 is a
:class:`CheckpointError` (a ``ValueError``) naming the manifest; a file that is
not listed, missing or has another sha256 is one naming the file.

Standard library only: :mod:`speechbrain_dsl.inference.runtime` checks exported
graphs with it on a device that has onnxruntime and numpy, and no PyTorch.

Example
-------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "a.ckpt").write_bytes(b"abc")
>>> print(write_manifest(folder).read_text(), end="")
ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a.ckpt
>>> verify_manifest(folder)
True
>>> _ = (folder / "a.ckpt").write_bytes(b"abd")
>>> verify_manifest(folder)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
speechbrain_dsl.inference.manifest.CheckpointError: .../a.ckpt fails its sha256 checksum (...)
"""

import hashlib
import os
import re
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

from speechbrain_dsl.atomic import write_text

MANIFEST = "SHA256SUMS"
PathLike = Union[str, os.PathLike]
# sha256sum's line: the digest, a space, then a space (text mode) or * (binary mode)
_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


class CheckpointError(ValueError):
    """A checkpoint (or weights file) that fails its checksum or does not load."""


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes (read 1 MiB at a time).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "empty"
    >>> _ = path.write_bytes(b"")
    >>> sha256_file(path)
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_text(sums: Dict[str, str]) -> str:
    """``sha256sum``'s format for ``{file name: sha256}``, sorted by name.

    Example
    -------
    >>> manifest_text({"b.onnx": "1" * 64, "a.ckpt": "0" * 64}).splitlines()[0][-8:]
    '  a.ckpt'
    """
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


def write_manifest(folder: PathLike, names: Optional[Iterable[str]] = None) -> Path:
    """Writes ``folder/SHA256SUMS`` for ``names`` (default: every visible file there).

    The file is written under a temporary name and renamed, so a reader sees the
    old manifest or the new one. Returns its path (see the module's example).
    """
    folder = Path(folder)
    if names is None:
        names = [
            p.name
            for p in folder.iterdir()
            if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
        ]
    return write_text(folder / MANIFEST, manifest_text({n: sha256_file(folder / n) for n in names}))


def read_manifest(folder: PathLike) -> Optional[Dict[str, str]]:
    """``{file name: sha256}`` of ``folder/SHA256SUMS``; None if there is none.

    A manifest that cannot be read, is empty or holds a line that is not
    ``sha256sum``'s is a :class:`CheckpointError` naming it (and the line).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> read_manifest(folder) is None
    True
    >>> _ = (folder / MANIFEST).write_text("not a checksum line\\n")
    >>> read_manifest(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_dsl.inference.manifest.CheckpointError: checksum manifest .../SHA256SUMS is corrupt (line 1: 'not a checksum line')
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checksum manifest {path} cannot be read: {err}") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.fullmatch(line.strip())
        if match is None:
            raise CheckpointError(
                f"checksum manifest {path} is corrupt (line {number}: {line[:80]!r})"
            )
        sums[match.group(2)] = match.group(1)
    if not sums:
        raise CheckpointError(f"checksum manifest {path} is empty")
    return sums


def verify_manifest(
    folder: PathLike, names: Optional[Iterable[str]] = None, require: bool = False
) -> bool:
    """Checks the files of ``folder`` against its ``SHA256SUMS``.

    Every file the manifest lists (or only ``names``, which must all be listed)
    must exist with its recorded sha256. Returns True when checked, False when
    the folder has no manifest (a :class:`CheckpointError`, a ``ValueError``, if
    ``require``); any mismatch raises a ``CheckpointError`` naming the file.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.ckpt").write_bytes(b"abc")
    >>> verify_manifest(folder)
    False
    >>> _ = write_manifest(folder)
    >>> verify_manifest(folder, ["b.ckpt"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_dsl.inference.manifest.CheckpointError: .../b.ckpt is not listed in the checksum manifest .../SHA256SUMS
    """
    folder = Path(folder)
    sums = read_manifest(folder)
    if sums is None:
        if require:
            raise CheckpointError(f"{folder} has no {MANIFEST} checksum manifest")
        return False
    for name in sums if names is None else names:
        path = folder / name
        if name not in sums:
            raise CheckpointError(
                f"{path} is not listed in the checksum manifest {folder / MANIFEST}"
            )
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (listed in {folder / MANIFEST})")
        if sha256_file(path) != sums[name]:
            raise CheckpointError(
                f"{path} fails its sha256 checksum (corrupted or modified "
                f"since it was written; {folder / MANIFEST})"
            )
    return True
