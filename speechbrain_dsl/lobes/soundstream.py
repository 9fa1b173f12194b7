"""SoundStream (Zeghidour et al., 2021): its blocks, causal encoder and decoder.

The encoder is a stack of *stages*: a first conv, one :class:`EncoderBlock` per
stride, and a last conv to the embedding size. :meth:`SoundStreamEncoder.split`
cuts it after a block into a *base* and a *tail* that share its parameters; the
Dynamic Switch Layer routes between that tail and a lightweight one. SoundStream's
discriminators are in :mod:`speechbrain_dsl.lobes.discriminators`.

Layouts: waveforms ``[batch, 1, samples]``, features ``[batch, channels, frames]``.
"""

from typing import Any, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.nnet.activations import elu
from speechbrain_dsl.nnet.conv import (
    CausalConv1d,
    CausalConvTranspose1d,
    CausalStack,
    compose_receptive_field,
)
from speechbrain_dsl.nnet.plan_runner import BLOCK_FRAMES, exporting, run_plan
from speechbrain_dsl.nnet.routing import Window, context_frames, pack_windows

__all__ = [
    "ResidualUnit",
    "EncoderBlock",
    "DecoderBlock",
    "ELUConv",
    "SoundStreamEncoder",
    "SoundStreamDecoder",
]


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

    def __init__(self, channels: int, kernel_size: int = 7, dilation: int = 1) -> None:
        super().__init__()
        self.dilated = CausalConv1d(channels, channels, kernel_size, dilation=dilation)
        self.pointwise = CausalConv1d(channels, channels, 1)
        self.hop = 1
        self.lookback = self.dilated.lookback

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the unit to ``x`` [batch, channels, time]."""
        return x + self.pointwise(elu(self.dilated(elu(x))))


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
        in_channels: int,
        out_channels: int,
        stride: int,
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        stride_kernel_multiplier: int = 2,
    ) -> None:
        super().__init__()
        self.units = nn.Sequential(*[ResidualUnit(in_channels, kernel_size, d) for d in dilations])
        self.downsample = CausalConv1d(
            in_channels, out_channels, stride_kernel_multiplier * stride, stride=stride
        )
        self.hop, self.lookback = compose_receptive_field([*self.units, self.downsample])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the block to ``x`` [batch, in_channels, time]."""
        return self.downsample(elu(self.units(x)))


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
        in_channels: int,
        out_channels: int,
        stride: int,
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        stride_kernel_multiplier: int = 2,
    ) -> None:
        super().__init__()
        self.upsample = CausalConvTranspose1d(
            in_channels, out_channels, stride_kernel_multiplier * stride, stride
        )
        self.units = nn.Sequential(*[ResidualUnit(out_channels, kernel_size, d) for d in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the block to ``x`` [batch, in_channels, time]."""
        return self.units(self.upsample(elu(x)))


class ELUConv(nn.Module):
    """``CausalConv1d(ELU(x))``: SoundStream's last encoder layer.

    Example
    -------
    >>> ELUConv(8, 16, kernel_size=3)(torch.randn(1, 8, 5)).shape
    torch.Size([1, 16, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(in_channels, out_channels, kernel_size)
        self.hop = 1
        self.lookback = self.conv.lookback

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies ELU then the conv to ``x`` [batch, channels, time]."""
        return self.conv(elu(x))


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
    >>> x = torch.randn(2, 1, 8000)  # in eval mode, blocks of 300 frames give the same output
    >>> enc.block_frames = 300
    >>> torch.allclose(enc.eval()(x), enc.train()(x), atol=1e-5)
    True
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 8,
        multipliers: Sequence[int] = (2, 4, 8, 8),
        strides: Sequence[int] = (2, 4, 5, 8),
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        first_kernel_size: int = 7,
        last_kernel_size: int = 3,
        emb_dim: int = 64,
        stride_kernel_multiplier: int = 2,
        first_stride: int = 1,
    ) -> None:
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
        self.block_frames = BLOCK_FRAMES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encodes ``x`` [batch, in_channels, samples] into [batch, emb_dim, frames].

        The input is zero-padded on the right to a multiple of the hop, so frames
        are ``ceil(samples / hop)``. In eval mode the batch runs in blocks of at
        most ``block_frames`` frames, each after its receptive field of context
        (the same output, ~2-3x faster on CPU for long or batched audio:
        ``benchmarks/encoder_blocks.py``).
        """
        x = F.pad(x, (0, -x.shape[-1] % self.hop))
        if self.training or not self.block_frames or exporting():
            return self.stages(x)
        batch, frames = x.shape[0], x.shape[-1] // self.hop
        if batch * frames <= self.block_frames:
            return self.stages(x)
        context = context_frames(self.lookback, self.hop)
        windows = [Window(item, 0, frames, 0) for item in range(batch)]
        plan = pack_windows(windows, context, frames, batch, max_row_frames=self.block_frames)
        return run_plan(self.stages, x, plan, block_frames=self.block_frames)

    def split(self, after_block: int) -> Tuple[CausalStack, CausalStack]:
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

    def output_channels(self, after_block: int) -> int:
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
        emb_dim: int = 64,
        channels: int = 16,
        multipliers: Sequence[int] = (2, 4, 8, 8),
        strides: Sequence[int] = (2, 4, 5, 8),
        dilations: Sequence[int] = (1, 3, 9),
        kernel_size: int = 7,
        first_kernel_size: int = 7,
        last_kernel_size: int = 7,
        stride_kernel_multiplier: int = 2,
        out_channels: int = 1,
    ) -> None:
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

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """Decodes ``emb`` [batch, emb_dim, frames] into [batch, 1, frames * hop]."""
        return self.layers(emb)


def __getattr__(name: str) -> Any:
    # names that moved in the 0.2 layout keep importing from here for one release
    from speechbrain_dsl._moved import moved_attribute

    return moved_attribute(__name__, name)
