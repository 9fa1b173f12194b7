"""Causal convolution building blocks with receptive-field bookkeeping.

Every module here is *causal*: output frame ``t`` depends only on input samples
up to the end of its own hop, ``(t + 1) * stride - 1``. Each module exposes two
integers the Dynamic Switch Layer needs to route segments with the right amount
of left context:

``hop``
    input samples per output frame (the total stride).
``lookback``
    how many input samples before the last sample of a frame that frame
    depends on (receptive field minus one).

Layout: ``[batch, channels, time]`` everywhere in this file.
"""

import torch
import torch.nn.functional as F
from torch import nn


def compose_receptive_field(layers):
    """Returns ``(hop, lookback)`` of causal layers applied in sequence.

    Arguments
    ---------
    layers : iterable of nn.Module
        Each must expose ``hop`` and ``lookback`` attributes.

    Returns
    -------
    hop : int
    lookback : int

    Example
    -------
    >>> convs = [CausalConv1d(1, 1, 3), CausalConv1d(1, 1, 4, stride=2)]
    >>> compose_receptive_field(convs)
    (2, 5)
    """
    hop, lookback = 1, 0
    for layer in layers:
        lookback += layer.lookback * hop
        hop *= layer.hop
    return hop, lookback


class CausalConv1d(nn.Conv1d):
    """A 1D convolution padded on the left only, so it never sees the future.

    Output frame ``t`` sees input samples ``[t*stride + stride - k_eff, t*stride +
    stride - 1]`` (zeros before the start). When the length is not a multiple of
    the stride, zeros are appended on the right (only the last, partial frame sees
    them). Output length is ``ceil(L / stride)``.

    Arguments
    ---------
    in_channels : int
    out_channels : int
    kernel_size : int
    stride : int
    dilation : int
    bias : bool
    groups : int
        ``groups = in_channels`` makes it depthwise.

    Example
    -------
    >>> conv = CausalConv1d(2, 4, kernel_size=4, stride=2)
    >>> conv(torch.randn(3, 2, 10)).shape
    torch.Size([3, 4, 5])
    """

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=True, groups=1
    ):
        effective_kernel = (kernel_size - 1) * dilation + 1
        if effective_kernel < stride:
            raise ValueError(
                f"CausalConv1d: kernel_size={kernel_size} (dilation {dilation}) must "
                f"cover the stride={stride}, or input samples would be skipped"
            )
        # The conv pads both sides by the causal amount and the extra outputs at
        # the end are dropped: on CPU this is about 2x faster than F.pad + conv.
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            dilation=dilation,
            bias=bias,
            padding=effective_kernel - stride,
            groups=groups,
        )
        self.hop = stride
        self.lookback = effective_kernel - 1
        self.pointwise = kernel_size == 1 and stride == 1 and groups == 1

    def forward(self, x):
        """Convolves ``x`` [batch, channels, time] causally."""
        if self.pointwise:
            # A 1x1 conv is a batched matmul, ~8x faster than PyTorch's CPU conv.
            batch, _, time = x.shape
            weight = self.weight[..., 0].expand(batch, -1, -1)
            if self.bias is None:
                return torch.bmm(weight, x)
            bias = self.bias[None, :, None].expand(batch, -1, time)
            return torch.baddbmm(bias, weight, x)
        if x.shape[-1] % self.hop:
            x = F.pad(x, (0, -x.shape[-1] % self.hop))
        return super().forward(x)[..., : x.shape[-1] // self.hop]


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed convolution that upsamples by ``stride`` without looking ahead.

    The extra ``kernel_size - stride`` output samples produced at the end are
    trimmed, so output length is exactly ``L * stride``.

    Example
    -------
    >>> up = CausalConvTranspose1d(4, 2, kernel_size=8, stride=4)
    >>> up(torch.randn(1, 4, 5)).shape
    torch.Size([1, 2, 20])
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, bias=bias)
        if kernel_size < stride:
            raise ValueError(
                f"CausalConvTranspose1d: kernel_size={kernel_size} must be >= "
                f"stride={stride}"
            )
        self.trim = kernel_size - stride

    def forward(self, x):
        """Upsamples ``x`` [batch, channels, time] causally."""
        y = super().forward(x)
        return y[..., : y.shape[-1] - self.trim] if self.trim else y


class ResidualUnit(nn.Module):
    """SoundStream residual unit: ``x + Conv1x1(ELU(DilatedConv(ELU(x))))``.

    Arguments
    ---------
    channels : int
    kernel_size : int
    dilation : int

    Example
    -------
    >>> unit = ResidualUnit(4, kernel_size=3, dilation=3)
    >>> unit(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> unit.lookback
    6
    """

    def __init__(self, channels, kernel_size=7, dilation=1):
        super().__init__()
        self.dilated = CausalConv1d(channels, channels, kernel_size, dilation=dilation)
        self.pointwise = CausalConv1d(channels, channels, 1)
        self.hop = 1
        self.lookback = self.dilated.lookback

    def forward(self, x):
        """Applies the unit to ``x`` [batch, channels, time]."""
        return x + self.pointwise(F.elu(self.dilated(F.elu(x))))


class EncoderBlock(nn.Module):
    """Residual units at ``in_channels`` followed by a strided downsampling conv.

    Arguments
    ---------
    in_channels : int
    out_channels : int
    stride : int
        Downsampling factor.
    dilations : sequence of int
        One residual unit per dilation (SoundStream uses 1, 3, 9).
    kernel_size : int
        Kernel of the dilated convolutions in the residual units.
    stride_kernel_multiplier : int
        The downsampling conv has kernel ``stride_kernel_multiplier * stride``
        (SoundStream uses 2).

    Example
    -------
    >>> block = EncoderBlock(4, 8, stride=2, dilations=(1, 3), kernel_size=3)
    >>> block(torch.randn(1, 4, 20)).shape
    torch.Size([1, 8, 10])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        stride,
        dilations=(1, 3, 9),
        kernel_size=7,
        stride_kernel_multiplier=2,
    ):
        super().__init__()
        self.units = nn.Sequential(
            *[ResidualUnit(in_channels, kernel_size, d) for d in dilations]
        )
        self.downsample = CausalConv1d(
            in_channels, out_channels, stride_kernel_multiplier * stride, stride=stride
        )
        self.hop, self.lookback = compose_receptive_field(
            [*self.units, self.downsample]
        )

    def forward(self, x):
        """Applies the block to ``x`` [batch, in_channels, time]."""
        return self.downsample(F.elu(self.units(x)))


class DecoderBlock(nn.Module):
    """A causal transposed conv upsampling by ``stride``, then residual units.

    Example
    -------
    >>> block = DecoderBlock(8, 4, stride=2, dilations=(1,), kernel_size=3)
    >>> block(torch.randn(1, 8, 10)).shape
    torch.Size([1, 4, 20])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        stride,
        dilations=(1, 3, 9),
        kernel_size=7,
        stride_kernel_multiplier=2,
    ):
        super().__init__()
        self.upsample = CausalConvTranspose1d(
            in_channels, out_channels, stride_kernel_multiplier * stride, stride
        )
        self.units = nn.Sequential(
            *[ResidualUnit(out_channels, kernel_size, d) for d in dilations]
        )

    def forward(self, x):
        """Applies the block to ``x`` [batch, in_channels, time]."""
        return self.units(self.upsample(F.elu(x)))


class ELUConv(nn.Module):
    """``CausalConv1d(ELU(x))``: SoundStream's last encoder layer.

    Example
    -------
    >>> ELUConv(8, 16, kernel_size=3)(torch.randn(1, 8, 5)).shape
    torch.Size([1, 16, 5])
    """

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = CausalConv1d(in_channels, out_channels, kernel_size)
        self.hop = 1
        self.lookback = self.conv.lookback

    def forward(self, x):
        """Applies ELU then the conv to ``x`` [batch, channels, time]."""
        return self.conv(F.elu(x))


class CausalStack(nn.Sequential):
    """An ``nn.Sequential`` of causal layers that knows its hop and lookback.

    Example
    -------
    >>> stack = CausalStack(CausalConv1d(1, 2, 7), EncoderBlock(2, 4, stride=2))
    >>> stack.hop, stack.lookback
    (2, 87)
    """

    @property
    def hop(self):
        """Input samples per output frame."""
        return compose_receptive_field(self)[0]

    @property
    def lookback(self):
        """Input samples before a frame's last sample that the frame depends on."""
        return compose_receptive_field(self)[1]

