"""Random-number states saved with checkpoints: a resumed run draws the numbers of an unbroken one.

:func:`capture_rng_state` and :func:`restore_rng_state` cover python's ``random``,
numpy's global RNG and torch's (CPU and CUDA); :class:`RandomState` is the
``rng`` recoverable that :class:`~speechbrain_dsl.training.checkpoints.AtomicCheckpointer`
saves per rank. Importing this module also makes a DataLoader iterator set the
states left pending by an intra-epoch resume, right after it is created (see
:class:`RandomState`).
"""

import logging
import os
import random
from pathlib import Path
from typing import Union

import numpy as np
import speechbrain.dataio.dataloader  # noqa: F401  (patches the DataLoader iterator first)
import torch
from speechbrain.utils.distributed import get_rank
from torch.utils.data.dataloader import _BaseDataLoaderIter

from speechbrain_dsl.inference.loading import load_weights
from speechbrain_dsl.inference.manifest import CheckpointError

__all__ = ["RandomState", "capture_rng_state", "restore_rng_state"]
PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


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
