"""Per-segment bookkeeping shared by routing, losses and metrics.

A routed encoder works on *segments* of a fixed number of frames. These helpers
turn relative lengths into masks and average per-frame values per segment; which
frames each tail computes is the routing planner's job
(:mod:`speechbrain_dsl.nnet.routing`).

Layout: features ``[batch, channels, time]``; per-segment tensors ``[batch, segments]``.
"""

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

from speechbrain_dsl.nnet.routing import relative_levels

__all__ = ["length_mask", "segment_mean", "segment_levels"]


def length_mask(
    lengths: Optional[torch.Tensor], time: int, device: Union[str, torch.device], batch: int
) -> torch.Tensor:
    """Boolean ``[batch, time]``: True on steps within each relative length.

    Example
    -------
    >>> length_mask(torch.tensor([1.0, 0.5]), 4, "cpu", 2)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    """
    if lengths is None:
        return torch.ones(batch, time, dtype=torch.bool, device=device)
    steps = torch.round(lengths.to(device) * time).clamp(min=1)
    # SpeechBrain's length_to_mask, without the len(tensor) that fixes a traced batch size
    return torch.arange(time, device=device, dtype=steps.dtype)[None] < steps[:, None]


def segment_mean(
    values: torch.Tensor, segment_frames: int, frame_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Averages ``values`` [batch, frames] over segments of ``segment_frames``.

    Padded frames (``frame_mask`` False) are left out. Returns ``[batch, segments]``.

    Example
    -------
    >>> segment_mean(torch.arange(5.0)[None], 2)
    tensor([[0.5000, 2.5000, 4.0000]])
    """
    batch, frames = values.shape
    n_seg = math.ceil(frames / segment_frames)
    pad = n_seg * segment_frames - frames
    if frame_mask is None:
        frame_mask = torch.ones_like(values, dtype=torch.bool)
    weight = F.pad(frame_mask.to(values.dtype), (0, pad)).view(batch, n_seg, -1)
    total = F.pad(values * weight.flatten(1)[:, :frames], (0, pad))
    total = total.view(batch, n_seg, -1).sum(-1)
    return total / weight.sum(-1).clamp(min=1)


def segment_levels(
    wav: torch.Tensor, segment_samples: int, lengths: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Each routing segment's level relative to its utterance so far (see
    :func:`~speechbrain_dsl.nnet.routing.relative_levels`), ``[batch, segments]``.

    Arguments
    ---------
    wav : torch.Tensor
        ``[batch, 1, samples]`` or ``[batch, samples]``.
    segment_samples : int
        Samples per routing segment (segment frames x the encoder's hop).
    lengths : torch.Tensor, optional
        Relative lengths in (0, 1]; padding counts neither as energy nor as samples.

    Example
    -------
    >>> wav = torch.cat([torch.ones(1, 1, 4), torch.full((1, 1, 4), 0.1)], dim=-1)
    >>> segment_levels(wav, 4), segment_levels(0.1 * wav, 4)
    (tensor([[ 0.0000, -1.7033]]), tensor([[ 0.0000, -1.7033]]))
    """
    wav = wav.reshape(wav.shape[0], -1).float()
    batch, samples = wav.shape
    n_seg = math.ceil(samples / segment_samples)
    valid = length_mask(lengths, samples, wav.device, batch).float()
    power = F.pad(wav.square() * valid, (0, n_seg * segment_samples - samples))
    counts = F.pad(valid, (0, n_seg * segment_samples - samples))
    energy = power.view(batch, n_seg, segment_samples).sum(-1)
    return relative_levels(energy, counts.view(batch, n_seg, segment_samples).sum(-1))
