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
"""

import errno
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import speechbrain.dataio.dataloader  # noqa: F401  (patches the DataLoader iterator first)
import torch
import yaml
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
    get_rank,
    if_main_process,
)
from torch.utils.data.dataloader import _BaseDataLoaderIter

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
    manifest_text,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)

__all__ = [
    # defined here
    "LOW_SPACE_BYTES",
    "PARTIAL_PREFIX",
    "AtomicCheckpointer",
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
PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


def _warn_once(key, message):
    warn_once(key, message, logger)


# --- random-number states ----------------------------------------------------------


def capture_rng_state() -> dict:
    """The states of python's ``random``, numpy's global and torch's (CPU, CUDA) RNGs."""
    key, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, source: PathLike = "the RNG state") -> None:
    """Sets the RNGs to a :func:`capture_rng_state` result (``ValueError`` if malformed)."""
    try:
        version, internal, gauss = state["python"]
        numpy = state["numpy"]
        numpy_state = (
            "MT19937",
            numpy["key"].numpy().astype(np.uint32),
            int(numpy["pos"]),
            int(numpy["has_gauss"]),
            float(numpy["gauss"]),
        )
        python_state = (int(version), tuple(int(x) for x in internal), gauss)
        torch_state = state["torch"]
        if not (torch.is_tensor(torch_state) and torch_state.dtype == torch.uint8):
            raise TypeError("torch state is not a byte tensor")
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise CheckpointError(f"{source} is not a valid RNG state ({err})") from None
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning(
                f"{source}: saved with {len(cuda)} CUDA devices, now "
                f"{torch.cuda.device_count()}; CUDA RNG states not restored"
            )


class RandomState:
    """The ``rng`` recoverable: python, numpy, torch and CUDA RNG states, per rank.

    :class:`AtomicCheckpointer` adds it by itself (``save_rng_state=True``). Rank
    0 writes ``rng.ckpt``, rank ``r`` ``rng.rank<r>.state`` next to it.
    Loading sets the RNGs at once. For an intra-epoch checkpoint, a SpeechBrain
    ``SaveableDataLoader`` that resumes mid-epoch draws a random seed when its
    iterator is created (a draw the uninterrupted run made at the start of the
    epoch), so the states are set again right after that, before the first
    batch is read: a run resumed from any checkpoint then draws exactly the
    numbers of the uninterrupted run (``num_workers=0``; a
    ``ReproducibleRandomSampler``, SpeechBrain's default for ``shuffle=True``,
    keeps the batch order, which depends on the epoch only).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rng.ckpt"
    >>> rng = RandomState()
    >>> rng.save(path)
    >>> first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    >>> rng.load(path, end_of_epoch=True)
    >>> (random.random(), float(np.random.rand()), float(torch.rand(1))) == first
    True
    """

    def __init__(self):
        self.last_loaded = None

    @staticmethod
    def _rank_path(path: Path) -> Path:
        rank = get_rank() or 0
        return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}.state")

    def save(self, path: PathLike) -> None:
        """Writes this process's RNG states (called on every rank)."""
        torch.save(capture_rng_state(), self._rank_path(Path(path)))

    def load(self, path: PathLike, end_of_epoch: bool = True) -> None:
        """Sets the RNGs to the states saved in ``path`` (this rank's file)."""
        path = Path(path)
        own = self._rank_path(path)
        if not own.is_file():
            logger.warning(
                f"{own} not found (the number of processes changed?): "
                f"using the RNG states of rank 0"
            )
            own = path
        state = load_weights(own)
        if not isinstance(state, dict):
            raise CheckpointError(f"{own} is not a valid RNG state (a {type(state).__name__})")
        restore_rng_state(state, own)
        self.last_loaded = (state, own)


_ITERATOR_INIT = "_speechbrain_dsl_rng_wrapped"
if not getattr(_BaseDataLoaderIter.__init__, _ITERATOR_INIT, False):
    _inner_iterator_init = _BaseDataLoaderIter.__init__

    def _iterator_init_then_restore_rng(self, loader, *args, **kwargs):
        """Creates the iterator, then sets RNG states left pending by a resume."""
        _inner_iterator_init(self, loader, *args, **kwargs)
        pending = loader.__dict__.pop("_speechbrain_dsl_pending_rng", None)
        if pending is not None:
            restore_rng_state(*pending)

    setattr(_iterator_init_then_restore_rng, _ITERATOR_INIT, True)
    _BaseDataLoaderIter.__init__ = _iterator_init_then_restore_rng


# --- the checkpointer --------------------------------------------------------------


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
            _sync_folder(partial)
            final = partial.with_name(partial.name[len(PARTIAL_PREFIX) :])
            current = final
            partial.rename(final)
            _sync_folder(final.parent)
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


def update_checkpoint(folder: PathLike, meta: Optional[Dict] = None, tensors=None) -> Path:
    """Changes a saved checkpoint in place: entries of its meta and of its state dicts.

    For a result that belongs to the checkpoint but is made after it was saved
    (a threshold calibrated on ViSQOL before testing). Every new file (the
    changed ``<recoverable>.ckpt``, ``CKPT.yaml``, ``SHA256SUMS``) is written and
    synced under a temporary name (with the mode of the file it replaces) first,
    then all are renamed into place at once, the manifest last: a kill leaves the
    old checkpoint or the new one, and one inside the window of the renames leaves
    a checkpoint that fails its checksum check at load, naming the file.

    Arguments
    ---------
    folder : path
        A ``CKPT+...`` folder.
    meta : dict, optional
        Entries added to (or replacing those of) its ``CKPT.yaml``.
    tensors : dict, optional
        ``{recoverable: {state key: tensor}}``; each key must exist already.

    Example
    -------
    >>> import tempfile
    >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"layer": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint(meta={"loss": 1.0})
    >>> _ = update_checkpoint(saved.path, {"note": "x"}, {"layer": {"bias": torch.ones(2)}})
    >>> torch.load(saved.path / "layer.ckpt")["bias"].tolist(), verify_manifest(saved.path)
    ([1.0, 1.0], True)
    >>> found = ckpt.find_checkpoint()
    >>> found.meta["note"], found.meta["loss"], found.meta["unixtime"] == saved.meta["unixtime"]
    ('x', 1.0, True)
    """
    folder = Path(folder)
    if not verify_manifest(folder):
        raise CheckpointError(f"{folder}: no {MANIFEST} to keep up to date; not a checkpoint?")
    staged = {}  # final name -> temporary path
    manifest = None
    try:
        for name, changes in (tensors or {}).items():
            path = folder / f"{name}{PARAMFILE_EXT}"
            state = torch.load(path, map_location="cpu", weights_only=True)
            unknown = sorted(set(changes) - set(state))
            if unknown:
                raise KeyError(f"{path} has no entries {', '.join(unknown)}")
            state.update({key: torch.as_tensor(value) for key, value in changes.items()})
            staged[path.name] = _stage(
                folder, path.name, lambda tmp, state=state: torch.save(state, tmp)
            )
        if meta:
            old = yaml.safe_load((folder / METAFNAME).read_text(encoding="utf-8"))
            text = "# yamllint disable\n" + yaml.dump({**old, **meta})
            staged[METAFNAME] = _stage(
                folder, METAFNAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8")
            )
        sums = read_manifest(folder)
        for name, tmp in staged.items():
            sums[name] = sha256_file(tmp)
        sums_text = manifest_text(sums)
        manifest = _stage(folder, MANIFEST, lambda tmp: Path(tmp).write_text(sums_text))
        for name, tmp in staged.items():
            os.replace(tmp, folder / name)
        os.replace(manifest, folder / MANIFEST)
        _sync_folder(folder)
    finally:
        for tmp in [*staged.values(), manifest]:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
    return folder


def _stage(folder: Path, name: str, write) -> str:
    """A synced temporary file ``folder/.name.*`` that ``write(path)`` filled, with
    the mode of ``folder/name`` (mkstemp makes 0600 files)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    os.close(fd)
    try:
        shutil.copymode(folder / name, tmp)
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def _sync_folder(folder: Path) -> None:
    """fsyncs the files of ``folder`` and the folder itself (best effort on odd file systems)."""
    paths = [p for p in folder.iterdir() if p.is_file()] + [folder]
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
                raise
        finally:
            os.close(fd)
