"""The DSL loss (Eq. 5): compression, switch regression and light-tail distillation."""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.nnet.dsl_output import DSLOutput
from speechbrain_dsl.nnet.segments import length_mask

__all__ = ["DSLLoss"]


class DSLLoss(nn.Module):
    """The DSL loss, Eq. 5: ``alpha * L_compression + beta * (L_switch + L_light)``.

    - ``L_compression`` (Eq. 2): mean absolute mask output over valid steps.
    - ``L_switch`` (Eq. 3): ``switch_criterion(predicted, stopgrad(distance))``, or
      against ``switch_target`` where one is given (the gap between the two tails'
      decodes, :class:`~speechbrain_dsl.nnet.decode_gap.DecodeGap`).
    - ``L_light`` (Eq. 4): mean distance(light, stopgrad(full)) over valid segments.

    Arguments
    ---------
    alpha : float
        Compression weight.
    beta : float
        Weight of the switch and lightweight-tail terms (they share an origin).
    switch_criterion : str
        ``l1`` or ``mse`` between predicted and true distance.

    Example
    -------
    >>> from speechbrain_dsl.nnet.dsl import DSLOutput
    >>> out = DSLOutput(features=None, masked=torch.ones(1, 2, 4),
    ...                 predicted=torch.tensor([[0.5]]), distance=torch.tensor([[0.2]]),
    ...                 route=None, segment_mask=torch.tensor([[True]]))
    >>> terms = DSLLoss(alpha=0.1, beta=1.0)(out)
    >>> [round(float(terms[k]), 3) for k in ("compression", "switch", "light", "loss")]
    [1.0, 0.3, 0.2, 0.6]
    >>> terms = DSLLoss(alpha=0.1, beta=1.0)(out, switch_target=torch.tensor([[0.4]]))
    >>> [round(float(terms[k]), 3) for k in ("switch", "light")]
    [0.1, 0.2]
    """

    def __init__(
        self, alpha: float = 1e-4, beta: float = 1.0, switch_criterion: str = "l1"
    ) -> None:
        super().__init__()
        criteria = {"l1": F.l1_loss, "mse": F.mse_loss}
        if switch_criterion not in criteria:
            raise ValueError(
                f"DSLLoss: switch_criterion must be one of {sorted(criteria)}, got "
                f"{switch_criterion!r}"
            )
        self.alpha, self.beta = alpha, beta
        self.criterion = criteria[switch_criterion]

    def forward(
        self,
        out: DSLOutput,
        lengths: Optional[torch.Tensor] = None,
        switch_target: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Returns a dict with ``loss`` and its terms ``compression``, ``switch``, ``light``.

        Arguments
        ---------
        out : DSLOutput
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1].
        switch_target : torch.Tensor, optional
            ``[batch, segments]``: what the switch regresses to instead of the
            tails' feature distance (the light tail is still distilled on that).
        """
        if switch_target is not None and switch_target.shape != out.predicted.shape:
            raise ValueError(
                f"DSLLoss: switch_target must have the switch's shape "
                f"{tuple(out.predicted.shape)}, got {tuple(switch_target.shape)}"
            )
        masked = out.masked
        steps = length_mask(lengths, masked.shape[-1], masked.device, masked.shape[0])
        compression = masked.abs().mean(1)[steps].mean()
        valid = out.segment_mask
        distance = out.distance[valid]
        target = distance if switch_target is None else switch_target[valid]
        switch = self.criterion(out.predicted[valid], target.detach())
        light = distance.mean()
        loss = self.alpha * compression + self.beta * (switch + light)
        return {"loss": loss, "compression": compression, "switch": switch, "light": light}
