"""Codec reconstruction losses.

The DSL's own loss (Eqs. 2-5) lives with the layer in :mod:`speechbrain_dsl.nnet.dsl`.
Adversarial and feature-matching terms reuse SpeechBrain's HiFi-GAN losses
(``speechbrain.lobes.models.HifiGAN.HingeGLoss``, ``HingeDLoss``,
``MelganFeatureLoss``); :func:`generator_adversarial_loss` and
:func:`discriminator_adversarial_loss` average them over discriminators.
"""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchaudio
from speechbrain.lobes.models.HifiGAN import HingeDLoss, HingeGLoss, MelganFeatureLoss
from torch import nn

__all__ = [
    "MultiScaleMelLoss",
    "MultiResolutionSTFTLoss",
    "LevelLoss",
    "GANLoss",
    "generator_adversarial_loss",
    "discriminator_adversarial_loss",
    "feature_matching_loss",
]


class MultiScaleMelLoss(nn.Module):
    """SoundStream's multi-scale spectral reconstruction loss.

    For each window size ``s``: ``L1(mel) + sqrt(s / 2) * L2(log mel)`` with hop
    ``s / 4``, averaged over scales. ``log(mel + eps)`` keeps a gradient for quiet
    output (a clamp would kill it).

    Arguments
    ---------
    sample_rate : int
    n_ffts : sequence of int
        Window sizes (SoundStream: 64 ... 2048).
    n_mels : int
        Most mel bands at any scale; each scale gets ``min(n_mels, n_fft // 8)`` so
        small windows have no empty bands and large ones resolve more (128 bands
        at 1024 and 2048 are ~90 Hz apart at 4 kHz; 64 bands were ~180 Hz, coarser
        than the harmonics of a 100-200 Hz voice).
    eps : float

    Example
    -------
    >>> loss = MultiScaleMelLoss(16000, n_ffts=(256, 512))
    >>> x = torch.randn(2, 1, 4000)
    >>> float(loss(x, x))
    0.0
    >>> bool(loss(x, torch.zeros_like(x)) > 0)
    True
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_ffts: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
        n_mels: int = 64,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.n_ffts = tuple(n_ffts)
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=n,
                hop_length=n // 4,
                n_mels=min(n_mels, n // 8),
                power=1.0,
                center=True,
            )
            for n in self.n_ffts
        )

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """Loss between ``wav_hat`` and ``wav``, both ``[B, 1, S]`` or ``[B, S]``."""
        total = 0.0
        for n, mel in zip(self.n_ffts, self.mels):
            a, b = mel(wav_hat), mel(wav)
            total = total + F.l1_loss(a, b)
            log_diff = torch.log(a + self.eps) - torch.log(b + self.eps)
            total = total + (n / 2) ** 0.5 * log_diff.square().mean(dim=-2).sqrt().mean()
        return total / len(self.n_ffts)


class MultiResolutionSTFTLoss(nn.Module):
    """Log-magnitude L1 plus spectral convergence on linear-frequency STFTs.

    At 16 kHz an ``n_fft`` of 1024 has bins 15.6 Hz apart, fine enough to see the
    harmonics of any voice, which mel scales blur above ~1 kHz. Both terms are
    invariant to the signal's level, so quiet and loud speech weigh the same.

    Arguments
    ---------
    n_ffts : sequence of int
        Window sizes; the hop is a quarter of each.
    eps : float
        Added to magnitudes before the log.

    Example
    -------
    >>> loss = MultiResolutionSTFTLoss(n_ffts=(256, 512))
    >>> x = torch.randn(2, 1, 4000)
    >>> float(loss(x, x))
    0.0
    >>> bool(loss(x, 0.5 * x) > 0)
    True
    """

    def __init__(self, n_ffts: Sequence[int] = (512, 1024, 2048), eps: float = 1e-5) -> None:
        super().__init__()
        self.n_ffts = tuple(n_ffts)
        self.eps = eps
        for n in self.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """Loss between ``wav_hat`` and ``wav``, both ``[B, 1, S]`` or ``[B, S]``."""
        total = 0.0
        with torch.autocast(wav.device.type, enabled=False):
            wav_hat, wav = (
                wav_hat.reshape(-1, wav_hat.shape[-1]).float(),
                wav.reshape(-1, wav.shape[-1]).float(),
            )
            for n in self.n_ffts:
                window = getattr(self, f"window_{n}")
                a = torch.stft(wav_hat, n, n // 4, window=window, return_complex=True).abs()
                b = torch.stft(wav, n, n // 4, window=window, return_complex=True).abs()
                log_l1 = F.l1_loss(torch.log(a + self.eps), torch.log(b + self.eps))
                convergence = torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp(min=self.eps)
                total = total + log_l1 + convergence
        return total / len(self.n_ffts)


class LevelLoss(nn.Module):
    """Mean ``|ln RMS(wav_hat) - ln RMS(wav)|`` over windows of ``window`` samples.

    Spectral losses with log terms let an undertrained decoder come out several dB
    quiet (and inconsistent phases cancel in the overlap-add); a codec must give
    back the level it was given. Windows where the reference is below ``floor``
    (near-digital silence) do not count.

    Arguments
    ---------
    window : int
        Samples per level measurement (4000 = 250 ms at 16 kHz).
    floor : float
        RMS under which a reference window is ignored.

    Example
    -------
    >>> loss = LevelLoss(window=400)
    >>> x = torch.randn(2, 1, 4000)
    >>> float(loss(x, x))
    0.0
    >>> round(float(loss(0.5 * x, x)), 4)  # ln 2
    0.6931
    """

    def __init__(self, window: int = 4000, floor: float = 1e-4) -> None:
        super().__init__()
        self.window, self.floor = window, floor

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """Loss between ``wav_hat`` and ``wav``, both ``[B, 1, S]`` or ``[B, S]``."""
        wav_hat, wav = wav_hat.reshape(wav_hat.shape[0], -1), wav.reshape(wav.shape[0], -1)
        size = min(self.window, wav.shape[-1])
        frames = wav.shape[-1] // size
        rms = lambda x: (
            x[:, : frames * size]
            .reshape(x.shape[0], frames, size)
            .float()
            .square()
            .mean(-1)
            .add(1e-12)
            .sqrt()
        )  # noqa: E731
        target, estimate = rms(wav), rms(wav_hat)
        counted = target > self.floor
        if not counted.any():
            return wav_hat.new_zeros(())
        return (estimate[counted].log() - target[counted].log()).abs().mean()


class GANLoss(nn.Module):
    """Hinge adversarial and feature-matching terms around one discriminator.

    Hides how real and fake audio go through the discriminator (one batched
    forward, split after), so a training step only says which side it wants:

    - :meth:`discriminator_loss`: the discriminator's hinge loss; the fake audio
      is detached.
    - :meth:`generator_loss`: ``(adversarial, feature)`` for the generator; the
      discriminator's parameters get no gradient from it.

    Arguments
    ---------
    discriminator : nn.Module
        Returns ``(scores, features)`` lists, as the discriminators here do. Give
        the unwrapped module under DDP for the generator side.

    Example
    -------
    >>> from speechbrain_dsl.lobes.discriminators import MultiResolutionSTFTDiscriminator
    >>> gan = GANLoss(MultiResolutionSTFTDiscriminator(n_ffts=(128,), channels=4))
    >>> real, fake = torch.randn(2, 1, 1600), torch.randn(2, 1, 1600, requires_grad=True)
    >>> loss_d = gan.discriminator_loss(fake, real)
    >>> adversarial, feature = gan.generator_loss(fake, real)
    >>> adversarial.backward()
    >>> fake.grad is not None, all(p.grad is None for p in gan.discriminator.parameters())
    (True, True)
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def _split(
        self, fake: torch.Tensor, real: torch.Tensor, discriminator: Optional[nn.Module] = None
    ) -> Tuple[
        Tuple[torch.Tensor, ...],
        Tuple[torch.Tensor, ...],
        List[List[torch.Tensor]],
        List[List[torch.Tensor]],
    ]:
        # One forward for both: DDP allows one forward per backward.
        scores, feats = (discriminator or self.discriminator)(torch.cat([fake, real]))
        fake_scores, real_scores = zip(*(s.chunk(2) for s in scores))
        fake_feats = [[f.chunk(2)[0] for f in fs] for fs in feats]
        real_feats = [[f.chunk(2)[1] for f in fs] for fs in feats]
        return fake_scores, real_scores, fake_feats, real_feats

    def discriminator_loss(
        self, fake: torch.Tensor, real: torch.Tensor, discriminator: Optional[nn.Module] = None
    ) -> torch.Tensor:
        """Hinge loss of the discriminator on ``fake`` (detached) vs ``real``.

        ``discriminator`` overrides the held one for this call: under DDP, pass
        the wrapped module so its gradients are all-reduced.
        """
        fake_scores, real_scores, _, _ = self._split(fake.detach(), real, discriminator)
        return discriminator_adversarial_loss(fake_scores, real_scores)

    def generator_loss(
        self, fake: torch.Tensor, real: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(adversarial, feature)`` terms; gradients reach ``fake`` only.

        Real audio goes through the discriminator without a graph (its features are
        targets), so the backward pass costs half of a batched real + fake pass.
        """
        self.discriminator.requires_grad_(False)
        try:
            with torch.no_grad():
                _, real_feats = self.discriminator(real)
            fake_scores, fake_feats = self.discriminator(fake)
        finally:
            self.discriminator.requires_grad_(True)
        return generator_adversarial_loss(fake_scores), feature_matching_loss(
            fake_feats, real_feats
        )


_hinge_g, _hinge_d, _feature = HingeGLoss(), HingeDLoss(), MelganFeatureLoss()


def generator_adversarial_loss(fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hinge generator loss averaged over discriminators (SpeechBrain's HingeGLoss)."""
    return sum(_hinge_g(s) for s in fake_scores) / len(fake_scores)


def discriminator_adversarial_loss(
    fake_scores: Sequence[torch.Tensor], real_scores: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Hinge discriminator loss averaged over discriminators (SpeechBrain's HingeDLoss)."""
    return sum(_hinge_d(f, r)[0] for f, r in zip(fake_scores, real_scores)) / len(fake_scores)


def feature_matching_loss(
    fake_feats: Sequence[Sequence[torch.Tensor]], real_feats: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between discriminator features of fake and real audio (MelganFeatureLoss)."""
    return _feature(fake_feats, [[f.detach() for f in feats] for feats in real_feats])
