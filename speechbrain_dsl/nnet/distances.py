"""Distances between the light and full tails' outputs: the switch's target and the
light tail's distillation loss (Eq. 3 and 4), per routing segment.
"""

from typing import Optional

import torch

from speechbrain_dsl.nnet.segments import segment_mean

__all__ = [
    "DISTANCES",
    "RELATIVE_FLOOR",
    "mean_absolute_error",
    "mean_squared_error",
    "segment_distance",
]


def mean_absolute_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame MAE over channels: ``[batch, channels, frames] -> [batch, frames]``."""
    return (a - b).abs().mean(1)


def mean_squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame MSE over channels: ``[batch, channels, frames] -> [batch, frames]``."""
    return (a - b).square().mean(1)


DISTANCES = {
    "mae": mean_absolute_error,
    "mse": mean_squared_error,
    "relative_mae": None,
    "utterance_mae": None,
}
"""Distances behind the switch target and distillation. With ``mae`` a quiet segment
always looks close, so routing follows loudness. ``relative_mae`` divides the
segment's MAE by the full tail's mean magnitude on that segment; on trained tails it
leans the other way: loud segments look close and pauses far (TRAINING.md).
``utterance_mae`` divides by the full tail's mean magnitude over the whole utterance
(the training crop): a louder utterance leaves it unchanged, and within one a pause
still looks closer than speech, as its errors weigh less in what a listener hears."""

RELATIVE_FLOOR = 1e-3  # keeps the relative distance finite on all-zero features


def segment_distance(
    name: str,
    light: torch.Tensor,
    full: torch.Tensor,
    segment_frames: int,
    frame_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Distance ``name`` (see :data:`DISTANCES`) between the tails per segment, ``[batch, segments]``.

    Arguments
    ---------
    name : str
        A key of :data:`DISTANCES`.
    light, full : torch.Tensor
        ``[batch, channels, frames]`` outputs of the light and the full tail.
    segment_frames : int
        Frames per routing segment.
    frame_mask : torch.Tensor, optional
        Bool ``[batch, frames]``; padded frames are left out.

    Example
    -------
    >>> full = torch.tensor([[[1.0, 1.0, 0.1, 0.1]]])  # a pause in the second segment
    >>> segment_distance("mae", 1.5 * full, full, 2)
    tensor([[0.5000, 0.0500]])
    >>> segment_distance("utterance_mae", 1.5 * full, full, 2)
    tensor([[0.9074, 0.0907]])
    """
    if name in ("relative_mae", "utterance_mae"):
        error = segment_mean(mean_absolute_error(light, full), segment_frames, frame_mask)
        # relative to the segment's own magnitude, or to the whole utterance's
        over = segment_frames if name == "relative_mae" else full.shape[-1]
        scale = segment_mean(full.abs().mean(1), over, frame_mask)
        return error / (scale + RELATIVE_FLOOR)
    return segment_mean(DISTANCES[name](light, full), segment_frames, frame_mask)
