"""Checks of the audio, list and manifest files that the prepare scripts read.

One rule for every prepare script (LibriTTS, AudioSet, Speech Commands, LibriCount):

- an audio file is **bad** when it cannot be opened by ``soundfile`` (unreadable,
  not audio, a broken or looping symlink), holds zero samples (a header-only
  wav), is **truncated** (a WAV whose ``data`` chunk claims more bytes than the
  file has; for other formats, the last frame cannot be read) or its name is
  not valid UTF-8 (it could not be written to a JSON manifest);
- a prepare script checks *all* its files first, then **refuses** (a
  ``ValueError`` that names every bad file, up to a few, with the reason and
  the total count) unless called with ``skip_bad_audio=True``, in which case
  the bad files are left out of the manifests, each is named in a warning and
  the count is reported. Other problems found on the way (a missing subset,
  metadata that disagrees) go into the same error (:func:`problems_message`).

Text inputs (CSV, file lists, transcripts) must be UTF-8 and JSON inputs
(manifests, option files, metadata) must parse: :func:`read_text` and
:func:`read_json` raise a ``ValueError`` naming the file otherwise.

Example
-------
>>> import tempfile, numpy as np, soundfile as sf
>>> folder = Path(tempfile.mkdtemp())
>>> sf.write(folder / "ok.wav", np.zeros(800, "float32"), 16000)
>>> sf.write(folder / "empty.wav", np.zeros(0, "float32"), 16000)
>>> checker = AudioChecker()
>>> checker.check(folder / "ok.wav").duration
0.05
>>> checker.check(folder / "empty.wav") is None
True
>>> checker.bad[0].kind, checker.bad[0].path.name
('empty', 'empty.wav')
>>> checker.finish("the test set")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ValueError: 1 bad audio file in the test set: empty audio file .../empty.wav (0 samples). ...
"""

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Union

import soundfile as sf

logger = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
SHOWN_BAD_FILES = 10  # how many bad files an error message names


class AudioInfo(NamedTuple):
    """What a prepare script needs to know of a good audio file."""

    path: Path  #: the file, symlinks resolved
    frames: int
    samplerate: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.samplerate


KINDS = ("unreadable", "empty", "truncated", "badly named")


class BadAudioError(ValueError):
    """An audio file that is unreadable, empty, truncated or badly named.

    The message reads ``"<kind> audio file <path> (<detail>)"``; ``path``,
    ``kind`` (one of :data:`KINDS`) and ``detail`` are attributes.
    """

    def __init__(self, path: PathLike, kind: str, detail: str):
        self.path, self.kind, self.detail = Path(path), kind, detail
        super().__init__(f"{kind} audio file {show_path(path)} ({detail})")


def show_path(path: PathLike) -> str:
    """``path`` as printable text, also when its name is not valid UTF-8.

    >>> show_path(os.fsdecode(b"/data/caf\\xe9.wav"))
    '/data/caf\\\\udce9.wav'
    """
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def audio_info(path: PathLike) -> AudioInfo:
    """Frames, rate and channels of ``path``; raises :class:`BadAudioError` if it is bad.

    See the module docstring for what *bad* means.

    Example
    -------
    >>> audio_info("/no/such/file.wav")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    BadAudioError: unreadable audio file /no/such/file.wav (No such file or directory)
    """
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise BadAudioError(path, "badly named", "the name is not valid UTF-8") from None
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as err:  # missing, permission, symlink loop
        detail = getattr(err, "strerror", None) or str(err)
        raise BadAudioError(path, "unreadable", detail) from None
    if not resolved.is_file():
        raise BadAudioError(path, "unreadable", "not a regular file")
    try:
        with sf.SoundFile(str(resolved)) as f:
            info = AudioInfo(resolved, int(f.frames), int(f.samplerate), int(f.channels))
            if info.frames == 0:
                raise BadAudioError(path, "empty", "0 samples")
            missing = _wav_missing_bytes(resolved) if f.format in ("WAV", "WAVEX") else None
            if missing:
                raise BadAudioError(
                    path,
                    "truncated",
                    f"the data chunk lacks {missing} bytes; {info.frames} samples are present",
                )
            if missing is None:  # not a plain WAV: the last frame must decode
                f.seek(info.frames - 1)
                if f.read(1, dtype="float32").shape[0] != 1:
                    raise BadAudioError(path, "truncated", "the last frame cannot be read")
    except BadAudioError:
        raise
    except (RuntimeError, OSError, sf.SoundFileError) as err:
        text = str(err).replace(f"'{resolved}'", "the file") or type(err).__name__
        kind = "truncated" if "seek" in text or "sync" in text else "unreadable"
        raise BadAudioError(path, kind, text) from None
    if info.samplerate <= 0:
        raise BadAudioError(path, "unreadable", f"sample rate {info.samplerate}")
    return info


def _wav_missing_bytes(path: Path) -> Optional[int]:
    """Bytes the ``data`` chunk of a RIFF/WAVE file claims but lacks; None if unknown."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # RF64, RIFX, ...: leave it to the generic check
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streamed: the size was never filled in
                    return None
                return max(0, offset + 8 + chunk_size - size)
            offset += 8 + chunk_size + (chunk_size & 1)
    return None


class AudioChecker:
    """Checks audio files one by one and applies the one rule at the end.

    Parameters
    ----------
    skip_bad : bool
        False (default): :meth:`finish` raises a ``ValueError`` naming the bad
        files. True: :meth:`finish` logs them and the count, and the caller
        leaves them out (:meth:`check` returned None for them).
    """

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.bad: List[BadAudioError] = []
        self.checked = 0

    def check(self, path: PathLike) -> Optional[AudioInfo]:
        """The :class:`AudioInfo` of ``path``, or None (recorded) when it is bad."""
        self.checked += 1
        try:
            return audio_info(path)
        except BadAudioError as err:
            self.bad.append(err)
            return None

    def finish(self, what: str = "the data") -> dict:
        """Raises for bad files (unless ``skip_bad``); returns ``{"checked", "bad"}``.

        ``what`` names the data set in the message, e.g. its folder.
        """
        if self.bad:
            shown = "; ".join(str(b) for b in self.bad[:SHOWN_BAD_FILES])
            more = len(self.bad) - SHOWN_BAD_FILES
            summary = (
                f"{len(self.bad)} bad audio file{'s' if len(self.bad) > 1 else ''} in "
                f"{what}: {shown}" + (f"; and {more} more" if more > 0 else "")
            )
            if not self.skip_bad:
                raise ValueError(
                    summary + ". Fix or delete them, or pass skip_bad_audio=True to leave them out."
                )
            for bad in self.bad:
                logger.warning(f"left out {bad}")
            logger.warning(f"left out {summary}")
        return {"checked": self.checked, "bad": len(self.bad)}


def problems_message(problems: List[str], what: str) -> str:
    """One error message for every problem a prepare script found in ``what``.

    A single problem is its own message; several are listed one per line (the
    first :data:`SHOWN_BAD_FILES`), after a line naming ``what``.

    >>> print(problems_message(["a.wav has no a.json", "b.wav has no b.json"], "LibriCount /d"))
    problems in LibriCount /d (every file was checked):
    - a.wav has no a.json
    - b.wav has no b.json
    """
    if len(problems) == 1:
        return problems[0]
    shown = problems[:SHOWN_BAD_FILES]
    more = len(problems) - len(shown)
    return (
        f"problems in {what} (every file was checked):\n"
        + "\n".join(f"- {p}" for p in shown)
        + (f"\n- and {more} more problems" if more > 0 else "")
    )


def read_text(path: PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a ``ValueError`` naming it if missing or not UTF-8.

    >>> read_text("/no/such/list.txt", "validation list")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: cannot read validation list /no/such/list.txt: ...
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, RuntimeError) as err:
        raise ValueError(
            f"cannot read {what} {show_path(path)}: {getattr(err, 'strerror', None) or err}"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{what} {show_path(path)} is not UTF-8 text (line {line}, "
            f"byte {err.start}: {data[err.start : err.start + 1]!r})"
        ) from None


def read_json(path: PathLike, what: str = "JSON file", expect: Optional[type] = None) -> Any:
    """The parsed JSON of ``path``; a ``ValueError`` naming it if it does not parse.

    ``expect`` (``dict``, ``list``) also checks the type of the top-level value.

    >>> import tempfile
    >>> bad = Path(tempfile.mkdtemp()) / "train.json"
    >>> _ = bad.write_text('{"a": ')
    >>> read_json(bad, "manifest")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: manifest .../train.json is not valid JSON (line 1, column 7: ...)
    """
    text = read_text(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{what} {show_path(path)} is not valid JSON (line {err.lineno}, "
            f"column {err.colno}: {err.msg})"
        ) from None
    if expect is not None and not isinstance(value, expect):
        raise ValueError(
            f"{what} {show_path(path)} holds a JSON {type(value).__name__}, "
            f"expected a JSON {'object' if expect is dict else expect.__name__}"
        )
    return value
