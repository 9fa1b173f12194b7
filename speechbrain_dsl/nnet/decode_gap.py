"""The switch's target measured on the decoded audio: how much worse, per routing
segment, the light tail's decode is than the full tail's.

The paper's target (Eq. 3) is a distance between the two tails' features. On real
speech that distance is not what the quality budget spends: the light tail
reproduces a noise clip's latents badly yet decodes it about as well as the full
tail, and a quiet pause far from both tails' features may still be inaudible.
:class:`DecodeGap` measures, on a log-mel spectrogram with a floor tied to the
utterance's own level, each segment's reconstruction error of the light decode
minus that of the full decode: the loss a listener would hear if that segment went
light. The floor makes the target level-invariant (a louder utterance scales every
mel band and its floor together) and lets errors far below the utterance's level
count for nothing.
"""

from typing import Optional

import torch
import torchaudio
from torch import nn

from speechbrain_dsl.nnet.segments import length_mask, segment_mean

__all__ = ["DecodeGap"]


class DecodeGap(nn.Module):
    """Per segment: log-mel error of the light decode minus that of the full decode.

    Arguments
    ---------
    sample_rate : int
    hop_length : int
        Samples per encoder frame; the spectrogram has one frame per encoder frame.
    segment_frames : int
        Encoder frames per routing segment.
    n_mels : int
    floor_db : float
        Mel magnitudes below the utterance's mean magnitude plus this (dB) are
        raised to it, in the reference and in both decodes.

    Example
    -------
    >>> gap = DecodeGap(16000, hop_length=320, segment_frames=8)
    >>> wav = torch.randn(2, 1, 16000)
    >>> noisy = wav + 0.3 * torch.randn_like(wav)
    >>> target = gap(wav, full=wav, light=noisy)
    >>> target.shape, bool((target > 0).all())
    (torch.Size([2, 7]), True)
    >>> bool(gap(wav, full=noisy, light=wav).eq(0).all())  # light better: no loss
    True
    >>> torch.allclose(gap(10 * wav, 10 * wav, 10 * noisy), target, atol=1e-4)
    True
    """

    def __init__(
        self,
        sample_rate: int,
        hop_length: int,
        segment_frames: int,
        n_mels: int = 64,
        floor_db: float = -40.0,
    ) -> None:
        super().__init__()
        self.hop_length, self.segment_frames = hop_length, segment_frames
        self.floor = 10.0 ** (floor_db / 20.0)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=4 * hop_length,
            hop_length=hop_length,
            n_mels=n_mels,
            power=1.0,
            center=True,
        )

    @torch.no_grad()
    def forward(
        self,
        wav: torch.Tensor,
        full: torch.Tensor,
        light: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The gap per segment, ``[batch, segments]``, zero where light decodes no worse.

        Arguments
        ---------
        wav, full, light : torch.Tensor
            The input and the two decodes, ``[batch, 1, samples]`` or ``[batch, samples]``,
            of one length.
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1]; padded frames are left out.
        """
        if not wav.shape == full.shape == light.shape:
            raise ValueError(
                "DecodeGap: wav, full and light must have one shape, got "
                f"{tuple(wav.shape)}, {tuple(full.shape)} and {tuple(light.shape)}"
            )
        samples = wav.shape[-1]
        frames = -(-samples // self.hop_length)
        spectra = [
            self.mel(x.reshape(x.shape[0], samples).float())[..., :frames]
            for x in (wav, full, light)
        ]
        reference = spectra[0]
        mask = length_mask(lengths, frames, wav.device, wav.shape[0])
        # the utterance's mean mel magnitude over its valid frames sets the floor
        weight = mask[:, None].to(reference.dtype)
        level = (reference * weight).sum((1, 2)) / (weight.sum((1, 2)) * reference.shape[1])
        floor = (self.floor * level).clamp(min=1e-8)[:, None, None]
        logs = [torch.log(torch.maximum(s, floor)) for s in spectra]
        errors = [(x - logs[0]).abs().mean(1) for x in logs[1:]]
        gap = segment_mean(errors[1] - errors[0], self.segment_frames, mask)
        return gap.clamp(min=0)
