"""The DSL's mask (Eq. 2): a learnable per-channel gain whose L1 sparsifies the base's output.

:func:`activation_sparsity` measures what the compression term achieves.
"""

import torch
from torch import nn

__all__ = ["Mask", "activation_sparsity"]


class Mask(nn.Module):
    """Learnable per-channel gain that compresses the activation map.

    Its output is penalised with L1 (:class:`DSLLoss`, Eq. 2), which drives
    channels and activations towards zero.

    Arguments
    ---------
    channels : int
    init : float
        Initial gain (1 = identity).

    Example
    -------
    >>> mask = Mask(4)
    >>> mask(torch.randn(2, 4, 10)).shape
    torch.Size([2, 4, 10])
    """

    def __init__(self, channels: int, init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scales each channel of ``x`` [batch, channels, time]."""
        return x * self.weight[:, None]


def activation_sparsity(x: torch.Tensor, tolerance: float = 1e-3) -> float:
    """Share of activations whose magnitude is at most ``tolerance``.

    Example
    -------
    >>> activation_sparsity(torch.tensor([0.0, 0.5, -1e-4, 2.0]))
    0.5
    """
    return float((x.abs() <= tolerance).float().mean())
