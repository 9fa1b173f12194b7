"""What a Dynamic Switch Layer forward returns: :class:`DSLOutput`.

The layer's output features with everything the DSL loss, the codec's routing
record and the evaluations read: the mask output, the switch's predictions, the
true distances, the routes and which segments hold audio
(:class:`~speechbrain_dsl.nnet.dsl.DynamicSwitchLayer` makes it).

Layout: features ``[batch, channels, time]``; per-segment tensors ``[batch, segments]``.
"""

from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["DSLOutput"]


@dataclass
class DSLOutput:
    """What a :class:`DynamicSwitchLayer` forward returns.

    Attributes
    ----------
    features : torch.Tensor
        ``[batch, emb_dim, frames]`` (channels first, as every ``nnet`` tensor): the
        layer's output (the full tail's in training). The codec's ``emb`` is the
        same tensor transposed to ``[batch, frames, emb_dim]``.
    masked : torch.Tensor
        Mask output ``[batch, channels, time]`` (input of both tails).
    predicted : torch.Tensor or None
        Switch prediction per segment ``[batch, segments]`` (training, ``mixed``
        and ``oracle``).
    distance : torch.Tensor or None
        True distance(light, full) per segment; differentiable w.r.t. the light
        tail only (the full tail is the teacher). Set in training and ``oracle``.
    route : torch.Tensor or None
        Bool ``[batch, segments]``, True where the light tail ran (inference only).
    segment_mask : torch.Tensor
        Bool ``[batch, segments]``, False for segments that are all padding.
    light_features : torch.Tensor or None
        Light tail output on every frame (training and ``oracle``).
    """

    features: torch.Tensor
    masked: torch.Tensor
    predicted: Optional[torch.Tensor]
    distance: Optional[torch.Tensor]
    route: Optional[torch.Tensor]
    segment_mask: torch.Tensor
    light_features: Optional[torch.Tensor] = None

    @classmethod
    def cat(cls, parts: "list[DSLOutput]") -> "DSLOutput":
        """The outputs of consecutive groups of one batch, joined along the batch.

        Example
        -------
        >>> part = DSLOutput(torch.ones(1, 2, 3), torch.ones(1, 4, 6), None, None,
        ...                  torch.zeros(1, 1, dtype=torch.bool), torch.ones(1, 1, dtype=torch.bool))
        >>> joined = DSLOutput.cat([part, part])
        >>> joined.features.shape, joined.predicted, joined.route.shape
        (torch.Size([2, 2, 3]), None, torch.Size([2, 1]))
        """
        fields = {}
        for name in cls.__dataclass_fields__:
            values = [getattr(p, name) for p in parts]
            fields[name] = None if values[0] is None else torch.cat(values)
        return cls(**fields)
