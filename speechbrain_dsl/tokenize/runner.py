"""The run: ranks, engines, the encoding loop, the merge and the summary.

One function, :func:`tokenize_corpus`, runs a :class:`TokenizeConfig` in the
way the environment asks for:

- under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this process is
  rank ``RANK`` of a gloo process group (``LOCAL_RANK`` picks its GPU with
  ``device="cuda"``);
- with ``workers`` > 1 it starts that many local processes (``spawn``), which
  form a gloo group through a temporary file, and waits for them;
- otherwise it runs alone.

Every rank reads the same id-sorted utterance list and takes the chunks
``rank, rank + world, ...`` (chunk ``n`` is utterances ``n * chunk_size`` to
``(n + 1) * chunk_size - 1``) that are not done yet. It checks the headers of
their audio first (all ranks share what they found: bad files are refused
before anything is encoded, or left out with ``skip_bad_audio``), then reads and
resamples the audio in DataLoader workers, batch by batch (batches by length
within a chunk, :func:`~speechbrain_dsl.tokenize.corpus.plan_batches`), encodes
each batch with :meth:`DSLCodecInterface.encode_with_routing` and writes each
chunk when its last batch is done. After a barrier, rank 0 merges the chunks
(:func:`~speechbrain_dsl.tokenize.store.merge`) and writes the summary.

Since chunks and their batches depend on the utterance list and the settings
only, the output is the same for any number of ranks and any number of kills
and resumes (the settings that change tokens are recorded in ``plan.json`` and
a resumed run with others is refused). The torch engine's tokens are those
of the tokenizer's ``sig_to_tokens`` for each file alone (batching pads and
masks, it does not change a valid frame); the onnxruntime engine's are those
of the tokenizer loaded with ``engine="onnxruntime"`` (the same graph).
"""

import dataclasses
import logging
import math
import multiprocessing
import os
import queue
import tempfile
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.data.audio import SHOWN_BAD_FILES, show_path
from speechbrain_dsl.inference.export import ExportableEncoder, export_onnx, metadata, read_metadata
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.inference.manifest import read_manifest, sha256_file
from speechbrain_dsl.inference.runtime import ENCODER_FILE, OnnxCodec
from speechbrain_dsl.inference.streaming import ENGINES
from speechbrain_dsl.lobes.codec import MAX_PEAK
from speechbrain_dsl.nnet.routing import ENGINE_MODES as MODES  # oracle runs both tails
from speechbrain_dsl.tokenize.corpus import (
    Bad,
    BatchDataset,
    Entry,
    HeaderDataset,
    one_thread,
    passthrough,
    plan_batches,
    read_corpus,
)
from speechbrain_dsl.tokenize.store import (
    SUMMARY_FILE,
    WORK_DIR,
    ChunkStore,
    ark_bytes,
    check_plan,
    entries_digest,
    finished_summary,
    merge,
    remove_work,
)

logger = logging.getLogger(__name__)
PLAN_FORMAT = 1  # bump when chunks written by an older version must not be reused
GROUP_TIMEOUT = timedelta(days=7)  # ranks wait at the final barrier for the slowest one


@dataclasses.dataclass
class TokenizeConfig:
    """The settings of a run (the command line's options; see ``python -m speechbrain_dsl.tokenize -h``).

    Attributes
    ----------
    model : str
        A packaged codec folder.
    data : str
        A SpeechBrain CSV or JSON manifest, or a folder of audio.
    out : str
        The output folder.
    num_codebooks : int, optional
        Tokens per frame (the first K codebooks; all by default).
    mode : str, optional
        ``full``, ``light`` or ``mixed`` (the model's calibrated threshold);
        ``mixed`` for a DSL model, ``full`` otherwise by default.
    engine : str, optional
        ``torch`` or ``onnxruntime``; onnxruntime by default on CPU for a DSL
        model (its graph is exported into the work folder when the package
        holds none), torch otherwise.
    device : str
        ``cpu``, ``cuda`` (``cuda:LOCAL_RANK``) or ``cuda:N``.
    workers : int
        Local processes (without torchrun).
    batch_seconds : float
        Padded audio seconds per batch.
    chunk_size : int
        Utterances per chunk (the unit written at once, and resumed).
    skip_bad_audio : bool
        Leave bad files out (listed in the summary) instead of refusing them.
    data_root, wav_key, id_from :
        See :func:`~speechbrain_dsl.tokenize.corpus.read_corpus`.
    resample : bool
        Resample other rates to the codec's (else such a file is bad).
    save_name : str
        Base name of the ark and scp files (DASB's ``save_name``).
    loader_workers : int
        DataLoader workers per rank reading audio (0: in the encoding process).
    threads : int, optional
        Torch and onnxruntime threads per rank (default: ``OMP_NUM_THREADS``,
        else the CPU cores shared among the local ranks).
    progress : bool, optional
        Show rank 0's progress bar (default: when stderr is a terminal).
    """

    model: str
    data: str
    out: str
    num_codebooks: Optional[int] = None
    mode: Optional[str] = None
    engine: Optional[str] = None
    device: str = "cpu"
    workers: int = 1
    batch_seconds: float = 60.0
    chunk_size: int = 64
    skip_bad_audio: bool = False
    data_root: Optional[str] = None
    wav_key: Optional[str] = None
    id_from: str = "path"
    resample: bool = True
    save_name: str = "tokens"
    loader_workers: int = 1
    threads: Optional[int] = None
    progress: Optional[bool] = None

    def check(self):
        """ValueErrors naming the option for values out of range."""
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"--mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.engine is not None and self.engine not in ENGINES:
            raise ValueError(f"--engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("workers", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}: expected >= 1, got {getattr(self, name)!r}")
        if self.loader_workers < 0:
            raise ValueError(f"--loader_workers: expected >= 0, got {self.loader_workers!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads: expected >= 1, got {self.threads!r}")
        if not self.batch_seconds > 0:
            raise ValueError(f"--batch_seconds: expected > 0, got {self.batch_seconds!r}")
        if self.num_codebooks is not None and self.num_codebooks < 1:
            raise ValueError(f"--num_codebooks: expected >= 1, got {self.num_codebooks!r}")
        if not self.save_name or "/" in self.save_name or self.save_name.startswith("."):
            raise ValueError(
                f"--save_name: expected a file name without '/' or leading dot, got "
                f"{self.save_name!r}"
            )


class Group:
    """This process's rank among the ranks of a run, and the few collectives they need."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, local_world: int = 1):
        self.rank, self.world = rank, world
        self.local_rank, self.local_world = local_rank, local_world
        self.initialized = False

    @classmethod
    def from_env(cls) -> "Group":
        """The rank torchrun started (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``)."""
        env = os.environ
        group = cls(
            int(env.get("RANK", 0)),
            int(env.get("WORLD_SIZE", 1)),
            int(env.get("LOCAL_RANK", 0)),
            int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
        )
        if group.world > 1:
            dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
            group.initialized = True
        return group

    @classmethod
    def from_file(cls, rank: int, world: int, path) -> "Group":
        """Local rank ``rank`` of ``world`` processes meeting through the file ``path``."""
        group = cls(rank, world, rank, world)
        dist.init_process_group(
            "gloo", init_method=f"file://{path}", rank=rank, world_size=world, timeout=GROUP_TIMEOUT
        )
        group.initialized = True
        return group

    def from_rank0(self, value):
        """Rank 0's ``value``, on every rank."""
        if not self.initialized:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.initialized:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def close(self):
        if self.initialized:
            dist.destroy_process_group()
            self.initialized = False


def tokenize_corpus(config: TokenizeConfig) -> dict:
    """Tokenizes ``config.data`` into ``config.out``; returns the summary (see the package docstring).

    Raises
    ------
    ValueError
        For bad options, manifests or audio (naming them), or an output
        folder that holds a run with other settings.
    """
    config.check()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        if config.workers > 1:
            raise ValueError(
                "--workers: under torchrun each rank is one process; give torchrun "
                "--nproc_per_node instead of --workers"
            )
        group = Group.from_env()
        try:
            return run_rank(config, group)
        finally:
            group.close()
    if config.workers > 1:
        return _run_local_workers(config)
    return run_rank(config, Group())


def _run_local_workers(config: TokenizeConfig) -> dict:
    """Runs ``config.workers`` ranks as local processes; returns rank 0's summary."""
    # the ranks meet through a file on this machine (not the output folder: it may be
    # on a network file system without the locks the store needs)
    rendezvous = Path(tempfile.gettempdir()) / f"speechbrain-dsl-tokenize-{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(
            target=_local_worker,
            args=(config, rank, config.workers, str(rendezvous), results),
            daemon=False,
        )
        for rank in range(config.workers)
    ]
    for process in processes:
        process.start()
    summary, error, reported = None, None, set()
    try:
        while len(reported) < len(processes) and error is None:
            try:
                kind, rank, payload = results.get(timeout=1.0)
            except queue.Empty:
                for rank, process in enumerate(processes):  # killed before it could report
                    if rank not in reported and process.exitcode not in (None, 0):
                        error = f"worker {rank} exited with code {process.exitcode}"
                continue
            reported.add(rank)
            if kind == "error":
                error = payload
            elif rank == 0:
                summary = payload
    finally:
        for process in processes:
            if error is not None and process.is_alive():
                process.terminate()  # its finished chunks are kept: a rerun resumes
            process.join()
        rendezvous.unlink(missing_ok=True)
    if error is not None:
        raise ValueError(error)
    return summary


def _local_worker(config: TokenizeConfig, rank: int, world: int, rendezvous: str, results):
    """One local rank: runs, then reports ``("ok", rank, summary)`` or ``("error", rank, text)``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    group = None
    try:
        group = Group.from_file(rank, world, rendezvous)
        results.put(("ok", rank, run_rank(config, group)))
    except ValueError as err:
        results.put(("error", rank, str(err)))
    except BaseException:  # a bug: the parent prints where it happened
        results.put(("error", rank, f"worker {rank} failed:\n{traceback.format_exc()}"))
    finally:
        if group is not None:
            group.close()


def resolve_device(device: str, local_rank: int) -> str:
    """``cpu``, or the CUDA device of this rank (``cuda`` -> ``cuda:LOCAL_RANK``).

    Example
    -------
    >>> resolve_device("cpu", 3)
    'cpu'
    >>> resolve_device("tpu", 0)
    Traceback (most recent call last):
    ...
    ValueError: --device: expected cpu, cuda or cuda:N, got 'tpu'
    """
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: CUDA is not available on this machine "
            f"(torch.cuda.is_available() is False); use --device cpu"
        )
    index = local_rank if device == "cuda" else int(device[5:])
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device}: this rank needs cuda:{index}, but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s) (one rank per GPU)"
        )
    return f"cuda:{index}"


def _default_threads(config: TokenizeConfig, group: Group) -> int:
    if config.threads is not None:
        return config.threads
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // group.local_world)


def _load(config: TokenizeConfig, device: str) -> DSLCodecInterface:
    model = Path(config.model)
    if not model.is_dir():
        raise ValueError(f"--model: {show_path(model)} is not a packaged codec folder")
    # onnxruntime is attached below when the package holds no graphs
    engine = "torch" if config.engine == "torch" or device != "cpu" else None
    return DSLCodecInterface.from_hparams(
        source=str(model),
        savedir=str(model),
        num_codebooks=config.num_codebooks,
        engine=engine,
        run_opts={"device": device},
    )


def _engine(config: TokenizeConfig, has_dsl: bool, device: str) -> str:
    if config.engine is None:
        return "onnxruntime" if has_dsl and device == "cpu" else "torch"
    if config.engine == "onnxruntime":
        if device != "cpu":
            raise ValueError(
                f"--engine onnxruntime runs on the CPU here; with --device {config.device} "
                f"use --engine torch"
            )
        if not has_dsl:
            raise ValueError(
                f"--engine onnxruntime: {show_path(config.model)} holds a codec without DSL, "
                f"which has no exported graph; use --engine torch"
            )
    return config.engine


def _export_encoder(codec, folder: Path, weights_sha256: str) -> Path:
    """``folder/encoder.onnx`` of ``codec``, exported unless a graph of these weights is there."""
    path = folder / ENCODER_FILE
    if path.is_file():
        try:
            if read_metadata(path).get("weights_sha256") == weights_sha256:
                return path
        except ValueError:
            pass  # an older or foreign graph: export again
    logger.info(f"exporting the encoder graph to {path} (once per output folder)")
    export_onnx(ExportableEncoder(codec).eval(), path, metadata(codec, "encoder", weights_sha256))
    return path


def _bad_message(bad: List[Bad], total: int) -> str:
    shown = "; ".join(b.reason for b in bad[:SHOWN_BAD_FILES])
    more = len(bad) - SHOWN_BAD_FILES
    return (
        f"{len(bad)} bad audio file{'s' if len(bad) > 1 else ''} among {total} utterances: "
        f"{shown}" + (f"; and {more} more" if more > 0 else "") + ". Fix or remove them, or "
        "pass --skip_bad_audio to leave them out (they are listed in the summary)."
    )


def run_rank(config: TokenizeConfig, group: Group) -> dict:
    """One rank's share of the run (all of it when alone); returns the summary.

    Rank 0 checks the output folder first (a finished run of the same settings
    is a no-op; other settings are refused) and exports the encoder graph when
    one is needed; the others wait for its word.
    """
    out, primary = Path(config.out), group.rank == 0
    work = out / WORK_DIR
    chunks = ChunkStore(work)
    threads = _default_threads(config, group)
    torch.set_num_threads(threads)
    device = resolve_device(config.device, group.local_rank)
    entries = read_corpus(config.data, config.data_root, config.wav_key, config.id_from)
    interface = _load(config, device)
    codec = interface.codec
    mode = config.mode or ("mixed" if codec.has_dsl else "full")
    if mode != "full" and not codec.has_dsl:
        raise ValueError(
            f"--mode {mode}: {show_path(config.model)} holds a codec without DSL; use --mode full"
        )
    engine = _engine(config, codec.has_dsl, device)
    model = Path(config.model)
    listed = (read_manifest(model) or {}).get("codec.ckpt")  # from_hparams checked it
    weights_sha256 = listed or sha256_file(model / "codec.ckpt")
    plan = {
        "format": PLAN_FORMAT,
        "model_sha256": weights_sha256,
        "num_codebooks": codec.num_codebooks,
        "mode": mode,
        "threshold": float(codec.threshold) if mode == "mixed" else None,
        "engine": engine,
        "device_type": device.split(":")[0],
        "utterances": len(entries),
        "entries_sha256": entries_digest(entries),
        "chunk_size": config.chunk_size,
        "batch_seconds": config.batch_seconds,
        "resample": config.resample,
        "skip_bad_audio": config.skip_bad_audio,
        "save_name": config.save_name,
    }

    status = None
    if primary:
        try:
            summary = finished_summary(out, plan)
            if summary is not None:
                remove_work(work)  # what a kill during the last clean-up left
                status = ("finished", summary)
            else:
                check_plan(work, plan)
                chunks.remove_temporaries()
                status = ("go", None)
                if engine == "onnxruntime" and interface.runtime is None:
                    _export_encoder(codec, work / "onnx", weights_sha256)
        except ValueError as err:
            status = ("error", str(err))
    status = group.from_rank0(status)
    if status[0] == "error":
        raise ValueError(status[1])
    if status[0] == "finished":
        if primary:
            logger.info(f"{show_path(out)} is complete ({status[1]['utterances']} utterances)")
        return dict(status[1], nothing_to_do=True)

    if engine == "torch":
        if interface.engine != "torch":
            interface.engine = "torch"
    elif interface.runtime is None:  # the package holds no graphs: the one exported above
        runtime = OnnxCodec(work / "onnx" / ENCODER_FILE, None, threads=threads)
        if runtime.info.get("weights_sha256") != weights_sha256:
            raise ValueError(f"{work / 'onnx' / ENCODER_FILE} belongs to other weights")
        interface.runtime = runtime
        interface.engine = "onnxruntime"

    group.gather(None)  # every rank has loaded its model: the clock starts together
    started = time.perf_counter()  # throughput counts from here: loading and export excluded
    count = math.ceil(len(entries) / config.chunk_size)
    mine = [c for c in range(group.rank, count, group.world) if not chunks.done(c)]
    members = {c: entries[c * config.chunk_size : (c + 1) * config.chunk_size] for c in mine}
    pending = [e for c in mine for e in members[c]]
    rate, hop = codec.sample_rate, codec.hop_length
    probes = _probe_all(pending, rate, hop, config)
    bad = [Bad(e.id, e.path, p.problem) for e, p in zip(pending, probes) if p.problem]
    everyone_bad = sorted(b for rank_bad in group.gather(bad) for b in rank_bad)
    if everyone_bad and not config.skip_bad_audio:
        raise ValueError(_bad_message(everyone_bad, len(entries)))

    samples = {e.id: p.samples for e, p in zip(pending, probes) if not p.problem}
    budget = max(1, round(config.batch_seconds * rate))
    batches: List[List[Entry]] = []
    batch_chunk: List[int] = []
    chunk_of = {e.id: c for c in mine for e in members[c]}
    states = {c: _ChunkState(c, 0, []) for c in mine}
    for b in bad:
        states[chunk_of[b.id]].skipped.append(b)
    for c in mine:
        good = [e for e in members[c] if e.id in samples]
        planned = plan_batches([e.id for e in good], [samples[e.id] for e in good], budget)
        batches += [[good[i] for i in batch] for batch in planned]
        batch_chunk += [c] * len(planned)
        states[c].batches = len(planned)

    encoded_seconds = 0.0
    loop_started = time.perf_counter()
    pending_hours = sum(samples.values()) / rate / 3600
    bar = tqdm(
        total=round(pending_hours, 6),
        unit="h",
        desc="tokenize" + (f" rank 0/{group.world}" if group.world > 1 else ""),
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} h "
        "[{elapsed}<{remaining}{postfix}]",
        disable=(not primary) or (None if config.progress is None else not config.progress),
    )
    logger.info(
        f"rank {group.rank}/{group.world}: {len(mine)} of {count} chunks to encode "
        f"({pending_hours:.3f} h of audio, engine {engine}, mode {mode}, device {device})"
    )
    for c in mine:  # chunks whose every file is bad are written at once
        if states[c].batches == 0:
            _write_chunk(chunks, states[c], group)
    loader = torch.utils.data.DataLoader(
        BatchDataset(batches, rate, MAX_PEAK),
        batch_size=None,
        shuffle=False,
        num_workers=config.loader_workers,
        collate_fn=passthrough,
        worker_init_fn=one_thread,
        multiprocessing_context=_loader_context(config),
    )
    last = time.perf_counter()
    try:
        for index, item in enumerate(loader):
            state = states[batch_chunk[index]]
            if item["bad"] and not config.skip_bad_audio:
                raise ValueError(_bad_message(item["bad"], len(entries)))
            state.skipped += item["bad"]
            if item["wavs"] is not None:
                seconds = _encode_batch(interface, item, mode, hop, rate, state)
                encoded_seconds += seconds
                bar.update(seconds / 3600)
                elapsed = time.perf_counter() - loop_started
                bar.set_postfix_str(f"RTF {elapsed / max(encoded_seconds, 1e-9):.4f}")
            now = time.perf_counter()
            state.seconds_spent += now - last
            last = now
            state.batches -= 1
            if state.batches == 0:
                _write_chunk(chunks, state, group)
    finally:
        bar.close()
    wall = time.perf_counter() - started
    stats = group.gather({"encoded_seconds": encoded_seconds, "wall_seconds": wall})

    result = None
    if primary:
        try:
            result = ("ok", _finish(config, plan, chunks, count, interface, stats, threads, listed))
        except ValueError as err:
            result = ("error", str(err))
    result = group.from_rank0(result)
    if result[0] == "error":
        raise ValueError(result[1])
    return result[1]


@dataclasses.dataclass
class _ChunkState:
    index: int
    batches: int  # batches still to encode
    skipped: List[Bad]
    arrays: dict = dataclasses.field(default_factory=dict)
    audio_seconds: float = 0.0
    light_segments: int = 0
    valid_segments: int = 0
    seconds_spent: float = 0.0


def _loader_context(config: TokenizeConfig):
    """``fork`` for the reading workers where there is one: a ``spawn`` (what a
    ``--workers`` rank inherits) would import torch again in each worker."""
    if config.loader_workers == 0 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    return multiprocessing.get_context("fork")


def _probe_all(entries: List[Entry], rate: int, hop: int, config: TokenizeConfig):
    """The headers of ``entries``, read by the DataLoader's workers."""
    if not entries:
        return []
    loader = torch.utils.data.DataLoader(
        HeaderDataset(entries, rate, hop, config.resample),
        batch_size=64,
        num_workers=config.loader_workers,
        collate_fn=passthrough,
        worker_init_fn=one_thread,
        multiprocessing_context=_loader_context(config),
    )
    return [probe for batch in loader for probe in batch]


def _encode_batch(interface, item: dict, mode: str, hop: int, rate: int, state) -> float:
    """Encodes one batch into ``state``; returns its audio seconds."""
    wavs, samples = item["wavs"], item["samples"]
    longest = wavs.shape[1]
    lengths = None
    if any(s != longest for s in samples):
        lengths = torch.tensor([s / longest for s in samples])
    encoding = interface.encode_with_routing(wavs, lengths, mode=mode)
    tokens = encoding.tokens.cpu().numpy().astype(np.int64)
    for i, (uid, count) in enumerate(zip(item["ids"], samples)):
        state.arrays[uid] = np.ascontiguousarray(tokens[i, : math.ceil(count / hop)])
    # each utterance's own segments, counted from its length (the routing's mask of a
    # padded batch rounds relative lengths, which can add a segment of padding)
    route, unit = encoding.routing.route.cpu(), encoding.routing.segment_frames
    for i, count in enumerate(samples):
        segments = math.ceil(math.ceil(count / hop) / unit)
        state.light_segments += int(route[i, :segments].sum())
        state.valid_segments += segments
    state.audio_seconds += sum(samples) / rate
    return sum(samples) / rate


def _write_chunk(chunks: ChunkStore, state, group: Group):
    """Writes chunk ``state.index``: its utterances in id order, then its record."""
    ids = sorted(state.arrays)
    data, offsets = ark_bytes({uid: state.arrays[uid] for uid in ids})
    record = {
        "chunk": state.index,
        "entries": [[uid, offset, len(state.arrays[uid])] for uid, offset in zip(ids, offsets)],
        "audio_seconds": state.audio_seconds,
        "light_segments": state.light_segments,
        "valid_segments": state.valid_segments,
        "skipped": [list(b) for b in sorted(state.skipped)],
        "process_seconds": state.seconds_spent,
        "rank": group.rank,
        "world": group.world,
    }
    chunks.write(state.index, data, record)
    state.arrays = {}


def _finish(config, plan, chunks, count, interface, stats, threads, listed) -> dict:
    """Rank 0 after every rank is done: merges, writes DASB's files and the summary."""
    out = Path(config.out)
    codec = interface.codec
    dasb_conf = {  # DASB's TokensExtractor.extract_tokens conf (its _skip compares it)
        "sample_rate": codec.sample_rate,
        "save_folder": config.out,
        "dataset_length": plan["utterances"],
    }
    embeddings = codec.get_pretrained_embeddings().detach().cpu().numpy()
    records = merge(out, chunks, count, config.save_name, dasb_conf, embeddings)
    audio_seconds = sum(r["audio_seconds"] for r in records)
    light = sum(r["light_segments"] for r in records)
    valid = sum(r["valid_segments"] for r in records)
    skipped = [
        {"id": uid, "path": path, "reason": reason}
        for r in records
        for uid, path, reason in r["skipped"]
    ]
    encoded = sum(s["encoded_seconds"] for s in stats)
    wall = max(s["wall_seconds"] for s in stats)
    processes = len(stats)
    spent = sum(r["process_seconds"] for r in records)
    summary = {
        "tool": "python -m speechbrain_dsl.tokenize",
        "format": "kaldiio ark/scp of int64 tokens [frames, num_codebooks] per utterance id, "
        "as DASB's TokensExtractor writes them (benchmarks/DASB/utils/tokens.py)",
        "ark": str((out / f"{config.save_name}.ark").absolute()),
        "scp": str((out / f"{config.save_name}.scp").absolute()),
        "model": str(config.model),
        "model_sha256": plan["model_sha256"],
        "model_sha256_from": "SHA256SUMS" if listed else "codec.ckpt (not in a SHA256SUMS)",
        "data": str(config.data),
        "sample_rate": codec.sample_rate,
        "frame_rate": codec.frame_rate,
        "vocab_size": codec.vocab_size,
        "num_codebooks": plan["num_codebooks"],
        "mode": plan["mode"],
        "threshold": plan["threshold"],
        "engine": plan["engine"],
        "device": config.device,
        "utterances": sum(len(r["entries"]) for r in records),
        "frames": sum(frames for r in records for _, _, frames in r["entries"]),
        "audio_hours": audio_seconds / 3600,
        "light_share": light / valid if valid and codec.has_dsl else None,
        "skipped_count": len(skipped),
        "skipped": skipped,
        "this_run": {
            "processes": processes,
            "threads_per_process": threads,
            "encoded_audio_hours": encoded / 3600,
            "wall_seconds": wall,  # checking, reading and encoding (not loading the model)
            "throughput_audio_hours_per_hour": encoded / wall if wall > 0 else None,
            "real_time_factor": wall / encoded if encoded > 0 else None,
            "audio_hours_per_core_hour": (
                encoded / (wall * processes * threads) if wall > 0 else None
            ),
        },
        "all_chunks": {
            "process_seconds": spent,
            "real_time_factor_per_process": spent / audio_seconds if audio_seconds else None,
        },
        "plan": plan,
    }
    write_json(out / SUMMARY_FILE, summary)
    remove_work(chunks.folder.parent)
    return summary
