"""SoundStream (Zeghidour et al., 2021): causal encoder, decoder and discriminators.

The encoder is a stack of *stages*: a first conv, one :class:`EncoderBlock` per
stride, and a last conv to the embedding size. :meth:`SoundStreamEncoder.split`
cuts it after a block into a *base* and a *tail* that share its parameters; the
Dynamic Switch Layer routes between that tail and a lightweight one.

Layouts: waveforms ``[batch, 1, samples]``, features ``[batch, channels, frames]``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.nnet.conv import (
    CausalConv1d,
    CausalStack,
    DecoderBlock,
    ELUConv,
    EncoderBlock,
    compose_receptive_field,
)


class SoundStreamEncoder(nn.Module):
    """Causal SoundStream encoder.

    Block ``i`` maps ``channels * multipliers[i-1]`` to ``channels * multipliers[i]``
    channels (with ``multipliers[-1] = 1`` for the first block) and downsamples by
    ``strides[i]``. The same class builds a lightweight tail: give it the base's
    output channels as ``in_channels`` and fewer ``channels``.

    Arguments
    ---------
    in_channels : int
        1 for a waveform, or the channels of the features it continues from.
    channels : int
        Width of the first conv; blocks scale it by ``multipliers``.
    multipliers : sequence of int
        Channel multiplier of each block's output.
    strides : sequence of int
        Downsampling of each block; the product is the hop (320 = 50 Hz at 16 kHz).
    dilations : sequence of int
        Dilations of the residual units in every block (one unit per entry).
    kernel_size : int
        Kernel of the residual units' dilated convs.
    first_kernel_size : int
    first_stride : int
        Stride of the first conv (1 in SoundStream). A lightweight tail can
        downsample at once, so none of its layers run at the base's full rate.
    last_kernel_size : int
    emb_dim : int
        Output channels (the embedding size).
    stride_kernel_multiplier : int
        Downsampling convs use kernel ``stride_kernel_multiplier * stride``.

    Example
    -------
    >>> enc = SoundStreamEncoder(channels=4, multipliers=(2, 4), strides=(2, 4), emb_dim=8)
    >>> enc(torch.randn(3, 1, 800)).shape
    torch.Size([3, 8, 100])
    >>> enc.hop
    8
    """

    def __init__(
        self,
        in_channels=1,
        channels=8,
        multipliers=(2, 4, 8, 8),
        strides=(2, 4, 5, 8),
        dilations=(1, 3, 9),
        kernel_size=7,
        first_kernel_size=7,
        last_kernel_size=3,
        emb_dim=64,
        stride_kernel_multiplier=2,
        first_stride=1,
    ):
        super().__init__()
        if len(multipliers) != len(strides):
            raise ValueError(
                f"SoundStreamEncoder: multipliers {tuple(multipliers)} and strides "
                f"{tuple(strides)} must have the same length (one per block)"
            )
        widths = [channels] + [channels * m for m in multipliers]
        stages = [CausalConv1d(in_channels, channels, first_kernel_size, first_stride)]
        for i, stride in enumerate(strides):
            stages.append(
                EncoderBlock(
                    widths[i],
                    widths[i + 1],
                    stride,
                    dilations,
                    kernel_size,
                    stride_kernel_multiplier,
                )
            )
        stages.append(ELUConv(widths[-1], emb_dim, last_kernel_size))
        self.stages = CausalStack(*stages)
        self.num_blocks = len(strides)
        self.emb_dim = emb_dim
        self.hop, self.lookback = compose_receptive_field(self.stages)

    def forward(self, x):
        """Encodes ``x`` [batch, in_channels, samples] into [batch, emb_dim, frames].

        The input is zero-padded on the right to a multiple of the hop, so frames
        are ``ceil(samples / hop)``.
        """
        x = F.pad(x, (0, -x.shape[-1] % self.hop))
        return self.stages(x)

    def split(self, after_block):
        """Cuts the encoder after block ``after_block`` (1-based).

        Returns
        -------
        base : CausalStack
            First conv and blocks ``1..after_block``.
        tail : CausalStack
            The remaining blocks and the last conv. Parameters are shared with
            this encoder, so ``tail(base(x)) == self(x)``.

        Example
        -------
        >>> enc = SoundStreamEncoder(channels=2, multipliers=(2, 4), strides=(2, 2), emb_dim=4)
        >>> base, tail = enc.split(1)
        >>> x = torch.randn(1, 1, 16)
        >>> torch.allclose(tail(base(x)), enc(x))
        True
        """
        if not 0 <= after_block < self.num_blocks:
            raise ValueError(
                f"split: after_block must be in [0, {self.num_blocks - 1}] so both "
                f"base and tail are non-empty, got {after_block}"
            )
        cut = 1 + after_block
        return CausalStack(*self.stages[:cut]), CausalStack(*self.stages[cut:])

    def output_channels(self, after_block):
        """Channels of the features after block ``after_block`` (0 = first conv)."""
        stage = self.stages[after_block]
        conv = stage if isinstance(stage, CausalConv1d) else stage.downsample
        return conv.out_channels


class SoundStreamDecoder(nn.Module):
    """Causal SoundStream decoder, the mirror of :class:`SoundStreamEncoder`.

    Arguments
    ---------
    emb_dim : int
    channels : int
        Width of the last block; earlier blocks are ``channels * multipliers``.
    multipliers : sequence of int
        Multipliers as given to the encoder (the decoder walks them backwards).
    strides : sequence of int
        Strides as given to the encoder (the decoder walks them backwards).
    dilations, kernel_size, first_kernel_size, last_kernel_size,
    stride_kernel_multiplier : see :class:`SoundStreamEncoder`.
    out_channels : int

    Example
    -------
    >>> dec = SoundStreamDecoder(emb_dim=8, channels=4, multipliers=(2, 4), strides=(2, 4))
    >>> dec(torch.randn(3, 8, 100)).shape
    torch.Size([3, 1, 800])
    """

    def __init__(
        self,
        emb_dim=64,
        channels=16,
        multipliers=(2, 4, 8, 8),
        strides=(2, 4, 5, 8),
        dilations=(1, 3, 9),
        kernel_size=7,
        first_kernel_size=7,
        last_kernel_size=7,
        stride_kernel_multiplier=2,
        out_channels=1,
    ):
        super().__init__()
        widths = [channels] + [channels * m for m in multipliers]
        layers = [CausalConv1d(emb_dim, widths[-1], first_kernel_size)]
        for i in reversed(range(len(strides))):
            layers.append(
                DecoderBlock(
                    widths[i + 1],
                    widths[i],
                    strides[i],
                    dilations,
                    kernel_size,
                    stride_kernel_multiplier,
                )
            )
        layers.append(ELUConv(channels, out_channels, last_kernel_size))
        self.layers = nn.Sequential(*layers)

    def forward(self, emb):
        """Decodes ``emb`` [batch, emb_dim, frames] into [batch, 1, frames * hop]."""
        return self.layers(emb)


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

    def __init__(self, channels=16, max_channels=256, downsamples=(4, 4, 4, 4)):
        super().__init__()
        convs = [nn.Conv1d(1, channels, 15, padding=7)]
        width = channels
        for stride in downsamples:
            out = min(width * stride, max_channels)
            groups = max(1, width // 4)
            convs.append(
                nn.Conv1d(
                    width, out, stride * 10 + 1, stride, padding=stride * 5, groups=groups
                )
            )
            width = out
        convs.append(nn.Conv1d(width, width, 5, padding=2))
        self.convs = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(c) for c in convs
        )
        self.post = nn.utils.parametrizations.weight_norm(
            nn.Conv1d(width, 1, 3, padding=1)
        )

    def forward(self, x):
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
        n_fft=1024,
        hop_length=256,
        channels=32,
        multipliers=(2, 2, 4, 4, 8, 8),
        strides=((1, 2), (2, 2), (1, 2), (2, 2), (1, 2), (2, 2)),
    ):
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

    def forward(self, x):
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

    def __init__(self, in_channels, out_channels, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        pad = ((kernel[0] - stride[0] + 1) // 2, (kernel[1] - stride[1] + 1) // 2)
        self.down = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=pad)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride)

    def forward(self, x):
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
        num_scales=3,
        wave_channels=16,
        wave_max_channels=256,
        stft_n_fft=1024,
        stft_hop_length=256,
        stft_channels=32,
    ):
        super().__init__()
        self.stft = STFTDiscriminator(stft_n_fft, stft_hop_length, stft_channels)
        self.waves = nn.ModuleList(
            WaveformDiscriminator(wave_channels, wave_max_channels)
            for _ in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=1, count_include_pad=False)

    def forward(self, x):
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
