"""Frame-rate discriminators: cheap enough to train adversarially on a CPU from early on.

SoundStream's discriminators (:mod:`speechbrain_dsl.lobes.soundstream`) run a
waveform network at the full 16 kHz rate and a wide 2D network on the complex
STFT; on one CPU thread they made a GAN step 6x a generator-only step. The
multi-resolution STFT discriminator here (after UnivNet's and Vocos's MRD) looks
at log-magnitude spectrograms at a few resolutions with narrow 2D convolutions
that halve the frequency axis at every layer, so each resolution costs tens of
MMAC per second of audio.

Layout: waveforms ``[batch, 1, samples]``; each discriminator returns
``(scores, features)`` lists in the format SpeechBrain's HiFi-GAN losses take.
"""

import torch
import torch.nn.functional as F
from torch import nn


class STFTResolutionDiscriminator(nn.Module):
    """A 2D conv stack on the log-magnitude STFT of one resolution.

    Arguments
    ---------
    n_fft : int
        Window size; the hop is a quarter of it.
    channels : int
    strides : sequence of (int, int)
        (time, frequency) stride of each conv layer: the first layer maps the
        spectrogram to ``channels``, the others keep the width. Early strides
        decide the cost: most of it is in the widest layers.
    kernel_size : (int, int)
        (time, frequency) kernel of every layer.

    Example
    -------
    >>> disc = STFTResolutionDiscriminator(n_fft=128, channels=4)
    >>> score, feats = disc(torch.randn(2, 1, 1600))
    >>> score.shape[:2], len(feats)
    (torch.Size([2, 1]), 5)
    """

    def __init__(self, n_fft=1024, channels=16, strides=((2, 4), (1, 2), (2, 2), (1, 2)),
                 kernel_size=(3, 9)):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        kt, kf = kernel_size
        norm = nn.utils.parametrizations.weight_norm
        self.layers = nn.ModuleList(
            norm(nn.Conv2d(1 if i == 0 else channels, channels, (kt, kf), tuple(stride),
                           (kt // 2, kf // 2)))
            for i, stride in enumerate(strides)
        )
        self.post = norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, x):
        """Scores ``x`` [batch, 1, samples]; returns ``(score, features)``."""
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(x.squeeze(1).float(), self.n_fft, self.n_fft // 4,
                              window=self.window, return_complex=True)
            h = torch.log(spec.abs() + 1e-5)[:, None].transpose(2, 3)  # B, 1, T, F
        feats = []
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.1)
            feats.append(h)
        score = self.post(h)
        feats.append(score)
        return score, feats


class MultiResolutionSTFTDiscriminator(nn.Module):
    """One :class:`STFTResolutionDiscriminator` per window size.

    Arguments
    ---------
    n_ffts : sequence of int
    channels : int
    strides : sequence of (int, int)
        See :class:`STFTResolutionDiscriminator`.

    Example
    -------
    >>> disc = MultiResolutionSTFTDiscriminator(n_ffts=(128, 256), channels=4)
    >>> scores, feats = disc(torch.randn(2, 1, 1600))
    >>> len(scores), len(feats)
    (2, 2)
    """

    def __init__(self, n_ffts=(512, 1024, 2048), channels=16,
                 strides=((2, 4), (1, 2), (2, 2), (1, 2))):
        super().__init__()
        self.discriminators = nn.ModuleList(
            STFTResolutionDiscriminator(n, channels, strides) for n in n_ffts
        )

    def forward(self, x):
        """Scores ``x`` [batch, 1, samples] at every resolution."""
        scores, feats = [], []
        for disc in self.discriminators:
            score, feat = disc(x)
            scores.append(score)
            feats.append(feat)
        return scores, feats
