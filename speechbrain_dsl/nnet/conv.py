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

import contextlib
from typing import Any, Iterable, Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "export_layout",
    "in_export_layout",
    "compose_receptive_field",
    "CausalConv1d",
    "CausalConvTranspose1d",
    "CausalStack",
]

# Set by export_layout() while a graph is traced: convs run as one zero Pad and an
# unpadded conv, which onnxruntime fuses (the eager layout's slice is a copy there).
_export_layout = False


@contextlib.contextmanager
def export_layout() -> Iterator[None]:
    """Runs every :class:`CausalConv1d` (and :func:`~speechbrain_dsl.nnet.activations.elu`)
    in its graph-friendly form inside the block.

    Eager PyTorch pads both sides and slices the extra outputs off (faster there);
    in an ONNX graph that slice copies every activation, while a zero ``Pad`` before
    an unpadded conv fuses into the ``Conv``. Both give the same outputs.

    Example
    -------
    >>> conv, x = CausalConv1d(2, 3, 4, stride=2), torch.randn(1, 2, 9)
    >>> with export_layout():
    ...     graph_friendly = conv(x)
    >>> torch.allclose(graph_friendly, conv(x), atol=1e-6)
    True
    """
    global _export_layout
    previous, _export_layout = _export_layout, True
    try:
        yield
    finally:
        _export_layout = previous


def in_export_layout() -> bool:
    """True inside :func:`export_layout` (layers that have a graph-friendly form use it)."""
    return _export_layout


def compose_receptive_field(layers: Iterable[nn.Module]) -> Tuple[int, int]:
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
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        groups: int = 1,
    ) -> None:
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolves ``x`` [batch, channels, time] causally."""
        if _export_layout:
            return self.padded_forward(x)
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

    def padded_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same convolution as one zero pad and an unpadded conv (see :func:`export_layout`)."""
        left = self.lookback + 1 - self.hop
        right = -x.shape[-1] % self.hop
        return F.conv1d(
            F.pad(x, (left, right)),
            self.weight,
            self.bias,
            self.stride,
            0,
            self.dilation,
            self.groups,
        )


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

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias=bias)
        if kernel_size < stride:
            raise ValueError(
                f"CausalConvTranspose1d: kernel_size={kernel_size} must be >= stride={stride}"
            )
        self.trim = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsamples ``x`` [batch, channels, time] causally."""
        y = super().forward(x)
        return y[..., : y.shape[-1] - self.trim] if self.trim else y


class CausalStack(nn.Sequential):
    """An ``nn.Sequential`` of causal layers that knows its hop and lookback.

    Example
    -------
    >>> stack = CausalStack(CausalConv1d(1, 2, 7), CausalConv1d(2, 4, 4, stride=2))
    >>> stack.hop, stack.lookback
    (2, 9)
    """

    @property
    def hop(self) -> int:
        """Input samples per output frame."""
        return compose_receptive_field(self)[0]

    @property
    def lookback(self) -> int:
        """Input samples before a frame's last sample that the frame depends on."""
        return compose_receptive_field(self)[1]


def __getattr__(name: str) -> Any:
    # names that moved in the 0.2 layout keep importing from here for one release
    from speechbrain_dsl._moved import moved_attribute

    return moved_attribute(__name__, name)
