"""One rank's share of a tokenize run: check the output and audio, encode, write the chunks.

:func:`run_rank` is all of a run for a lone process, and one rank's part under
``torchrun`` or ``--workers`` (see :mod:`speechbrain_dsl.tokenize.runner`). Rank 0
checks the output folder against the run's plan (recorded in ``plan.json``); each
rank takes its chunks, checks the headers of their audio, encodes batch by batch
(audio read in DataLoader workers) and writes each chunk when its last batch is
done; rank 0 then finishes the run (:func:`~speechbrain_dsl.tokenize.summary.finish_run`).
"""

import dataclasses
import logging
import math
import multiprocessing
import time
from pathlib import Path
from typing import List

import numpy as np
import torch
from tqdm.auto import tqdm

from speechbrain_dsl.data.audio import SHOWN_BAD_FILES, show_path
from speechbrain_dsl.inference.manifest import read_manifest, sha256_file
from speechbrain_dsl.inference.runtime import ENCODER_FILE, OnnxCodec
from speechbrain_dsl.lobes.codec import MAX_PEAK
from speechbrain_dsl.tokenize.codec_setup import (
    choose_engine,
    default_threads,
    export_encoder,
    load_interface,
    resolve_device,
)
from speechbrain_dsl.tokenize.config import TokenizeConfig
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
from speechbrain_dsl.tokenize.process_group import Group
from speechbrain_dsl.tokenize.store import (
    WORK_DIR,
    ChunkStore,
    ark_bytes,
    check_plan,
    entries_digest,
    finished_summary,
    remove_work,
)
from speechbrain_dsl.tokenize.summary import finish_run

__all__ = ["PLAN_FORMAT", "run_rank"]
logger = logging.getLogger(__name__)
PLAN_FORMAT = 1  # bump when chunks written by an older version must not be reused


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
    threads = default_threads(config, group)
    torch.set_num_threads(threads)
    device = resolve_device(config.device, group.local_rank)
    entries = read_corpus(config.data, config.data_root, config.wav_key, config.id_from)
    interface = load_interface(config, device)
    codec = interface.codec
    mode = config.mode or ("mixed" if codec.has_dsl else "full")
    if mode != "full" and not codec.has_dsl:
        raise ValueError(
            f"--mode {mode}: {show_path(config.model)} holds a codec without DSL; use --mode full"
        )
    engine = choose_engine(config, codec.has_dsl, device)
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
                    export_encoder(codec, work / "onnx", weights_sha256)
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
            result = (
                "ok",
                finish_run(config, plan, chunks, count, interface, stats, threads, listed),
            )
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
