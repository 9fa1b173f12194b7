"""Gated Compression (Li et al., 2023): the DSL's supervised special case.

A gate trained on binary labels decides per utterance whether the rest of the
network runs at all (early exit); a :class:`~speechbrain_dsl.nnet.dsl.Mask`
compresses what passes. There is no lightweight path.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.nnet.dsl import Mask, SegmentStatsHead

__all__ = ["GatedCompression", "GatedNetwork", "GatedCompressionLoss"]


class GatedCompression(nn.Module):
    """Gated Compression layer (Li et al., 2023): the DSL's supervised special case.

    A gate trained on binary labels (positive = signal of interest) decides per
    utterance; negatives exit early (nothing after the layer runs for them), so
    there is no lightweight tail. A :class:`Mask` compresses what passes.

    Arguments
    ---------
    channels : int
    hidden : int
        Hidden units of the gate's MLP.
    threshold : float
        Gate probability at or above which a sample passes.

    Example
    -------
    >>> gc = GatedCompression(4)
    >>> masked, logits = gc(torch.randn(3, 4, 20))
    >>> masked.shape, logits.shape
    (torch.Size([3, 4, 20]), torch.Size([3]))
    """

    def __init__(self, channels: int, hidden: int = 32, threshold: float = 0.5) -> None:
        super().__init__()
        self.mask = Mask(channels)
        self.gate = SegmentStatsHead(channels, hidden)
        self.threshold = threshold

    def forward(
        self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns the masked features and one gate logit per utterance."""
        masked = self.mask(x)
        logits = self.gate(masked, masked.shape[-1], lengths).squeeze(1)
        return masked, logits

    def passes(self, logits: torch.Tensor) -> torch.Tensor:
        """Bool ``[batch]``: samples the gate lets through."""
        return torch.sigmoid(logits) >= self.threshold


class GatedNetwork(nn.Module):
    """``base -> GatedCompression -> head`` with early exit for negatives.

    In training the head runs on every sample (for the task loss). In inference it
    runs only on samples that pass the gate; rows of negatives are zeros. With
    ``lengths`` the head is called as ``head(features, lengths)``.

    Example
    -------
    >>> net = GatedNetwork(nn.Conv1d(1, 4, 3), GatedCompression(4),
    ...                    nn.Sequential(nn.Flatten(), nn.LazyLinear(2))).eval()
    >>> out, logits, passed = net(torch.randn(5, 1, 10))
    >>> out.shape, passed.shape
    (torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(self, base: nn.Module, gate: GatedCompression, head: nn.Module) -> None:
        super().__init__()
        self.base, self.gate, self.head = base, gate, head
        self.last_masked: Optional[torch.Tensor] = None

    def forward(
        self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(head output, gate logits, passed)``."""
        masked, logits = self.gate(self.base(x), lengths)
        self.last_masked = masked  # for the compression (L1) term of GatedCompressionLoss
        if self.training:
            passed = torch.ones_like(logits, dtype=torch.bool)
            return self._head(masked, lengths), logits, passed
        passed = self.gate.passes(logits)
        kept = self._head(masked[passed], None if lengths is None else lengths[passed])
        out = kept.new_zeros(x.shape[0], *kept.shape[1:])
        out[passed] = kept
        return out, logits, passed

    def _head(self, masked: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        # heads that pool over time take the lengths; plain heads (e.g. Sequential) do not
        return self.head(masked) if lengths is None else self.head(masked, lengths)


class GatedCompressionLoss(nn.Module):
    """``alpha * L1(mask output) + beta * BCE(gate logits, labels)``.

    Arguments
    ---------
    alpha, beta : float
    pos_weight : float, optional
        Weight of the positive class in the BCE (e.g. negatives / positives in the
        training data), so a gate trained on mostly negative audio does not learn to
        let every sample exit.

    Example
    -------
    >>> loss = GatedCompressionLoss(alpha=0.0, beta=1.0)
    >>> round(float(loss(torch.zeros(2, 1, 3), torch.zeros(2), torch.tensor([0, 1]))), 4)
    0.6931
    """

    def __init__(
        self, alpha: float = 1e-4, beta: float = 1.0, pos_weight: Optional[float] = None
    ) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.pos_weight = None if pos_weight is None else float(pos_weight)

    def forward(
        self, masked: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Returns the scalar loss; ``labels`` are 1 for positives, 0 for negatives."""
        weight = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        gate = F.binary_cross_entropy_with_logits(
            logits, labels.to(logits.dtype), pos_weight=weight
        )
        return self.alpha * masked.abs().mean() + self.beta * gate
