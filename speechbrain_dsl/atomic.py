"""Writing files so that a crash never leaves a half-written one behind.

Everything goes to a temporary file in the target folder and is renamed over the
target at the end (``os.replace`` is atomic on POSIX and Windows).

Example
-------
>>> import tempfile, json
>>> folder = tempfile.mkdtemp()
>>> path = write_json(f"{folder}/sub/a.json", {"x": 1})
>>> json.loads(path.read_text())
{'x': 1}
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path next to ``path``; renames it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Writes ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, data):
    """Writes ``data`` as indented JSON to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=2))
