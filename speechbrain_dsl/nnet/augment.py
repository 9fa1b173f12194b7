"""Training-time augmentation that the codec must be robust to."""

from typing import Optional

import torch
from torch import nn

from speechbrain_dsl.nnet.segments import length_mask

__all__ = ["RandomGain"]


class RandomGain(nn.Module):
    """Scales each utterance to a random RMS level in ``[min_dbfs, max_dbfs]``.

    A codec trained at one level returns loud speech 7-18 dB too quiet and routes
    by loudness; training over the whole range of levels makes output level follow
    input level. Gains are capped so no sample exceeds ``max_peak``; near-silent
    utterances (RMS under ``silence_dbfs``) are left as they are, so silence is not
    blown up into noise.

    Arguments
    ---------
    min_dbfs, max_dbfs : float
        Range of target RMS levels (dB relative to full scale), drawn uniformly.
    max_peak : float
    silence_dbfs : float

    Example
    -------
    >>> gain = RandomGain(-30.0, -30.0)
    >>> wav = 0.001 * torch.randn(2, 1, 16000)
    >>> out = gain(wav)
    >>> level = 20 * torch.log10(out.square().mean(-1).sqrt())
    >>> [round(v) for v in level.flatten().tolist()]
    [-30, -30]
    """

    def __init__(
        self,
        min_dbfs: float = -45.0,
        max_dbfs: float = -3.0,
        max_peak: float = 0.99,
        silence_dbfs: float = -70.0,
    ) -> None:
        super().__init__()
        if not min_dbfs <= max_dbfs <= 0:
            raise ValueError(
                f"RandomGain: need min_dbfs <= max_dbfs <= 0, got {min_dbfs}, {max_dbfs}"
            )
        self.min_dbfs, self.max_dbfs = float(min_dbfs), float(max_dbfs)
        self.max_peak, self.silence_dbfs = float(max_peak), float(silence_dbfs)

    def forward(self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Returns ``wav`` [batch, 1, samples] with one random gain per utterance."""
        valid = length_mask(lengths, wav.shape[-1], wav.device, wav.shape[0])[:, None]
        power = (wav.square() * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True)
        rms_db = 10 * torch.log10(power.clamp(min=1e-20))
        target = torch.empty_like(rms_db).uniform_(self.min_dbfs, self.max_dbfs)
        gain = 10 ** ((target - rms_db) / 20)
        peak = (wav.abs() * valid).amax(-1, keepdim=True).clamp(min=1e-12)
        gain = torch.minimum(gain, self.max_peak / peak)
        gain = torch.where(rms_db < self.silence_dbfs, torch.ones_like(gain), gain)
        return wav * gain
