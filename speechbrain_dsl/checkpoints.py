"""A SpeechBrain Checkpointer whose checkpoints appear all at once.

SpeechBrain's ``Checkpointer`` writes a checkpoint's meta file first and its
parameter files after. A process killed in between (SIGKILL, OOM, preemption)
leaves a folder that looks complete, and the next ``recover_if_possible()`` loads
it and fails on a truncated file. :class:`AtomicCheckpointer` writes into a hidden
``.partial-CKPT+...`` folder and renames it when every file is on disk, so resume
only ever sees complete checkpoints; leftovers of killed saves are removed.
"""

import shutil

from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

PARTIAL_PREFIX = ".partial-"


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
        partial = super().save_checkpoint(meta, end_of_epoch, name, verbosity)
        ddp_barrier()  # every process has written its files
        if partial is None:  # not the main process
            return None
        final = partial.path.with_name(partial.path.name[len(PARTIAL_PREFIX) :])
        partial.path.rename(final)
        paramfiles = {k: final / p.name for k, p in partial.paramfiles.items()}
        return Checkpoint(final, partial.meta, paramfiles)

    def remove_partial_checkpoints(self):
        """Deletes folders left by saves that were killed before they finished."""
        if self.checkpoints_dir.is_dir():
            for path in self.checkpoints_dir.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(path, ignore_errors=True)
