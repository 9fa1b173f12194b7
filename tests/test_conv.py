"""Causal convolution blocks: output lengths, causality and declared receptive fields."""

import math

import pytest
import torch
from conftest import make_encoder, make_light_tail
from torch import nn

from speechbrain_dsl.lobes.soundstream import EncoderBlock, ResidualUnit, SoundStreamEncoder
from speechbrain_dsl.nnet.conv import (
    CausalConv1d,
    CausalConvTranspose1d,
    CausalStack,
    compose_receptive_field,
)


def dependency_support(module, in_channels, samples, frame):
    """Input sample indices that output ``frame`` has a nonzero gradient for."""
    module = module.double()
    x = torch.randn(1, in_channels, samples, dtype=torch.float64, requires_grad=True)
    y = module(x)
    proj = torch.randn(y.shape[1], dtype=torch.float64)
    (grad,) = torch.autograd.grad((y[0, :, frame] * proj).sum(), x)
    return torch.nonzero(grad[0].abs().sum(0) > 0).flatten().tolist()


@pytest.mark.parametrize(
    "kernel, stride, dilation", [(3, 1, 1), (4, 2, 1), (3, 1, 3), (8, 4, 1), (4, 4, 1)]
)
def test_causal_conv_frame_depends_exactly_on_declared_window(kernel, stride, dilation):
    conv = CausalConv1d(2, 3, kernel, stride=stride, dilation=dilation)
    samples = 40
    for frame in (0, 3, samples // stride - 1):
        support = dependency_support(conv, 2, samples, frame)
        last = (frame + 1) * stride - 1
        first = max(0, last - conv.lookback)
        # Only taps that land on real samples (not on the zero padding) count; with
        # dilation the window is sparse.
        expected = [last - j * dilation for j in range(kernel) if last - j * dilation >= 0]
        assert support == sorted(expected)
        assert min(support) >= first


@pytest.mark.parametrize("length", [1, 7, 8, 9, 33])
def test_causal_conv_output_length_is_ceil_of_length_over_stride(length):
    conv = CausalConv1d(1, 2, 8, stride=4)
    assert conv(torch.randn(2, 1, length)).shape == (2, 2, math.ceil(length / 4))


def test_causal_conv_pointwise_fast_path_equals_plain_conv():
    conv = CausalConv1d(5, 3, 1)
    x = torch.randn(4, 5, 17)
    expected = torch.nn.functional.conv1d(x, conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)
    no_bias = CausalConv1d(5, 3, 1, bias=False)
    torch.testing.assert_close(no_bias(x), torch.nn.functional.conv1d(x, no_bias.weight))


def test_causal_conv_rejects_kernel_smaller_than_stride():
    with pytest.raises(ValueError, match="must cover the stride"):
        CausalConv1d(1, 1, kernel_size=2, stride=4)


def test_transposed_conv_upsamples_exactly_and_never_looks_ahead():
    up = CausalConvTranspose1d(3, 2, kernel_size=8, stride=4).double()
    x = torch.randn(1, 3, 6, dtype=torch.float64, requires_grad=True)
    y = up(x)
    assert y.shape == (1, 2, 24)
    for n in range(24):
        (grad,) = torch.autograd.grad(y[0, :, n].sum(), x, retain_graph=True)
        frames = torch.nonzero(grad[0].abs().sum(0) > 0).flatten().tolist()
        assert max(frames) == n // 4


def test_transposed_conv_rejects_kernel_smaller_than_stride():
    with pytest.raises(ValueError, match="kernel_size=2 must be >= stride=4"):
        CausalConvTranspose1d(1, 1, kernel_size=2, stride=4)


def test_compose_receptive_field_multiplies_hops_and_scales_lookbacks():
    layers = [CausalConv1d(1, 1, 3), CausalConv1d(1, 1, 4, stride=2), CausalConv1d(1, 1, 3)]
    # lookbacks 2, 3, 2 at input hops 1, 1, 2 -> 2 + 3 + 2 * 2 = 9
    assert compose_receptive_field(layers) == (2, 9)


@pytest.mark.parametrize(
    "build, in_channels",
    [
        (lambda: ResidualUnit(3, kernel_size=3, dilation=3), 3),
        (lambda: EncoderBlock(2, 4, stride=2, dilations=(1, 3), kernel_size=3), 2),
        (lambda: CausalStack(CausalConv1d(1, 2, 7), EncoderBlock(2, 4, stride=4)), 1),
        (lambda: make_encoder().stages, 1),
        (lambda: make_encoder().split(1)[1], 8),
        (make_light_tail, 8),
    ],
    ids=["residual_unit", "encoder_block", "stack", "encoder", "full_tail", "light_tail"],
)
def test_declared_hop_and_lookback_match_the_measured_receptive_field(build, in_channels):
    """The DSL's exact routing relies on ``lookback`` being the true receptive field."""
    module = build()
    hop, lookback = module.hop, module.lookback
    frames = 3 + (lookback + hop) // hop
    samples = frames * hop
    frame = frames - 1  # late enough that its whole receptive field is inside x
    support = dependency_support(module, in_channels, samples, frame)
    last = (frame + 1) * hop - 1
    assert max(support) == last, "frame depends on samples after its own hop"
    assert min(support) == last - lookback, "declared lookback is not the true one"


def test_soundstream_encoder_rejects_mismatched_multipliers_and_strides():
    with pytest.raises(ValueError, match="same length"):
        SoundStreamEncoder(multipliers=(2, 4), strides=(2, 4, 5))


def test_split_rejects_cuts_that_leave_an_empty_part():
    enc = make_encoder()
    with pytest.raises(ValueError, match="after_block must be in"):
        enc.split(3)
    with pytest.raises(ValueError, match="after_block must be in"):
        enc.split(-1)


def test_split_tail_of_base_equals_encoder_and_shares_parameters():
    enc = make_encoder()
    x = torch.randn(2, 1, 16 * 7)
    for after in range(enc.num_blocks):
        base, tail = enc.split(after)
        torch.testing.assert_close(tail(base(x)), enc(x))
        ids = {id(p) for p in enc.parameters()}
        assert {id(p) for p in base.parameters()} | {id(p) for p in tail.parameters()} == ids
    assert isinstance(enc.split(1)[0][0], nn.Conv1d)
