"""Checkpoints that appear all at once, carry their checksums and RNG states, and
weights that load strictly.

SpeechBrain's ``Checkpointer`` writes a checkpoint's meta file first and its
parameter files after. A process killed in between (SIGKILL, OOM, preemption)
leaves a folder that looks complete, and the next ``recover_if_possible()`` loads
it and fails on a truncated file. :class:`AtomicCheckpointer`:

- writes into a hidden ``.partial-CKPT+...`` folder and renames it when every file
  is on disk (and synced), so resume only ever sees complete checkpoints; the
  leftovers of killed saves are removed when a checkpointer is created and before
  every save, and a save that fails removes its own;
- writes a ``SHA256SUMS`` manifest into every checkpoint (``sha256sum -c`` reads
  it) and checks it before loading;
- saves the random-number states (python, numpy, torch, CUDA; per rank) as the
  ``rng`` recoverable, so a run killed and resumed draws the same numbers as one
  that never stopped (see :class:`RandomState`);
- on recovery, skips a checkpoint that fails its checksum or does not load, with
  a warning naming it, and loads the previous intact one;
- records in a checkpoint's meta which key ``save_and_keep_only`` ranks by
  (``best_by``), so :func:`find_codec_checkpoint` takes the run's best checkpoint
  without being told the run's metric;
- loads every ``torch.nn.Module`` with :func:`load_state_strict`: every key
  present with its shape, no unknown key, all values finite (a switch threshold
  may be +/-inf, never NaN);
- reports a full disk as ``OSError(ENOSPC)`` naming the file being written.

:func:`load_state_strict` is also what :func:`load_codec`, the packager and
``DSLCodecInterface.from_hparams`` use: each failure is a ``ValueError`` naming the
file and what is wrong with it.

The manifest (:mod:`speechbrain_dsl.inference.manifest`) and what loading a
model needs (:mod:`speechbrain_dsl.inference.loading`: strict weights, reading
checkpoint folders, :func:`find_codec_checkpoint`, :func:`load_codec`) live in
``inference``, which never imports ``training``; they are imported here under
their old names, so ``speechbrain_dsl.training.checkpoints.<name>`` keeps working.

The random-number states (:mod:`speechbrain_dsl.training.rng_state`) and
:func:`update_checkpoint` (:mod:`speechbrain_dsl.training.checkpoint_update`) have
modules of their own, whose public names are importable from here too; so has the
syncing of files and folders that both writers use
(:mod:`speechbrain_dsl.training.durable_writes`).
"""

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import List, Optional

import torch
from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    DEFAULT_SAVE_HOOKS,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
    get_default_hook,
    torch_recovery,
)
from speechbrain.utils.distributed import (
    ddp_barrier,
    ddp_broadcast,
    if_main_process,
)

from speechbrain_dsl.inference.loading import (
    AVERAGE_FILE,
    BEST_BY,
    INFINITE_ALLOWED,
    averaged_state,
    check_state_dict,
    find_codec_checkpoint,
    has_bad_values,
    list_checkpoints,
    load_codec,
    load_state_strict,
    load_weights,
    warn_once,
)
from speechbrain_dsl.inference.manifest import (
    MANIFEST,
    CheckpointError,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from speechbrain_dsl.training.checkpoint_update import update_checkpoint
from speechbrain_dsl.training.durable_writes import sync_folder
from speechbrain_dsl.training.rng_state import RandomState, capture_rng_state, restore_rng_state

__all__ = [
    # defined here
    "LOW_SPACE_BYTES",
    "PARTIAL_PREFIX",
    "AtomicCheckpointer",
    # from rng_state and checkpoint_update (their old home was here)
    "RandomState",
    "capture_rng_state",
    "restore_rng_state",
    "update_checkpoint",
    # from speechbrain_dsl.inference (their old home was here)
    "AVERAGE_FILE",
    "BEST_BY",
    "INFINITE_ALLOWED",
    "MANIFEST",
    "CheckpointError",
    "averaged_state",
    "check_state_dict",
    "find_codec_checkpoint",
    "has_bad_values",
    "load_codec",
    "load_state_strict",
    "load_weights",
    "read_manifest",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
]

PARTIAL_PREFIX = ".partial-"
LOW_SPACE_BYTES = 16 * 2**20  # a failed write with less than this free is a full disk
logger = logging.getLogger(__name__)


def _warn_once(key, message):
    warn_once(key, message, logger)


def _free_bytes(path: Path) -> Optional[int]:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _disk_full_error(err: BaseException, path: Path) -> Optional[OSError]:
    """An ``OSError(ENOSPC)`` naming ``path`` if ``err`` is a write that ran out of space."""
    full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(err)
    if not full and isinstance(err, (OSError, RuntimeError)):
        if "No space left" in text or "Disk quota" in text:
            full = True
        elif any(
            s in text
            for s in (
                "iostream error",
                "file write failed",
                "PytorchStreamWriter",
                "unexpected pos",
            )
        ):
            free = _free_bytes(path)
            full = free is not None and free < LOW_SPACE_BYTES
    if not full:
        return None
    free = _free_bytes(path)
    where = f"{free / 2**20:.1f} MiB free there" if free is not None else "free space unknown"
    first_line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return OSError(
        errno.ENOSPC,
        f"No space left on device while saving checkpoint file {path} "
        f"({where}; the write failed with: {first_line}). Free some "
        f"space or choose another save folder",
        str(path),
    )


class AtomicCheckpointer(Checkpointer):
    """Drop-in ``Checkpointer``: all-or-nothing, checksummed, RNG-carrying checkpoints.

    Parameters are those of SpeechBrain's ``Checkpointer``, plus:

    save_rng_state : bool
        Add the :class:`RandomState` recoverable ``rng`` (default True; a
        checkpoint without it, from an older version, still loads).
    clear_partial : bool
        Remove ``.partial-*`` leftovers of killed saves now (default True; set
        False to only read a folder another process may be saving into).

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> ckpt = AtomicCheckpointer(folder, {"layer": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint()
    >>> saved.path.name.startswith("CKPT+"), sorted(p.name for p in saved.path.iterdir())
    (True, ['CKPT.yaml', 'SHA256SUMS', 'layer.ckpt', 'rng.ckpt'])
    >>> ckpt.recover_if_possible().path == saved.path
    True
    """

    def __init__(
        self,
        checkpoints_dir,
        recoverables=None,
        custom_load_hooks=None,
        custom_save_hooks=None,
        allow_partial_load=False,
        save_rng_state=True,
        clear_partial=True,
    ):
        super().__init__(
            checkpoints_dir, recoverables, custom_load_hooks, custom_save_hooks, allow_partial_load
        )
        if clear_partial and if_main_process():
            self.remove_partial_checkpoints()
        if save_rng_state:
            self.add_recoverable("rng", RandomState(), optional_load=True)

    @property
    def rng(self) -> Optional[RandomState]:
        """The ``rng`` recoverable, if any."""
        return self.recoverables.get("rng")

    # saving

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Saves like ``Checkpointer.save_checkpoint``, all at once (see the module doc).

        The files go to a ``.partial-`` folder, get a ``SHA256SUMS`` manifest, are
        synced and the folder is renamed. A failed save removes its folder; a
        full disk raises ``OSError(ENOSPC)`` naming the file.
        """
        meta = {} if meta is None else meta
        partial = None
        if if_main_process():
            self.remove_partial_checkpoints()
            final = (
                self._new_checkpoint_dirpath()
                if name is None
                else self._custom_checkpoint_dirpath(name)
            )
            partial = final.with_name(PARTIAL_PREFIX + final.name)
        partial = ddp_broadcast(partial, src=0)
        current = partial
        try:
            if if_main_process():
                os.makedirs(partial)
                current = partial / METAFNAME
                saved_meta = self._save_checkpoint_metafile(current, meta, end_of_epoch)
            ddp_barrier()  # the folder exists for every process
            paramfiles = {}
            for key, obj in self.recoverables.items():
                current = paramfiles[key] = partial / f"{key}{PARAMFILE_EXT}"
                self._save_one(key, obj, current)
            ddp_barrier()  # every process has written its files
            if not if_main_process():
                return None
            current = partial / MANIFEST
            write_manifest(partial)
            sync_folder(partial)
            final = partial.with_name(partial.name[len(PARTIAL_PREFIX) :])
            current = final
            partial.rename(final)
            sync_folder(final.parent)
        except BaseException as err:
            if if_main_process() and partial is not None:
                shutil.rmtree(partial, ignore_errors=True)
            full = _disk_full_error(err, current)
            if full is not None:
                raise full from err
            if isinstance(err, Exception) and hasattr(err, "add_note"):
                err.add_note(f"while saving checkpoint file {current}")
            raise
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {kind} checkpoint in {final}")
        return Checkpoint(final, saved_meta, {k: final / p.name for k, p in paramfiles.items()})

    def save_and_keep_only(
        self,
        meta=None,
        end_of_epoch=True,
        name=None,
        num_to_keep=1,
        keep_recent=True,
        importance_keys=(),
        max_keys=(),
        min_keys=(),
        ckpt_predicate=None,
        verbosity=logging.INFO,
    ):
        """Saves, then deletes the least important checkpoints, as ``Checkpointer`` does.

        When the checkpoints are ranked by exactly one key of ``min_keys`` or
        ``max_keys`` (no ``importance_keys``) and ``meta`` holds it, the meta
        also records it under ``best_by`` (``{"min_key": key}`` or
        ``{"max_key": key}``): a reader takes the best checkpoint the way this
        run keeps it (:func:`find_codec_checkpoint`) without knowing the run's
        metric.

        Example
        -------
        >>> import tempfile, torch
        >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"layer": torch.nn.Linear(2, 2)})
        >>> ckpt.save_and_keep_only(meta={"loss": 1.0}, min_keys=["loss"])
        >>> ckpt.find_checkpoint().meta[BEST_BY]
        {'min_key': 'loss'}
        """
        meta = dict(meta or {})
        ranking = [("min_key", k) for k in min_keys] + [("max_key", k) for k in max_keys]
        if len(ranking) == 1 and not importance_keys and ranking[0][1] in meta:
            meta[BEST_BY] = dict(ranking)
        # copies: SpeechBrain appends to importance_keys (a shared default list)
        super().save_and_keep_only(
            meta=meta,
            end_of_epoch=end_of_epoch,
            name=name,
            num_to_keep=num_to_keep,
            keep_recent=keep_recent,
            importance_keys=list(importance_keys),
            max_keys=list(max_keys),
            min_keys=list(min_keys),
            ckpt_predicate=ckpt_predicate,
            verbosity=verbosity,
        )

    def _save_one(self, key, obj, path):
        if key in self.custom_save_hooks:
            self.custom_save_hooks[key](obj, path)
            return
        if isinstance(obj, RandomState):
            obj.save(path)  # on every rank
            return
        hook = get_default_hook(obj, DEFAULT_SAVE_HOOKS)
        if hook is None:
            raise RuntimeError(
                f"Don't know how to save {type(obj)} ({key}). Register a default "
                f"hook or add a custom hook for this object."
            )
        hook(obj, path)

    def remove_partial_checkpoints(self) -> List[Path]:
        """Deletes folders left by saves that were killed before they finished."""
        removed = []
        if self.checkpoints_dir.is_dir():
            for path in self.checkpoints_dir.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        if removed:
            logger.info(
                f"Removed {len(removed)} unfinished checkpoint folder(s) in {self.checkpoints_dir}"
            )
        return removed

    # listing

    def list_checkpoints(self):
        """The checkpoints whose ``CKPT.yaml`` parses; others are named in a warning."""
        return list_checkpoints(self.checkpoints_dir)

    # loading

    def recover_if_possible(
        self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None
    ):
        """Loads the best checkpoint that is intact; returns it (None if there is none).

        Candidates are taken in ``find_checkpoints`` order (the latest first by
        default); one that fails its checksum or does not load is skipped with
        a warning naming it. If none loads, a ``CheckpointError`` lists them.
        """
        candidates = self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate)
        if not candidates:
            logger.info("Would load a checkpoint here, but none found yet.")
            return None
        failures = []
        for candidate in candidates:
            try:
                self.load_checkpoint(candidate)
            except CheckpointError as err:
                failures.append(str(err))
                logger.warning(f"skipping checkpoint {candidate.path}: {err}")
                continue
            if failures:
                logger.warning(
                    f"resumed from the older intact checkpoint {candidate.path} "
                    f"after skipping {len(failures)} broken one(s)"
                )
            return candidate
        raise CheckpointError(
            f"no intact checkpoint in {self.checkpoints_dir}: " + " | ".join(failures)
        )

    def load_checkpoint(self, checkpoint):
        """Checks the manifest and loads every recoverable (``CheckpointError`` if broken)."""
        self._call_load_hooks(checkpoint)

    def _call_load_hooks(self, checkpoint):
        path = checkpoint.path
        logger.info(f"Loading a checkpoint from {path}")
        if not verify_manifest(path):
            _warn_once(
                ("no manifest", str(path)),
                f"checkpoint {path} has no {MANIFEST} (written by an older version): "
                f"loaded without an integrity check",
            )
        end_of_epoch = checkpoint.meta.get("end-of-epoch", True)
        for key, obj in self.recoverables.items():
            loadpath = checkpoint.paramfiles.get(key)
            if loadpath is None:
                if (
                    self.allow_partial_load
                    or "dataloader" in key
                    or self.optional_recoverables.get(key)
                ):
                    logger.debug(f"checkpoint {path} has no {key}{PARAMFILE_EXT}; skipped")
                    continue
                raise CheckpointError(f"checkpoint {path} lacks {key}{PARAMFILE_EXT}")
            try:
                self._load_one(key, obj, loadpath, end_of_epoch)
            except CheckpointError:
                raise
            except Exception as err:  # any loader's failure means: this checkpoint is broken
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise CheckpointError(
                    f"cannot load {loadpath}: {type(err).__name__}"
                    + (f": {first}" if first else "")
                ) from err
        rng = self.rng
        if not end_of_epoch and rng is not None and rng.last_loaded is not None:
            for obj in self.recoverables.values():  # see RandomState
                if getattr(obj, "_speechbrain_recovery_skip_to", None) is not None:
                    obj._speechbrain_dsl_pending_rng = rng.last_loaded
        if rng is not None:
            rng.last_loaded = None

    def _load_one(self, key, obj, path, end_of_epoch):
        if key in self.custom_load_hooks:
            self.custom_load_hooks[key](obj, path, end_of_epoch)
        elif isinstance(obj, RandomState):
            obj.load(path, end_of_epoch)
        else:
            hook = get_default_hook(obj, DEFAULT_LOAD_HOOKS)
            if hook is torch_recovery and isinstance(obj, torch.nn.Module):
                load_state_strict(obj, path, verify=False)  # the manifest was checked
            elif hook is not None:
                hook(obj, path, end_of_epoch)
            else:
                raise RuntimeError(
                    f"Don't know how to load {type(obj)} ({key}). Register a "
                    f"default hook or add a custom hook for this object."
                )
