"""What a tokenization run writes: chunks while it runs, DASB's cached-token files at the end.

The final layout is the one DASB's token extractor writes and its loader reads
(matched against ``benchmarks/DASB/utils/tokens.py`` of speechbrain/benchmarks:
``TokensExtractor.extract_tokens`` writes with
``kaldiio.WriteHelper("ark,scp,t:<folder>/<save_name>.ark,<folder>/<save_name>.scp",
write_function="numpy")``, ``TokensLoader`` reads ``<save_name>.scp`` and
``kaldiio.load_mat`` of each ``path:offset``, and ``_skip`` compares
``opt_extract.pkl`` with ``{"sample_rate", "save_folder", "dataset_length"}``)::

    OUT/tokens.ark        one record per utterance: "<id> NPY<size><.npy bytes>",
                          tokens [frames, num_codebooks] int64 (write_function="numpy";
                          kaldiio ignores the "t" flag for it, so DASB's files are binary too)
    OUT/tokens.scp        "<id> <absolute path of tokens.ark>:<offset>", sorted by id
    OUT/opt_extract.pkl   DASB's record of a finished extraction (save_folder = --out as given)
    OUT/embeddings.npy    get_pretrained_embeddings(num_codebooks=K): [K * vocab, dim], what
                          DASB's save_pretrained_embeddings writes and load_pretrained_embeddings reads
    OUT/summary.json      this project's record: model checksum, settings, hours, light
                          share, throughput, skipped files (written last: the run is complete)

While a run goes on, ``OUT/.work/`` holds ``plan.json`` (the settings every
chunk was made with) and ``chunks/<n>.ark`` + ``chunks/<n>.json``: chunk ``n``
is utterances ``n * chunk_size ...`` of the id-sorted list, written (ark first,
then its record; each to a temporary name, then renamed) when all of them are
encoded. A chunk with its record is done; a resumed run encodes the others.
The merge concatenates the chunk arks in order, so the ark holds the same bytes
whatever the number of ranks, kills and resumes, then removes ``.work``.

Example
-------
>>> import tempfile, numpy as np, kaldiio
>>> work = Path(tempfile.mkdtemp())
>>> chunks = ChunkStore(work)
>>> data, offsets = ark_bytes({"utt1": np.zeros((3, 2), np.int64)})
>>> chunks.write(0, data, {"entries": [["utt1", offsets[0], 3]]})
>>> chunks.done(0), chunks.done(1)
(True, False)
"""

import hashlib
import json
import os
import pickle
import shutil
from io import BytesIO
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import kaldiio
import numpy as np

from speechbrain_dsl.atomic import atomic_path, write_json
from speechbrain_dsl.data.audio import show_path

WORK_DIR = ".work"
PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
DASB_OPT_FILE = "opt_extract.pkl"  # DASB's utils/tokens.py OPT_FILE
EMBEDDINGS_FILE = "embeddings.npy"  # DASB's save_pretrained_embeddings(save_name="embeddings")
_COPY_BLOCK = 1 << 22


def ark_bytes(arrays: Dict[str, np.ndarray]) -> Tuple[bytes, List[int]]:
    """An ark of ``arrays`` (in their order) as DASB writes it, and each record's scp offset.

    The offset is where the record's data starts (after ``"<id> "``), the number
    ``kaldiio`` writes after the colon in the scp.

    Example
    -------
    >>> data, offsets = ark_bytes({"a": np.arange(4).reshape(2, 2)})
    >>> data[:5], offsets
    (b'a NPY', [2])
    >>> dict(kaldiio.load_ark(BytesIO(data)))["a"].tolist()
    [[0, 1], [2, 3]]
    >>> kaldiio.matio.read_kaldi(BytesIO(data[offsets[0]:])).tolist()
    [[0, 1], [2, 3]]
    """
    buffer = BytesIO()
    offsets = []
    for key, array in arrays.items():
        start = buffer.tell()
        kaldiio.save_ark(buffer, {key: array}, write_function="numpy")
        offsets.append(start + len(f"{key} ".encode()))
    return buffer.getvalue(), offsets


class ChunkStore:
    """The chunks of a run under ``work/chunks``: ``<n>.ark`` and its record ``<n>.json``."""

    def __init__(self, work):
        self.folder = Path(work) / "chunks"

    def ark(self, index: int) -> Path:
        return self.folder / f"{index:06d}.ark"

    def record_path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.json"

    def write(self, index: int, data: bytes, record: dict):
        """Writes chunk ``index`` (ark, then its record: the record says it is complete)."""
        record = dict(record, ark_bytes=len(data), ark_sha256=hashlib.sha256(data).hexdigest())
        with atomic_path(self.ark(index), suffix=".tmp") as tmp:
            Path(tmp).write_bytes(data)
        with atomic_path(self.record_path(index), suffix=".tmp") as tmp:
            Path(tmp).write_text(json.dumps(record), encoding="utf-8")

    def record(self, index: int) -> Optional[dict]:
        """The record of a complete chunk, else None (no record, or an ark of another size)."""
        try:
            record = json.loads(self.record_path(index).read_text(encoding="utf-8"))
            if self.ark(index).stat().st_size == record["ark_bytes"]:
                return record
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def done(self, index: int) -> bool:
        return self.record(index) is not None

    def remove_temporaries(self):
        """Deletes what a killed run left half-written (temporary names start with a dot)."""
        if self.folder.is_dir():
            for path in self.folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)


def check_plan(work: Path, plan: dict) -> None:
    """Writes ``plan.json`` in a new run; in a resumed one, checks that nothing changed.

    Raises
    ------
    ValueError
        When ``work`` holds chunks made with other settings, naming them.
    """
    path = work / PLAN_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != plan:
            changed = (
                ["plan.json is unreadable"]
                if not isinstance(old, dict)
                else [
                    f"{key}: {old.get(key)!r} -> {plan.get(key)!r}"
                    for key in sorted(set(old) | set(plan))
                    if old.get(key) != plan.get(key)
                ]
            )
            raise ValueError(
                f"--out: {show_path(work.parent)} holds a run with other settings "
                f"({'; '.join(changed)}); use another --out, or delete it to start over"
            )
        return
    write_json(path, plan)


def finished_summary(out: Path, plan: dict) -> Optional[dict]:
    """The summary of a finished run of ``plan`` in ``out``, or None if not finished.

    Finished: ``summary.json`` is there (the merge writes it last) and so are
    the ark and scp it names (a run whose outputs were deleted runs again).

    Raises
    ------
    ValueError
        When ``out`` holds a finished run with other settings.
    """
    path = out / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        old = summary["plan"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"--out: {show_path(path)} is not a summary of this tool; use another --out"
        ) from None
    if old != plan:
        changed = [
            f"{key}: {old.get(key)!r} -> {plan.get(key)!r}"
            for key in sorted(set(old) | set(plan))
            if old.get(key) != plan.get(key)
        ]
        raise ValueError(
            f"--out: {show_path(out)} holds a finished run with other settings "
            f"({'; '.join(changed)}); use another --out, or delete it to start over"
        )
    name = plan.get("save_name", "tokens")
    if not all((out / f"{name}{ext}").is_file() for ext in (".ark", ".scp")):
        return None
    return summary


def merge(
    out: Path,
    chunks: ChunkStore,
    count: int,
    save_name: str,
    dasb_conf: dict,
    embeddings: Optional[np.ndarray],
) -> List[dict]:
    """Writes ``<save_name>.ark`` and ``.scp`` from chunks ``0 .. count-1``, then DASB's files.

    Returns the chunk records (in order). Each output is written to a temporary
    name and renamed; the summary (written by the caller) comes last.

    Raises
    ------
    ValueError
        A chunk missing or not matching its record (naming the file: delete it
        and run again to encode it anew).
    """
    ark_path = out / f"{save_name}.ark"
    name = str(ark_path.absolute())  # DASB writes the absolute ark path into the scp
    for stale in out.glob(f".{save_name}.*"):  # a merge killed half-way
        stale.unlink(missing_ok=True)
    records = []
    lines = []
    with atomic_path(ark_path) as tmp, open(tmp, "wb") as target:
        for index in range(count):
            record = chunks.record(index)
            if record is None:
                raise ValueError(
                    f"chunk {show_path(chunks.ark(index))} is missing or incomplete; "
                    f"run again to encode it"
                )
            base = target.tell()
            digest = hashlib.sha256()
            with open(chunks.ark(index), "rb") as source:
                for block in iter(lambda: source.read(_COPY_BLOCK), b""):
                    digest.update(block)
                    target.write(block)
            if digest.hexdigest() != record["ark_sha256"]:
                raise ValueError(
                    f"chunk {show_path(chunks.ark(index))} does not match its record "
                    f"(modified or corrupted): delete it and run again to encode it anew"
                )
            lines.extend(f"{uid} {name}:{base + offset}\n" for uid, offset, _ in record["entries"])
            records.append(record)
        target.flush()
        os.fsync(target.fileno())
    with atomic_path(out / f"{save_name}.scp") as tmp:
        Path(tmp).write_text("".join(lines), encoding="utf-8")
    with atomic_path(out / DASB_OPT_FILE) as tmp, open(tmp, "wb") as f:
        pickle.dump(dasb_conf, f)
    if embeddings is not None:
        with atomic_path(out / EMBEDDINGS_FILE, suffix=".npy") as tmp:
            np.save(tmp, embeddings)
    return records


def remove_work(work: Path):
    """Deletes the chunks once the outputs are complete."""
    shutil.rmtree(work, ignore_errors=True)


def entries_digest(entries: Sequence) -> str:
    """sha256 of the ``id<TAB>path`` lines of the utterance list (what the plan records)."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.id}\t{entry.path}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
