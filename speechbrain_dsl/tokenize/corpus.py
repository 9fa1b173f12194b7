"""What a tokenization run reads: the utterance list, the audio headers, the audio itself.

- :func:`read_corpus`: a SpeechBrain CSV or JSON manifest, or a folder of audio,
  as :class:`Entry` ``(id, path)`` pairs sorted by id (every run, every rank and
  every resume sees the same list).
- :func:`probe`: the header of one file (:class:`Probe`: its length at the
  codec's rate, or why it is bad), cheap enough to check a whole shard first.
- :func:`plan_batches`: one chunk's utterances in batches built by length under
  a budget of padded audio seconds.
- :class:`HeaderDataset`, :class:`BatchDataset`: ``torch.utils.data`` datasets,
  so headers are read and audio is read and resampled in DataLoader workers,
  not in the encoding loop.

Manifests. A CSV needs SpeechBrain's ``ID`` column and a ``wav`` (or ``path``)
column, with ``$data_root`` replaced as ``load_data_csv`` does; a JSON manifest
maps ids to objects with a ``wav`` (or ``path``) string, with ``{data_root}``
replaced as ``load_data_json`` does. Relative paths are read relative to the
current folder, as SpeechBrain reads them. A folder is searched recursively for
audio files (:data:`AUDIO_SUFFIXES`, names starting with a dot left out); an
utterance's id is its path relative to the folder without the extension,
``/`` replaced by ``_`` (``id_from="path"``: ``1495/93723/x.wav`` is
``1495_93723_x``), or the file name without the extension (``id_from="stem"``:
``x``, the id LibriTTS and LibriSpeech manifests use). Two files with one id
are an error. Ids hold no whitespace (a Kaldi ark key ends at a space).

Example
-------
>>> import tempfile, numpy as np, soundfile as sf
>>> root = Path(tempfile.mkdtemp())
>>> (root / "spk1").mkdir()
>>> sf.write(root / "spk1" / "a.wav", np.zeros(24000, "float32"), 24000)
>>> sf.write(root / "b.flac", np.zeros(8000, "float32"), 16000)
>>> entries = read_corpus(root)
>>> [e.id for e in entries]
['b', 'spk1_a']
>>> probe(entries[1].path, 16000, hop=320)
Probe(samples=16000, problem=None)
"""

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_dsl.data.audio import BadAudioError, audio_info, read_json, read_text, show_path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
WAV_KEYS = ("wav", "path")  # the field that names an utterance's audio, first found wins
ID_FROM = ("path", "stem")
_CSV_VARIABLE = re.compile(r"\$([\w.]+)")  # speechbrain.dataio.dataio.load_data_csv's rule
_JSON_FIELD = re.compile(r"\{([^{}]*)\}")  # str.format fields, as load_data_json formats


class Entry(NamedTuple):
    """One utterance: its id (the ark/scp key) and its audio file."""

    id: str
    path: str


class Probe(NamedTuple):
    """What the header of an audio file says: its length at the codec's rate, or its problem."""

    samples: int  #: samples after resampling (0 when there is a problem)
    problem: Optional[str]  #: why the file is bad (None when it is good)


class Bad(NamedTuple):
    """An utterance left out, and why (what the summary lists)."""

    id: str
    path: str
    reason: str


def read_corpus(
    data,
    data_root=None,
    wav_key: Optional[str] = None,
    id_from: str = "path",
) -> List[Entry]:
    """The utterances of a manifest (``.csv``, ``.json``) or a folder of audio, sorted by id.

    Arguments
    ---------
    data : str or Path
        A SpeechBrain CSV or JSON manifest, or a folder (see the module docstring).
    data_root : str or Path, optional
        Replaces ``$data_root`` (CSV) and ``{data_root}`` (JSON) in the manifest.
    wav_key : str, optional
        The manifest field naming the audio (by default ``wav``, else ``path``).
    id_from : str
        For a folder: ``path`` or ``stem`` (see the module docstring).

    Returns
    -------
    list of Entry

    Raises
    ------
    ValueError
        Naming the manifest (and line or id) or folder: missing, unparsable, a
        missing id or audio field, an unreplaced placeholder, duplicate or
        whitespace-holding ids, no utterances.
    """
    data = Path(data)
    if data.is_dir():
        entries = _read_folder(data, id_from)
    elif not data.exists():
        raise ValueError(f"--data: {show_path(data)} does not exist")
    elif data.suffix.lower() == ".csv":
        entries = _read_csv(data, data_root, wav_key)
    elif data.suffix.lower() == ".json":
        entries = _read_json(data, data_root, wav_key)
    else:
        raise ValueError(
            f"--data: expected a SpeechBrain .csv or .json manifest or a folder of audio, "
            f"got {show_path(data)}"
        )
    if not entries:
        raise ValueError(f"--data: {show_path(data)} holds no utterances")
    entries.sort()
    for entry in entries:
        if not entry.id or re.search(r"\s", entry.id):
            raise ValueError(
                f"{show_path(data)}: utterance id {entry.id!r} is empty or holds whitespace "
                f"(an ark/scp key ends at the first space)"
            )
    return entries


def _read_folder(folder: Path, id_from: str) -> List[Entry]:
    if id_from not in ID_FROM:
        raise ValueError(f"id_from: expected one of {ID_FROM}, got {id_from!r}")
    seen: Dict[str, Path] = {}
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            relative = path.relative_to(folder).with_suffix("")
            uid = relative.name if id_from == "stem" else "_".join(relative.parts)
            if uid in seen:
                raise ValueError(
                    f"--data: {show_path(seen[uid])} and {show_path(path)} both get the id "
                    f"{uid!r} (ids are the {'file names' if id_from == 'stem' else 'relative paths'} "
                    f"without extension; write a manifest to name them)"
                )
            seen[uid] = path
            entries.append(Entry(uid, str(path)))
    return entries


def _pick_wav_key(fields: Sequence[str], wav_key: Optional[str], where: str) -> str:
    if wav_key is not None:
        if wav_key not in fields:
            raise ValueError(f"{where} has no {wav_key!r} field (fields: {', '.join(fields)})")
        return wav_key
    for key in WAV_KEYS:
        if key in fields:
            return key
    raise ValueError(
        f"{where} has neither a 'wav' nor a 'path' field naming the audio "
        f"(fields: {', '.join(fields) or 'none'}; --wav_key names another)"
    )


def _read_csv(path: Path, data_root, wav_key: Optional[str]) -> List[Entry]:
    """A SpeechBrain CSV: an ``ID`` column, ``$data_root`` replaced."""
    text = read_text(path, "manifest")
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    fields = reader.fieldnames or []
    if "ID" not in fields:
        raise ValueError(
            f"manifest {show_path(path)}: a SpeechBrain CSV needs an 'ID' column "
            f"(got columns: {', '.join(fields) or 'none'})"
        )
    key = _pick_wav_key(fields, wav_key, f"manifest {show_path(path)}")
    lines: Dict[str, int] = {}
    entries = []
    for row in reader:
        line = reader.line_num
        if None in row or any(value is None for value in row.values()):
            raise ValueError(
                f"manifest {show_path(path)}, line {line}: expected {len(fields)} "
                f"comma-separated values (the columns {', '.join(fields)})"
            )
        uid = row["ID"]
        if uid in lines:
            raise ValueError(
                f"manifest {show_path(path)}: id {uid!r} on lines {lines[uid]} and {line}"
            )
        lines[uid] = line

        def replace(match, line=line):
            if match[1] != "data_root":
                raise ValueError(
                    f"manifest {show_path(path)}, line {line}: ${match[1]} is not "
                    f"replaced (only $data_root is, from --data_root)"
                )
            if data_root is None:
                raise ValueError(
                    f"manifest {show_path(path)}, line {line} uses $data_root: pass --data_root"
                )
            return str(data_root)

        entries.append(Entry(uid, _CSV_VARIABLE.sub(replace, row[key])))
    return entries


def _read_json(path: Path, data_root, wav_key: Optional[str]) -> List[Entry]:
    """A SpeechBrain JSON manifest: ``{id: {"wav": ...}}``, ``{data_root}`` replaced."""
    data = read_json(path, "manifest", expect=dict)
    entries = []
    key = None
    for uid, item in data.items():
        where = f"manifest {show_path(path)}, id {uid!r}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
        key = _pick_wav_key(list(item), wav_key if key is None else key, where)
        value = item[key]
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key!r} must be a string, got {value!r}")

        def replace(match, where=where):
            if match[1] != "data_root":
                raise ValueError(
                    f"{where}: {{{match[1]}}} is not replaced (only {{data_root}} is, "
                    f"from --data_root)"
                )
            if data_root is None:
                raise ValueError(f"{where} uses {{data_root}}: pass --data_root")
            return str(data_root)

        entries.append(Entry(uid, _JSON_FIELD.sub(replace, value)))
    return entries


def resampled_length(samples: int, rate: int, target: int) -> int:
    """Samples ``torchaudio.functional.resample`` returns for ``samples`` at ``rate``.

    Example
    -------
    >>> resampled_length(24000, 24000, 16000), resampled_length(1001, 22050, 16000)
    (16000, 727)
    """
    return samples if rate == target else math.ceil(samples * target / rate)


def probe(path, target_rate: int, hop: int, resample: bool = True) -> Probe:
    """The header of ``path``: its length in samples at ``target_rate``, or why it is bad.

    Bad: missing, unreadable, empty or truncated (:func:`speechbrain_dsl.data.audio.audio_info`),
    another rate when ``resample`` is off, or shorter than one ``hop`` once resampled.
    """
    try:
        info = audio_info(path)
    except BadAudioError as err:
        return Probe(0, str(err))
    if info.samplerate != target_rate and not resample:
        return Probe(
            0,
            f"sample rate {info.samplerate} Hz in {show_path(path)}: expected "
            f"{target_rate} Hz (resampling is off)",
        )
    samples = resampled_length(info.frames, info.samplerate, target_rate)
    if samples < hop:
        return Probe(
            0,
            f"too short audio file {show_path(path)} ({samples} samples at {target_rate} Hz, "
            f"less than one token frame of {hop})",
        )
    return Probe(samples, None)


def read_audio(path, target_rate: int, max_peak: float) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``target_rate`` (channels averaged, resampled).

    Raises
    ------
    BadAudioError
        Unreadable, empty, not finite, or a peak above ``max_peak``.
    """
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.SoundFileError) as err:
        raise BadAudioError(path, "unreadable", str(err) or type(err).__name__) from None
    if audio.shape[0] == 0:
        raise BadAudioError(path, "empty", "0 samples")
    wav = torch.from_numpy(audio).mean(1)
    if rate != target_rate:
        wav = torchaudio.functional.resample(wav, rate, target_rate)
    if not bool(torch.isfinite(wav).all()):
        raise BadAudioError(path, "unreadable", "the samples hold NaN or inf")
    peak = float(wav.abs().max())
    if peak > max_peak:
        raise BadAudioError(path, "out of range", f"a peak of {peak:g}; expected [-1, 1]")
    return wav.numpy()


def plan_batches(
    ids: Sequence[str], samples: Sequence[int], budget_samples: int
) -> List[List[int]]:
    """Batches (indices into ``ids``) built by length: longest first, padded size within budget.

    Utterances are sorted by length (longest first, then id) and a batch takes the
    next one while ``count x longest`` stays within ``budget_samples``; an
    utterance longer than the budget is a batch of its own. The result depends on
    the inputs only, so a resumed or resharded run batches a chunk the same way.

    Example
    -------
    >>> plan_batches(["a", "b", "c", "d"], [10, 40, 20, 20], budget_samples=45)
    [[1], [2, 3], [0]]
    """
    order = sorted(range(len(ids)), key=lambda i: (-samples[i], ids[i]))
    batches: List[List[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * samples[batches[-1][0]] <= budget_samples:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class HeaderDataset(torch.utils.data.Dataset):
    """:func:`probe` of each entry, for a DataLoader (its workers read the headers)."""

    def __init__(self, entries: Sequence[Entry], target_rate: int, hop: int, resample: bool):
        self.entries = list(entries)
        self.target_rate, self.hop, self.resample = target_rate, hop, resample

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Probe:
        return probe(self.entries[index].path, self.target_rate, self.hop, self.resample)


class BatchDataset(torch.utils.data.Dataset):
    """One padded batch per item, read and resampled in a DataLoader worker.

    Each item is a dict: ``ids``, ``samples`` (each utterance's length),
    ``wavs`` (float32 ``[B, S]``, zero-padded; None when every file was bad) and
    ``bad`` (a :class:`Bad` per file that could not be read; those are left out
    of ``wavs``).
    """

    def __init__(self, batches: Sequence[Sequence[Entry]], target_rate: int, max_peak: float):
        self.batches = [list(b) for b in batches]
        self.target_rate, self.max_peak = target_rate, max_peak

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        ids, wavs, bad = [], [], []
        for entry in self.batches[index]:
            try:
                wavs.append(read_audio(entry.path, self.target_rate, self.max_peak))
                ids.append(entry.id)
            except BadAudioError as err:
                bad.append(Bad(entry.id, entry.path, str(err)))
        samples = [len(w) for w in wavs]
        batch = None
        if wavs:
            batch = torch.zeros(len(wavs), max(samples))
            for i, wav in enumerate(wavs):
                batch[i, : len(wav)] = torch.from_numpy(wav)
        return {"ids": ids, "samples": samples, "wavs": batch, "bad": bad}


def passthrough(item):
    """A DataLoader ``collate_fn`` that hands items over as they are."""
    return item


def one_thread(_worker_id: int):
    """A DataLoader ``worker_init_fn``: one torch thread per reading worker."""
    torch.set_num_threads(1)
