"""A SpeechBrain Checkpointer whose checkpoints appear all at once.

SpeechBrain's ``Checkpointer`` writes a checkpoint's meta file first and its
parameter files after. A process killed in between (SIGKILL, OOM, preemption)
leaves a folder that looks complete, and the next ``recover_if_possible()`` loads
it and fails on a truncated file. :class:`AtomicCheckpointer` writes into a hidden
``.partial-CKPT+...`` folder and renames it when every file is on disk, so resume
only ever sees complete checkpoints; leftovers of killed saves are removed.
"""

import logging
import pickle
import shutil
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

PARTIAL_PREFIX = ".partial-"
logger = logging.getLogger(__name__)


class AtomicCheckpointer(Checkpointer):
    """Drop-in ``Checkpointer`` with all-or-nothing checkpoints (same arguments).

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> ckpt = AtomicCheckpointer(folder, {"layer": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint()
    >>> saved.path.name.startswith("CKPT+"), saved.paramfiles["layer"].exists()
    (True, True)
    """

    def _new_checkpoint_dirpath(self):
        final = super()._new_checkpoint_dirpath()
        return final.with_name(PARTIAL_PREFIX + final.name)

    def _custom_checkpoint_dirpath(self, name):
        final = super()._custom_checkpoint_dirpath(name)
        return final.with_name(PARTIAL_PREFIX + final.name)

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=20):
        """Saves like ``Checkpointer.save_checkpoint``, then publishes the folder."""
        if if_main_process():
            self.remove_partial_checkpoints()
        partial = super().save_checkpoint(meta, end_of_epoch, name, logging.DEBUG)
        ddp_barrier()  # every process has written its files
        if partial is None:  # not the main process
            return None
        final = partial.path.with_name(partial.path.name[len(PARTIAL_PREFIX) :])
        partial.path.rename(final)
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {kind} checkpoint in {final}")
        paramfiles = {k: final / p.name for k, p in partial.paramfiles.items()}
        return Checkpoint(final, partial.meta, paramfiles)

    def remove_partial_checkpoints(self):
        """Deletes folders left by saves that were killed before they finished."""
        if self.checkpoints_dir.is_dir():
            for path in self.checkpoints_dir.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(path, ignore_errors=True)


def find_codec_checkpoint(path, min_key="mel_full"):
    """The ``codec.ckpt`` file behind ``path``.

    ``path`` may be a recipe save folder (the checkpoint with the lowest
    ``min_key`` is taken, else the latest), one ``CKPT+...`` folder, or the
    ``codec.ckpt`` file itself.
    """
    path = Path(path)
    if path.is_file():
        return path
    if (path / "codec.ckpt").is_file():
        return path / "codec.ckpt"
    if not path.is_dir():
        raise ValueError(f"codec checkpoint not found: {path}")
    checkpointer = Checkpointer(path)
    found = checkpointer.find_checkpoint(min_key=min_key) if any(
        min_key in c.meta for c in checkpointer.list_checkpoints()
    ) else checkpointer.find_checkpoint()
    if found is None or not (found.path / "codec.ckpt").is_file():
        raise ValueError(f"{path} holds no checkpoint with a codec.ckpt file")
    return found.path / "codec.ckpt"


def load_codec(model_yaml, checkpoint, overrides=None):
    """Builds the codec of ``model_yaml`` and loads weights (and threshold) from ``checkpoint``.

    Weights are read with ``torch.load(weights_only=True)``: a checkpoint cannot run
    code. A truncated or foreign file raises ValueError naming it.
    """
    from hyperpyyaml import load_hyperpyyaml

    model_yaml = Path(model_yaml)
    if not model_yaml.is_file():
        raise ValueError(f"model YAML not found: {model_yaml}")
    with open(model_yaml) as f:
        codec = load_hyperpyyaml(f, overrides or {})["codec"]
    ckpt = find_codec_checkpoint(checkpoint)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        codec.load_state_dict(state)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"cannot load codec weights from {ckpt}: {err}") from None
    return codec.eval()
