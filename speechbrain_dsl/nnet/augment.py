"""Training-time augmentation that the codec must be robust to."""

from typing import Optional, Sequence, Tuple

import numpy as np
import pyroomacoustics
import torch
import torchaudio.functional as AF
from speechbrain.augment.time_domain import SpeedPerturb
from torch import nn

from speechbrain_dsl.nnet.segments import length_mask

__all__ = ["RandomGain", "RoomsAndNoise", "pink_noise", "room_impulse_responses"]


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


def room_impulse_responses(
    count: int,
    sample_rate: int = 16000,
    rt60: Tuple[float, float] = (0.15, 0.6),
    seed: int = 0,
    max_order: int = 20,
) -> list:
    """Impulse responses of ``count`` random shoebox rooms (pyroomacoustics' image source).

    Rooms of 3 x 3 x 2.5 to 9 x 7 x 4 m with a reverberation time drawn from ``rt60``
    (Sabine's formula gives the walls' absorption), source and microphone anywhere
    0.5 m from the walls. Each response starts at its direct path and has unit energy.

    Example
    -------
    >>> rirs = room_impulse_responses(2, seed=1)
    >>> [round(float(r.square().sum()), 3) for r in rirs], [int(r.abs().argmax()) for r in rirs]
    ([1.0, 1.0], [0, 0])
    """
    rng = np.random.default_rng(seed)
    responses = []
    for _ in range(count):
        dim = rng.uniform([3.0, 3.0, 2.5], [9.0, 7.0, 4.0])
        absorption, order = pyroomacoustics.inverse_sabine(rng.uniform(*rt60), dim)
        room = pyroomacoustics.ShoeBox(
            dim,
            fs=sample_rate,
            materials=pyroomacoustics.Material(absorption),
            max_order=min(order, max_order),
        )
        room.add_source(rng.uniform(0.5, dim - 0.5))
        room.add_microphone(rng.uniform(0.5, dim - 0.5))
        room.compute_rir()
        rir = torch.as_tensor(np.asarray(room.rir[0][0]), dtype=torch.float32)
        rir = rir[int(rir.abs().argmax()) :]  # the direct path at sample 0: no delay
        responses.append(rir / rir.square().sum().sqrt())
    return responses


class RoomsAndNoise(nn.Module):
    """Speed perturbation, simulated rooms and background noise for codec training.

    More real-speech conditions from few recordings: a batch is played at one
    speed of ``speeds`` (percent; SpeechBrain's ``SpeedPerturb``, which shifts
    pitch with tempo), then each utterance is, with probability ``reverb_prob``,
    convolved with one of ``rooms`` simulated room responses
    (:func:`room_impulse_responses`, built once) and, with probability
    ``noise_prob``, mixed with pink noise at an SNR drawn from ``snr_db``. Levels
    are kept (a reverberant utterance has its dry RMS), so :class:`RandomGain`
    still sets them. The codec's target is the augmented audio itself.

    Arguments
    ---------
    sample_rate : int
    speeds : sequence of int
        Playback speeds in percent (100 = unchanged), one drawn per batch.
    rooms : int
        Room responses in the bank.
    reverb_prob, noise_prob : float
    snr_db : tuple of float
    seed : int
        Seeds the room bank; the per-batch draws follow torch's generator.

    Example
    -------
    >>> augment = RoomsAndNoise(rooms=4, speeds=(90,), reverb_prob=1.0, noise_prob=1.0)
    >>> wav, lens = 0.1 * torch.randn(2, 1, 8000), torch.tensor([1.0, 0.5])
    >>> out, out_lens = augment(wav, lens)
    >>> out.shape, [round(float(v), 3) for v in out_lens]
    (torch.Size([2, 1, 8000]), [1.0, 0.556])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        speeds: Sequence[int] = (90, 100, 110),
        rooms: int = 64,
        reverb_prob: float = 0.5,
        noise_prob: float = 0.3,
        snr_db: Tuple[float, float] = (10.0, 30.0),
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("reverb_prob", reverb_prob), ("noise_prob", noise_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"RoomsAndNoise: {name} must be in [0, 1], got {value}")
        if not speeds or any(s <= 0 for s in speeds):
            raise ValueError(f"RoomsAndNoise: speeds must be positive percentages, got {speeds}")
        self.speed = SpeedPerturb(orig_freq=sample_rate, speeds=list(speeds))
        self.rooms = room_impulse_responses(rooms, sample_rate, seed=seed) if rooms else []
        self.reverb_prob, self.noise_prob, self.snr_db = reverb_prob, noise_prob, snr_db

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        """Augments ``wav`` ``[batch, 1, samples]``; returns it (same shape) and new lengths."""
        batch, _, samples = wav.shape
        played = self.speed(wav[:, 0])
        # a slower batch is longer: crop; a faster one is shorter: pad, shorten lengths
        lengths = (lengths * played.shape[-1] / samples).clamp(max=1.0)
        played = torch.nn.functional.pad(played, (0, max(0, samples - played.shape[-1])))
        out = played[:, :samples]
        valid = length_mask(lengths, samples, wav.device, batch)
        out = out * valid  # the resampler's ripple past each utterance's end
        rms = ((out.square() * valid).sum(-1) / valid.sum(-1).clamp(min=1)).sqrt()
        for b in range(batch):
            if self.rooms and float(torch.rand(())) < self.reverb_prob:
                rir = self.rooms[int(torch.randint(len(self.rooms), ()))].to(wav)
                wet = AF.fftconvolve(out[b], rir)[:samples] * valid[b]
                wet_rms = (wet.square().sum() / valid[b].sum().clamp(min=1)).sqrt()
                out[b] = wet * rms[b] / wet_rms.clamp(min=1e-8)
            if float(torch.rand(())) < self.noise_prob:
                snr = float(torch.empty(()).uniform_(*self.snr_db))
                noise = pink_noise(samples, wav.device) * valid[b]
                out[b] = out[b] + noise * rms[b] * 10 ** (-snr / 20)
        return out[:, None], lengths


def pink_noise(samples: int, device=None) -> torch.Tensor:
    """Unit-RMS pink (1/f power) noise of ``samples`` samples.

    Example
    -------
    >>> round(float(pink_noise(16000).square().mean().sqrt()), 3)
    1.0
    """
    spectrum = torch.fft.rfft(torch.randn(samples, device=device))
    freqs = torch.arange(spectrum.shape[-1], device=device).clamp(min=1)
    noise = torch.fft.irfft(spectrum / freqs.sqrt(), n=samples)
    return noise / noise.square().mean().sqrt().clamp(min=1e-12)
