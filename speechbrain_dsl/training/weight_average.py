"""An exponential moving average of a model's weights, for evaluation and packaging.

At a learning rate that still trains fast (1e-3, Adam betas 0.5/0.9), consecutive
checkpoints of the campaign codec scatter: 500 steps apart, its output level
moved by up to 4 dB and its mel distance by 3%; the mean of three such
checkpoints scored a 5% lower mel distance than any of them. Training keeps the
live weights; validation, test, the checkpoint ranking and the packaged model use
the average. The update is PyTorch's own EMA rule
(``torch.optim.swa_utils.get_ema_multi_avg_fn``, one fused ``lerp`` over all
tensors); only parameters are averaged: buffers (the RVQ codebooks, which keep
their own EMA, and the switch threshold) are the live ones.

A recipe registers it as the checkpoint recoverable :data:`RECOVERABLE`, so a
checkpoint folder holds ``codec.ckpt`` (live weights, to resume training) and
:data:`AVERAGE_FILE` (the average). :func:`averaged_state` merges the two; the
packager and every loader of a checkpoint folder read weights through it. The
read side (the file names, :func:`read_average`, :func:`averaged_state`) lives in
:mod:`speechbrain_dsl.inference.loading`, which loads models without this
module; it is imported here under the same names.
"""

from contextlib import contextmanager

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch.optim.swa_utils import get_ema_multi_avg_fn

from speechbrain_dsl.inference.loading import (
    AVERAGE_FILE,
    RECOVERABLE,
    averaged_state,
    read_average,
)

__all__ = ["AVERAGE_FILE", "RECOVERABLE", "WeightAverage", "averaged_state", "read_average"]


@register_checkpoint_hooks
class WeightAverage:
    """Exponential moving average of ``module``'s parameters.

    Arguments
    ---------
    module : torch.nn.Module
        The model being trained (its parameters are read, never written, except
        inside :meth:`applied`).
    decay : float
        Weight of the old average per update, in (0, 1): 0.999 averages over
        ~1,000 steps.

    The first :meth:`update` copies the live weights (also after resuming from a
    checkpoint made before averaging existed); until then :meth:`applied` leaves
    the live weights in place.

    Example
    -------
    >>> layer = torch.nn.Linear(1, 1, bias=False)
    >>> average = WeightAverage(layer, decay=0.5)
    >>> for value in (1.0, 3.0):
    ...     _ = layer.weight.data.fill_(value)
    ...     average.update()
    >>> with average.applied():
    ...     layer.weight.item()
    2.0
    >>> layer.weight.item()  # live weights back
    3.0
    """

    def __init__(self, module: torch.nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay: expected a number in (0, 1), got {decay!r}")
        self.module, self.decay = module, float(decay)
        self.steps = 0
        self.average = {n: p.detach().clone() for n, p in module.named_parameters()}
        self._ema = get_ema_multi_avg_fn(self.decay)
        self._applied = False

    @torch.no_grad()
    def update(self):
        """Moves the average towards the live weights (call after each optimizer step)."""
        if self._applied:
            raise RuntimeError(
                "WeightAverage.update: the average is applied; leave applied() first"
            )
        names, live = zip(*((n, p.detach()) for n, p in self.module.named_parameters()))
        average = [self.average[n] for n in names]
        if self.steps == 0:
            for mean, value in zip(average, live):
                mean.copy_(value)
        else:
            self._ema(average, list(live), self.steps)
        self.steps += 1

    @contextmanager
    def applied(self):
        """Inside the block the module holds the averaged weights (swapped, not copied)."""
        if self.steps == 0 or self._applied:
            yield self.module
            return
        params = dict(self.module.named_parameters())
        self._swap(params)
        self._applied = True
        try:
            yield self.module
        finally:
            self._swap(params)
            self._applied = False

    def _swap(self, params):
        for name, param in params.items():
            param.data, self.average[name] = self.average[name], param.data

    @mark_as_saver
    def _save(self, path):
        if self._applied:
            raise RuntimeError("WeightAverage: saving while the average is applied")
        state = {"steps": self.steps, "decay": self.decay, "weights": self.average}
        torch.save(state, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=None):
        state = read_average(path)
        unknown = sorted(set(state["weights"]) ^ set(self.average))
        if unknown:
            raise ValueError(f"{path}: the average does not fit this model ({unknown[:3]} ...)")
        with torch.no_grad():
            for name, value in state["weights"].items():
                self.average[name].copy_(value)
        self.steps = int(state["steps"])
