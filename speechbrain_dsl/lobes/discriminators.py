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

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "STFTResolutionDiscriminator",
    "MultiResolutionSTFTDiscriminator",
    "WaveformDiscriminator",
    "STFTDiscriminator",
    "SoundStreamDiscriminator",
]


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

    def __init__(
        self,
        n_fft: int = 1024,
        channels: int = 16,
        strides: Sequence[Tuple[int, int]] = ((2, 4), (1, 2), (2, 2), (1, 2)),
        kernel_size: Tuple[int, int] = (3, 9),
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        kt, kf = kernel_size
        norm = nn.utils.parametrizations.weight_norm
        self.layers = nn.ModuleList(
            norm(
                nn.Conv2d(
                    1 if i == 0 else channels, channels, (kt, kf), tuple(stride), (kt // 2, kf // 2)
                )
            )
            for i, stride in enumerate(strides)
        )
        self.post = norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Scores ``x`` [batch, 1, samples]; returns ``(score, features)``."""
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(
                x.squeeze(1).float(),
                self.n_fft,
                self.n_fft // 4,
                window=self.window,
                return_complex=True,
            )
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

    def __init__(
        self,
        n_ffts: Sequence[int] = (512, 1024, 2048),
        channels: int = 16,
        strides: Sequence[Tuple[int, int]] = ((2, 4), (1, 2), (2, 2), (1, 2)),
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            STFTResolutionDiscriminator(n, channels, strides) for n in n_ffts
        )

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[List[torch.Tensor]]]:
        """Scores ``x`` [batch, 1, samples] at every resolution."""
        scores, feats = [], []
        for disc in self.discriminators:
            score, feat = disc(x)
            scores.append(score)
            feats.append(feat)
        return scores, feats


class WaveformDiscriminator(nn.Module):
    """One MelGAN-style waveform discriminator (SoundStream's wave branch).

    Arguments
    ---------
    channels : int
        Width of the first conv; grouped strided convs multiply it by 4 per layer.
    max_channels : int
    downsamples : sequence of int
        Stride of each grouped conv.

    Example
    -------
    >>> disc = WaveformDiscriminator(channels=4, max_channels=16)
    >>> score, feats = disc(torch.randn(2, 1, 1600))
    >>> score.shape, len(feats)
    (torch.Size([2, 1, 7]), 7)
    """

    def __init__(
        self, channels: int = 16, max_channels: int = 256, downsamples: Sequence[int] = (4, 4, 4, 4)
    ) -> None:
        super().__init__()
        convs = [nn.Conv1d(1, channels, 15, padding=7)]
        width = channels
        for stride in downsamples:
            out = min(width * stride, max_channels)
            groups = max(1, width // 4)
            convs.append(
                nn.Conv1d(width, out, stride * 10 + 1, stride, padding=stride * 5, groups=groups)
            )
            width = out
        convs.append(nn.Conv1d(width, width, 5, padding=2))
        self.convs = nn.ModuleList(nn.utils.parametrizations.weight_norm(c) for c in convs)
        self.post = nn.utils.parametrizations.weight_norm(nn.Conv1d(width, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Scores ``x`` [batch, 1, samples]; returns ``(score, features)``."""
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        score = self.post(x)
        feats.append(score)
        return score, feats


class STFTDiscriminator(nn.Module):
    """SoundStream's STFT discriminator on the complex spectrogram (real, imag).

    Arguments
    ---------
    n_fft : int
    hop_length : int
    channels : int
        Width of the first 2D conv; residual units widen it by ``multipliers``.
    multipliers : sequence of int
    strides : sequence of (int, int)
        (time, frequency) stride of each residual unit.

    Example
    -------
    >>> disc = STFTDiscriminator(n_fft=256, hop_length=64, channels=4)
    >>> score, feats = disc(torch.randn(2, 1, 1600))
    >>> score.shape[0], len(feats)
    (2, 8)
    """

    def __init__(
        self,
        n_fft: int = 1024,
        hop_length: int = 256,
        channels: int = 32,
        multipliers: Sequence[int] = (2, 2, 4, 4, 8, 8),
        strides: Sequence[Tuple[int, int]] = ((1, 2), (2, 2), (1, 2), (2, 2), (1, 2), (2, 2)),
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [nn.Conv2d(2, channels, 7, padding=3)]
        width = channels
        for mult, (st, sf) in zip(multipliers, strides):
            out = channels * mult
            layers.append(_STFTResidualUnit(width, out, (st + 2, sf + 2), (st, sf)))
            width = out
        self.layers = nn.ModuleList(layers)
        freq_bins = n_fft // 2 + 1
        for _, sf in strides:
            freq_bins //= sf
        self.post = nn.Conv2d(width, 1, (1, freq_bins))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Scores ``x`` [batch, 1, samples]; returns ``(score, features)``."""
        spec = torch.stft(
            x.squeeze(1),
            self.n_fft,
            self.hop_length,
            window=self.window,
            return_complex=True,
        )
        h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # B,2,T,F
        feats = []
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        score = self.post(F.elu(h))
        feats.append(score)
        return score, feats


class _STFTResidualUnit(nn.Module):
    """3x3 conv then a strided conv, with a strided 1x1 skip (SoundStream Fig. 4)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Tuple[int, int],
        stride: Tuple[int, int],
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        pad = ((kernel[0] - stride[0] + 1) // 2, (kernel[1] - stride[1] + 1) // 2)
        self.down = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=pad)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(F.elu(self.conv(F.elu(x))))
        s = self.skip(x)
        t, f = min(y.shape[2], s.shape[2]), min(y.shape[3], s.shape[3])
        return y[:, :, :t, :f] + s[:, :, :t, :f]


class SoundStreamDiscriminator(nn.Module):
    """STFT discriminator plus multi-scale waveform discriminators.

    Returns lists of scores and features in the format SpeechBrain's HiFi-GAN
    losses take (``HingeGLoss``, ``HingeDLoss``, ``MelganFeatureLoss``).

    Arguments
    ---------
    num_scales : int
        Waveform discriminators at 1x, 2x, 4x, ... downsampling.
    wave_channels, wave_max_channels : int
    stft_n_fft, stft_hop_length, stft_channels : int

    Example
    -------
    >>> disc = SoundStreamDiscriminator(wave_channels=4, wave_max_channels=16,
    ...                                 stft_n_fft=256, stft_hop_length=64, stft_channels=4)
    >>> scores, feats = disc(torch.randn(2, 1, 1600))
    >>> len(scores), len(feats)
    (4, 4)
    """

    def __init__(
        self,
        num_scales: int = 3,
        wave_channels: int = 16,
        wave_max_channels: int = 256,
        stft_n_fft: int = 1024,
        stft_hop_length: int = 256,
        stft_channels: int = 32,
    ) -> None:
        super().__init__()
        self.stft = STFTDiscriminator(stft_n_fft, stft_hop_length, stft_channels)
        self.waves = nn.ModuleList(
            WaveformDiscriminator(wave_channels, wave_max_channels) for _ in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[List[torch.Tensor]]]:
        """Scores ``x`` [batch, 1, samples] with every discriminator."""
        score, feat = self.stft(x)
        scores, feats = [score], [feat]
        for i, disc in enumerate(self.waves):
            if i > 0:
                x = self.pool(x)
            score, feat = disc(x)
            scores.append(score)
            feats.append(feat)
        return scores, feats
