"""The on-load graph cache: graphs exported once into a folder, checked at every load.

A packaged folder without an encoder graph gets one exported on first load into
a cache folder (:data:`GRAPH_CACHE` under the loader's ``savedir``; what goes in
it is :func:`speechbrain_dsl.inference.export.cached_encoder`'s). A cached graph
is reused when :func:`graph_problem` finds nothing wrong with it and written
again otherwise (:func:`cached_graph`); :func:`add_to_manifest` lists graphs in a
folder's ``SHA256SUMS``.
"""

import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.inference.graphs import read_metadata
from speechbrain_dsl.inference.manifest import (
    MANIFEST,
    CheckpointError,
    manifest_text,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)

try:  # an advisory lock, so that processes loading at once export a graph once
    import fcntl
except ImportError:  # not on Windows: concurrent writers then export the same bytes twice
    fcntl = None

#: The folder, under a loader's ``savedir``, that holds the graphs exported on first load.
GRAPH_CACHE = "onnx-cache"
logger = logging.getLogger(__name__)

__all__ = ["GRAPH_CACHE", "add_to_manifest", "cached_graph", "graph_problem"]


def add_to_manifest(folder, names: Iterable[str]) -> Path:
    """Lists ``names`` (files in ``folder``) in ``folder/SHA256SUMS`` with their sha256 now.

    The manifest's other entries are kept as they are (not hashed again) and a
    folder without one gets one. Call it after the files are in place: the
    manifest is written atomically, so a reader finds the old entries or the new.
    Returns the manifest's path.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.ckpt").write_bytes(b"abc")
    >>> _ = (folder / "SHA256SUMS").write_text(f"{sha256_file(folder / 'a.ckpt')}  a.ckpt\\n")
    >>> _ = (folder / "encoder.onnx").write_bytes(b"graph")
    >>> print(add_to_manifest(folder, ["encoder.onnx"]).read_text(), end="")  # doctest: +ELLIPSIS
    ba7816bf...  a.ckpt
    ...  encoder.onnx
    >>> verify_manifest(folder)
    True
    """
    folder = Path(folder)
    sums = read_manifest(folder) or {}
    sums.update({name: sha256_file(folder / name) for name in names})
    return write_text(folder / MANIFEST, manifest_text(sums))


def graph_problem(folder, name: str, expected: Dict) -> Optional[str]:
    """Why ``folder/name`` is not a usable exported graph; None when it is.

    Usable means: listed in ``folder/SHA256SUMS`` with the file's sha256 (a
    tampered, truncated or unlisted file is not), and its
    :func:`~speechbrain_dsl.inference.graphs.metadata`
    equal to ``expected``: ``weights_sha256`` first (a graph of other weights is
    not used), then every other entry (another model definition, threshold or
    graph format).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> graph_problem(folder, "encoder.onnx", {})  # doctest: +ELLIPSIS
    '.../encoder.onnx does not exist'
    """
    folder = Path(folder)
    path = folder / name
    if not path.is_file():
        return f"{path} does not exist"
    try:
        verify_manifest(folder, [name], require=True)
        info = read_metadata(path)
    except CheckpointError as err:
        return str(err)
    except Exception as err:  # any file onnx cannot parse or that has no metadata
        return f"{path} cannot be read as an exported graph ({type(err).__name__}: {err})"
    expected = json.loads(json.dumps(expected))  # as stored: lists, not tuples
    if info.get("weights_sha256") != expected.get("weights_sha256"):
        return (
            f"{path} was exported from other weights (weights_sha256 "
            f"{info.get('weights_sha256')}, expected {expected.get('weights_sha256')})"
        )
    if info != expected:
        differ = sorted(k for k in set(info) | set(expected) if info.get(k) != expected.get(k))
        return f"{path} was exported with other settings ({', '.join(differ)} differ)"
    return None


def cached_graph(folder, name: str, expected: Dict, write: Callable[[Path], object]) -> Path:
    """``folder/name``: the cached graph when usable, else written there by ``write(path)``.

    The graph is reused when :func:`graph_problem` finds nothing wrong with it,
    checked against ``expected`` (its :func:`~speechbrain_dsl.inference.graphs.metadata`).
    Anything else (tampered, truncated, unlisted, of other weights or settings)
    is written again with a warning naming the file and what is wrong.

    Writing: ``write`` puts the graph at ``path`` atomically (a temporary name,
    then a rename), then ``folder/SHA256SUMS`` (the cache's own, listing the
    graph) is written the same way, so a crash leaves the old state or the new one
    and a reader never sees half a file. Processes loading at once take turns on
    an advisory lock (``folder/.lock``, where the OS has ``fcntl``); without it
    they write the same bytes (the export is deterministic). A ``.gitignore``
    keeps the cache out of git when ``folder`` lies in a checkout.

    Raises
    ------
    OSError
        When ``folder`` cannot be created or written.
    """
    folder = Path(folder)
    path = folder / name
    if graph_problem(folder, name, expected) is None:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        problem = graph_problem(folder, name, expected)  # another process may have won
        if problem is None:
            return path
        if path.exists():
            logger.warning(f"{problem}: exporting it again")
        else:
            logger.info(f"exporting the graph {path} (once: later loads reuse it)")
        if not (folder / ".gitignore").exists():
            write_text(folder / ".gitignore", "# graphs exported on first load: a cache\n*\n")
        write(path)
        write_manifest(folder, [name])  # the cache lists its graph only
    return path


@contextlib.contextmanager
def _exclusive(folder: Path):
    """Holds an advisory lock on ``folder/.lock`` while the block runs (best effort)."""
    if fcntl is None:
        yield
        return
    with open(folder / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: atomic renames still keep files whole
            pass
        yield  # closing the file releases the lock
