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

Modules
-------
This module starts the ranks (:func:`tokenize_corpus`). The settings are
:mod:`~speechbrain_dsl.tokenize.config`'s, the ranks and their collectives
:mod:`~speechbrain_dsl.tokenize.process_group`'s; a rank loads its codec with
:mod:`~speechbrain_dsl.tokenize.codec_setup`, does its share in
:mod:`~speechbrain_dsl.tokenize.rank` and rank 0 ends the run with
:mod:`~speechbrain_dsl.tokenize.summary`. Their public names are importable from
here too.
"""

import logging
import multiprocessing
import os
import queue
import tempfile
import traceback
import uuid
from pathlib import Path

from speechbrain_dsl.inference.streaming import ENGINES
from speechbrain_dsl.nnet.routing import ENGINE_MODES as MODES  # oracle runs both tails
from speechbrain_dsl.tokenize.codec_setup import resolve_device
from speechbrain_dsl.tokenize.config import TokenizeConfig
from speechbrain_dsl.tokenize.process_group import GROUP_TIMEOUT, Group
from speechbrain_dsl.tokenize.rank import PLAN_FORMAT, run_rank

__all__ = [
    "tokenize_corpus",
    # from config, process_group, codec_setup and rank
    "ENGINES",
    "GROUP_TIMEOUT",
    "MODES",
    "PLAN_FORMAT",
    "Group",
    "TokenizeConfig",
    "resolve_device",
    "run_rank",
]


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
