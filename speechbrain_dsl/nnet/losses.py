"""Codec reconstruction losses.

The DSL's own loss (Eqs. 2-5) lives with the layer in :mod:`speechbrain_dsl.nnet.dsl`.
Adversarial and feature-matching terms reuse SpeechBrain's HiFi-GAN losses
(``speechbrain.lobes.models.HifiGAN.HingeGLoss``, ``HingeDLoss``,
``MelganFeatureLoss``); :func:`generator_adversarial_loss` and
:func:`discriminator_adversarial_loss` average them over discriminators.
"""

import torch
import torch.nn.functional as F
import torchaudio
from speechbrain.lobes.models.HifiGAN import HingeDLoss, HingeGLoss, MelganFeatureLoss
from torch import nn


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
        Mel bands, capped at ``n_fft // 8`` so small windows have no empty bands.
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

    def __init__(self, sample_rate=16000, n_ffts=(64, 128, 256, 512, 1024, 2048), n_mels=64, eps=1e-5):
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

    def forward(self, wav_hat, wav):
        """Loss between ``wav_hat`` and ``wav``, both ``[B, 1, S]`` or ``[B, S]``."""
        total = 0.0
        for n, mel in zip(self.n_ffts, self.mels):
            a, b = mel(wav_hat), mel(wav)
            total = total + F.l1_loss(a, b)
            log_diff = torch.log(a + self.eps) - torch.log(b + self.eps)
            total = total + (n / 2) ** 0.5 * log_diff.square().mean(dim=-2).sqrt().mean()
        return total / len(self.n_ffts)


_hinge_g, _hinge_d, _feature = HingeGLoss(), HingeDLoss(), MelganFeatureLoss()


def generator_adversarial_loss(fake_scores):
    """Hinge generator loss averaged over discriminators (SpeechBrain's HingeGLoss)."""
    return sum(_hinge_g(s) for s in fake_scores) / len(fake_scores)


def discriminator_adversarial_loss(fake_scores, real_scores):
    """Hinge discriminator loss averaged over discriminators (SpeechBrain's HingeDLoss)."""
    return sum(_hinge_d(f, r)[0] for f, r in zip(fake_scores, real_scores)) / len(fake_scores)


def feature_matching_loss(fake_feats, real_feats):
    """L1 between discriminator features of fake and real audio (MelganFeatureLoss)."""
    return _feature(fake_feats, [[f.detach() for f in feats] for feats in real_feats])
