"""Dynamic Switch Layer: routing, causality, losses, switch pooling, gated compression."""

import math

import pytest
import torch
from conftest import (
    TINY_BASE_CHANNELS,
    TINY_HOP,
    load_hparams,
    make_dsl_encoder,
    make_encoder,
    make_light_tail,
)
from torch import nn

from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
from speechbrain_dsl.nnet.dsl import (
    DSLLoss,
    DSLOutput,
    DynamicSwitchLayer,
    Mask,
    Switch,
)
from speechbrain_dsl.nnet.gated_compression import (
    GatedCompression,
    GatedCompressionLoss,
    GatedNetwork,
)
from speechbrain_dsl.nnet.segments import length_mask, segment_mean

TAIL_HOP = 8  # base steps per output frame in the tiny model


def make_layer(segment_frames=3, mode="mixed", threshold=0.5, distance="mae"):
    """A tiny DynamicSwitchLayer on base features [B, 8, T] (T a multiple of 8)."""
    _, full_tail = make_encoder().split(1)
    mask = Mask(TINY_BASE_CHANNELS)
    with torch.no_grad():
        mask.weight.uniform_(0.5, 1.5)
    return DynamicSwitchLayer(
        full_tail,
        make_light_tail(),
        Switch(TINY_BASE_CHANNELS, hidden=8),
        mask,
        segment_frames=segment_frames,
        mode=mode,
        threshold=threshold,
        distance=distance,
    )


def both_paths(forward, set_mode, *args):
    """(full-mode output, light-mode output) of ``forward`` in eval."""
    with torch.no_grad():
        set_mode("full")
        full = forward(*args).features
        set_mode("light")
        light = forward(*args).features
        set_mode("mixed")
    return full, light


def expected_routed(full, light, route, segment_frames):
    """Frame-by-frame reference: light frames where the segment routes light."""
    frames = full.shape[-1]
    seg = segment_frames or frames
    per_frame = route.bool().repeat_interleave(seg, dim=1)[:, None, :frames]
    return torch.where(per_frame, light, full)


def n_segments(frames, segment_frames):
    return math.ceil(frames / (segment_frames or frames))


def random_routes(batch, segments, count, generator):
    routes = [
        torch.zeros(batch, segments, dtype=torch.bool),
        torch.ones(batch, segments, dtype=torch.bool),
    ]
    for _ in range(count):
        routes.append(torch.rand(batch, segments, generator=generator) < 0.5)
    # alternating patterns make the most window boundaries
    alt = torch.arange(segments)[None].repeat(batch, 1) % 2 == 0
    routes += [alt, ~alt]
    return routes


# --------------------------------------------------------------------------- shapes


def test_dsl_output_fields_have_documented_shapes_in_eval_mixed():
    layer = make_layer(segment_frames=3).eval()
    x = torch.randn(2, 8, 8 * 10)
    out = layer(x)
    assert isinstance(out, DSLOutput)
    assert out.features.shape == (2, 8, 10)
    assert out.masked.shape == x.shape
    assert out.predicted.shape == (2, 4)
    assert out.route.shape == (2, 4) and out.route.dtype == torch.bool
    assert out.segment_mask.shape == (2, 4) and bool(out.segment_mask.all())
    assert out.distance is None and out.light_features is None
    assert bool((out.predicted >= 0).all())


def test_dsl_output_fields_have_documented_shapes_in_training():
    layer = make_layer(segment_frames=4).train()
    x = torch.randn(3, 8, 8 * 10)
    out = layer(x, torch.tensor([1.0, 0.5, 0.2]))
    assert out.features.shape == out.light_features.shape == (3, 8, 10)
    assert out.predicted.shape == out.distance.shape == (3, 3)
    assert out.route is None
    # 10 frames in segments of 4: lengths 1.0 -> 10 valid, 0.5 -> 5, 0.2 -> 2
    assert out.segment_mask.tolist() == [
        [True, True, True],
        [True, True, False],
        [True, False, False],
    ]


@pytest.mark.parametrize("samples", [16, 17, 160, 333])
def test_dsl_encoder_emb_has_ceil_samples_over_hop_frames(samples):
    enc = make_dsl_encoder(segment_frames=3).eval()
    out = enc(torch.randn(2, 1, samples))
    frames = math.ceil(samples / TINY_HOP)
    assert out.features.shape == (2, 8, frames)
    assert out.masked.shape == (2, TINY_BASE_CHANNELS, frames * TINY_HOP // 2)
    assert out.route.shape == (2, math.ceil(frames / 3))


# --------------------------------------------------------------------- exact routing


@pytest.mark.parametrize("segment_frames", [1, 2, 3, 5, 8, None])
def test_forced_route_equals_full_and_light_frame_by_frame(segment_frames):
    """Mixed mode = full output on full segments, light output on light segments,
    with batch > 1, many segments and a partial last segment (23 frames)."""
    layer = make_layer(segment_frames).eval()
    batch, frames = 3, 23
    x = torch.randn(batch, TINY_BASE_CHANNELS, frames * TAIL_HOP)
    full, light = both_paths(layer, lambda m: setattr(layer, "mode", m), x)
    assert not torch.allclose(full, light, atol=1e-3), "tails must differ for the test"
    gen = torch.Generator().manual_seed(1)
    for route in random_routes(batch, n_segments(frames, segment_frames), 6, gen):
        with torch.no_grad():
            out = layer(x, None, route)
        assert torch.equal(out.route, route)
        torch.testing.assert_close(
            out.features,
            expected_routed(full, light, route, segment_frames),
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.parametrize("segment_frames", [1, 3, 4, None])
def test_dsl_encoder_forced_route_equals_full_and_light_frame_by_frame(segment_frames):
    enc = make_dsl_encoder(segment_frames).eval()
    batch, samples = 4, 16 * 29 + 5  # 30 frames, partial last hop
    wav = torch.randn(batch, 1, samples)
    lengths = torch.tensor([1.0, 0.8, 0.55, 0.3])
    set_mode = lambda m: setattr(enc.dsl, "mode", m)  # noqa: E731
    full, light = both_paths(lambda w: enc(w, lengths), set_mode, wav)
    gen = torch.Generator().manual_seed(2)
    for route in random_routes(batch, n_segments(30, segment_frames), 6, gen):
        with torch.no_grad():
            out = enc(wav, lengths, route)
        torch.testing.assert_close(
            out.features,
            expected_routed(full, light, route, segment_frames),
            atol=1e-5,
            rtol=0,
        )


def test_forced_route_is_exact_when_the_dsl_follows_a_later_block():
    """split_after=2: base hop 4 and 16 channels, tails of hop 4."""
    from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder

    light = SoundStreamEncoder(
        16,
        channels=3,
        multipliers=(),
        strides=(),
        first_kernel_size=8,
        first_stride=4,
        emb_dim=8,
    )
    enc = DSLEncoder(
        make_encoder(),
        light,
        Switch(16, hidden=4),
        Mask(16),
        split_after=2,
        segment_frames=2,
    ).eval()
    assert enc.base.hop == 4 and enc.dsl.hop == 4
    wav = torch.randn(3, 1, 16 * 15)
    set_mode = lambda m: setattr(enc.dsl, "mode", m)  # noqa: E731
    full, light_out = both_paths(enc, set_mode, wav)
    gen = torch.Generator().manual_seed(4)
    for route in random_routes(3, 8, 4, gen):
        with torch.no_grad():
            out = enc(wav, None, route)
        torch.testing.assert_close(
            out.features, expected_routed(full, light_out, route, 2), atol=1e-5, rtol=0
        )


def test_default_model_forced_route_equals_full_and_light_frame_by_frame():
    """Same property on the default model, with 10-frame (200 ms) segments."""
    enc = load_hparams(segment_frames=10)["encoder"].eval()
    batch, samples = 3, 320 * 47 + 100  # 48 frames -> 5 segments, last one partial
    wav = torch.randn(batch, 1, samples) * 0.3
    set_mode = lambda m: setattr(enc.dsl, "mode", m)  # noqa: E731
    full, light = both_paths(enc, set_mode, wav)
    gen = torch.Generator().manual_seed(3)
    for route in random_routes(batch, 5, 3, gen):
        with torch.no_grad():
            out = enc(wav, None, route)
        torch.testing.assert_close(
            out.features, expected_routed(full, light, route, 10), atol=1e-5, rtol=0
        )


def test_mixed_mode_routes_segments_whose_predicted_distance_is_below_threshold():
    layer = make_layer(segment_frames=2).eval()
    x = torch.randn(4, TINY_BASE_CHANNELS, 8 * 12)
    with torch.no_grad():
        predicted = layer(x).predicted
        # A threshold at the median splits the segments between the paths.
        layer.threshold = float(predicted.median())
        out = layer(x)
        full, light = both_paths(layer, lambda m: setattr(layer, "mode", m), x)
    route = predicted < layer.threshold
    assert route.any() and not route.all()
    assert torch.equal(out.route, route)
    torch.testing.assert_close(
        out.features, expected_routed(full, light, route, 2), atol=1e-5, rtol=0
    )


def test_threshold_extremes_route_everything_one_way():
    layer = make_layer().eval()
    x = torch.randn(2, TINY_BASE_CHANNELS, 8 * 9)
    with torch.no_grad():
        full, light = both_paths(layer, lambda m: setattr(layer, "mode", m), x)
        layer.threshold = float("inf")
        all_light = layer(x)
        layer.threshold = 0.0  # softplus prediction is never below 0
        all_full = layer(x)
    assert bool(all_light.route.all()) and not bool(all_full.route.any())
    torch.testing.assert_close(all_light.features, light, atol=1e-6, rtol=0)
    torch.testing.assert_close(all_full.features, full, atol=1e-6, rtol=0)


def test_oracle_mode_routes_by_true_distance():
    layer = make_layer(segment_frames=3, mode="oracle").eval()
    x = torch.randn(2, TINY_BASE_CHANNELS, 8 * 10)
    with torch.no_grad():
        full, light = both_paths(layer, lambda m: setattr(layer, "mode", m), x)
        layer.mode = "oracle"
        per_frame = (light - full).abs().mean(1)
        distance = torch.stack([per_frame[:, s : s + 3].mean(1) for s in range(0, 10, 3)], dim=1)
        layer.threshold = float(distance.median())
        out = layer(x)
    torch.testing.assert_close(out.distance, distance)
    assert torch.equal(out.route, distance < layer.threshold)
    torch.testing.assert_close(out.features, expected_routed(full, light, out.route, 3))
    torch.testing.assert_close(out.light_features, light)


def test_training_returns_full_tail_output_and_light_output_for_distillation():
    layer = make_layer(segment_frames=3).train()
    x = torch.randn(2, TINY_BASE_CHANNELS, 8 * 7)
    layer.mode = "light"  # the inference mode does not matter in training
    out = layer(x)
    with torch.no_grad():
        masked = layer.mask(x)
        torch.testing.assert_close(out.features, layer.full_tail(masked))
        torch.testing.assert_close(out.light_features, layer.light_tail(masked))


@pytest.mark.parametrize("mask", [None, "fresh"])
def test_full_mode_of_dsl_encoder_equals_the_soundstream_encoder_it_wraps(mask):
    encoder = make_encoder()
    dsl = DSLEncoder(
        encoder,
        make_light_tail(),
        Switch(TINY_BASE_CHANNELS),
        Mask(TINY_BASE_CHANNELS) if mask else None,
        split_after=1,
        segment_frames=3,
        mode="full",
    ).eval()
    wav = torch.randn(3, 1, 16 * 11 + 7)
    with torch.no_grad():
        torch.testing.assert_close(dsl(wav).features, encoder(wav), atol=1e-6, rtol=0)
    # Shared parameters: training the wrapped encoder changes the DSL's full path.
    encoder_params = {id(p) for p in encoder.parameters()}
    assert {id(p) for p in dsl.dsl.full_tail.parameters()} <= encoder_params
    assert {id(p) for p in dsl.base.parameters()} <= encoder_params


def test_default_dsl_full_mode_equals_default_soundstream_encoder():
    hp = load_hparams(mode="full")
    enc, plain = hp["encoder"].eval(), hp["soundstream_encoder"].eval()
    wav = torch.randn(2, 1, 16000 + 123) * 0.3
    with torch.no_grad():
        torch.testing.assert_close(enc(wav).features, plain(wav), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------ causality


def assert_frames_causal(fn, wav, cut, hop):
    """Frames ``t < cut // hop`` (which use samples < (t+1)*hop <= cut) are unchanged
    by changes at sample ``cut`` and later."""
    keep = cut // hop
    with torch.no_grad():
        y = fn(wav)
        wav2 = wav.clone()
        wav2[..., cut:] = torch.randn_like(wav2[..., cut:]) * 3
        y2 = fn(wav2)
    torch.testing.assert_close(y[..., :keep], y2[..., :keep], atol=0, rtol=0)
    assert not torch.allclose(y[..., keep:], y2[..., keep:])


@pytest.mark.parametrize("mode", ["full", "light"])
@pytest.mark.parametrize("cut", [1, 16, 16 * 7 + 3, 16 * 13 - 1])
def test_dsl_encoder_is_causal_in_full_and_light_modes(mode, cut):
    enc = make_dsl_encoder(segment_frames=3, mode=mode).eval()
    wav = torch.randn(2, 1, 16 * 20)
    assert_frames_causal(lambda w: enc(w).features, wav, cut, TINY_HOP)


@pytest.mark.parametrize("cut", [1, 16 * 5, 16 * 7 + 3, 16 * 13 - 1])
def test_dsl_encoder_is_causal_in_mixed_mode_for_a_given_route(cut):
    enc = make_dsl_encoder(segment_frames=3).eval()
    wav = torch.randn(2, 1, 16 * 20)
    route = torch.tensor([[1, 0, 0, 1, 0, 1, 1], [0, 1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    assert_frames_causal(lambda w: enc(w, None, route).features, wav, cut, TINY_HOP)


def test_mixed_mode_switch_decision_uses_only_its_own_segment_and_the_past():
    """With predicted routes the decision is per segment, so a frame may depend on
    later samples of its own segment, but never on later segments."""
    enc = make_dsl_encoder(segment_frames=3).eval()
    wav = torch.randn(2, 1, 16 * 21)
    with torch.no_grad():
        enc.dsl.threshold = float(enc(wav).predicted.median())
        ref = enc(wav)
        for seg in (1, 3, 5):
            cut = seg * 3 * TINY_HOP  # first sample of segment ``seg``
            wav2 = wav.clone()
            wav2[..., cut:] = torch.randn_like(wav2[..., cut:]) * 3
            out = enc(wav2)
            assert torch.equal(out.route[:, :seg], ref.route[:, :seg])
            torch.testing.assert_close(
                out.predicted[:, :seg], ref.predicted[:, :seg], atol=0, rtol=0
            )
            # Later routes change how windows are packed into rows, so the same
            # frames may run in a different batch: equal up to float rounding.
            torch.testing.assert_close(
                out.features[..., : seg * 3], ref.features[..., : seg * 3], atol=1e-6, rtol=1e-5
            )


# ------------------------------------------------------------ which tail actually runs


class CallRecorder:
    """Forward pre-hook that records the input shape of every call."""

    def __init__(self, module):
        self.shapes = []
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.shapes.append(tuple(args[0].shape))

    @property
    def steps(self):
        """Total batch * time seen over all calls."""
        return sum(s[0] * s[-1] for s in self.shapes)


def test_light_mode_never_runs_full_tail():
    enc = make_dsl_encoder(mode="light").eval()
    full_calls, light_calls = CallRecorder(enc.dsl.full_tail), CallRecorder(enc.dsl.light_tail)
    with torch.no_grad():
        enc(torch.randn(3, 1, 16 * 12))
        enc(torch.randn(1, 1, 16 * 40), torch.tensor([0.5]))
    assert full_calls.shapes == []
    assert len(light_calls.shapes) == 2


def test_full_mode_never_runs_light_tail():
    enc = make_dsl_encoder(mode="full").eval()
    light_calls = CallRecorder(enc.dsl.light_tail)
    with torch.no_grad():
        enc(torch.randn(3, 1, 16 * 12))
    assert light_calls.shapes == []


def test_mixed_mode_with_all_light_route_never_runs_full_tail():
    enc = make_dsl_encoder(segment_frames=3).eval()
    full_calls = CallRecorder(enc.dsl.full_tail)
    route = torch.ones(3, 4, dtype=torch.bool)
    with torch.no_grad():
        enc(torch.randn(3, 1, 16 * 12), None, route)
        enc.dsl.threshold = float("inf")  # predicted routes, all light
        out = enc(torch.randn(3, 1, 16 * 12))
    assert bool(out.route.all())
    assert full_calls.shapes == []


def test_mixed_mode_runs_full_tail_only_on_gathered_full_segments():
    seg = 3
    enc = make_dsl_encoder(segment_frames=seg).eval()
    enc.dsl.block_frames = 0  # one call per tail (blocks: test_routing_planner.py)
    full_calls = CallRecorder(enc.dsl.full_tail)
    light_calls = CallRecorder(enc.dsl.light_tail)
    batch, frames = 4, 120
    route = torch.ones(batch, frames // seg, dtype=torch.bool)
    route[2, 5] = False  # one full segment in the middle of utterance 2
    route[0, -1] = False  # and the last segment of utterance 0
    with torch.no_grad():
        enc(torch.randn(batch, 1, frames * TINY_HOP), None, route)
    whole = batch * frames * TAIL_HOP  # base steps in the batch
    tail = enc.dsl.full_tail
    ctx = math.ceil((tail.lookback + 1) / tail.hop) - 1  # left-context frames
    assert len(full_calls.shapes) == 1, "full segments must be packed into one call"
    assert full_calls.steps <= 2 * (seg + ctx) * TAIL_HOP
    assert full_calls.steps < 0.1 * whole
    assert len(light_calls.shapes) == 1
    assert light_calls.steps <= whole + batch * 2 * ctx * TAIL_HOP


def test_training_runs_both_tails_on_everything():
    enc = make_dsl_encoder().train()
    full_calls, light_calls = CallRecorder(enc.dsl.full_tail), CallRecorder(enc.dsl.light_tail)
    enc(torch.randn(2, 1, 16 * 9))
    assert full_calls.shapes == [(2, TINY_BASE_CHANNELS, 9 * TAIL_HOP)]
    assert light_calls.shapes == [(2, TINY_BASE_CHANNELS, 9 * TAIL_HOP)]


# --------------------------------------------------------------------------- losses


def test_dsl_loss_terms_equal_hand_computed_values():
    masked = torch.tensor(
        [
            [[1.0, -2.0, 3.0, -4.0], [0.5, 0.5, -0.5, 0.5]],
            [[2.0, -2.0, 100.0, 100.0], [0.0, 1.0, -100.0, 100.0]],
        ]
    )
    lengths = torch.tensor([1.0, 0.5])  # utterance 1: only its first 2 steps count
    predicted = torch.tensor([[0.5, 0.1], [0.0, 0.9]])
    distance = torch.tensor([[0.2, 0.4], [0.6, 5.0]])
    segment_mask = torch.tensor([[True, True], [True, False]])
    out = DSLOutput(None, masked, predicted, distance, None, segment_mask)

    valid_abs = [1, 2, 3, 4, 0.5, 0.5, 0.5, 0.5, 2, 2, 0, 1]
    compression = sum(valid_abs) / len(valid_abs)  # 17 / 12
    switch_l1 = (0.3 + 0.3 + 0.6) / 3
    switch_mse = (0.09 + 0.09 + 0.36) / 3
    light = (0.2 + 0.4 + 0.6) / 3

    terms = DSLLoss(alpha=0.1, beta=2.0)(out, lengths)
    assert float(terms["compression"]) == pytest.approx(compression)
    assert float(terms["switch"]) == pytest.approx(switch_l1)
    assert float(terms["light"]) == pytest.approx(light)
    assert float(terms["loss"]) == pytest.approx(0.1 * compression + 2.0 * (switch_l1 + light))

    terms = DSLLoss(alpha=0.0, beta=1.0, switch_criterion="mse")(out, lengths)
    assert float(terms["switch"]) == pytest.approx(switch_mse)
    assert float(terms["loss"]) == pytest.approx(switch_mse + light)

    # Without lengths every step counts.
    terms = DSLLoss()(out)
    assert float(terms["compression"]) == pytest.approx(float(masked.abs().mean()))


@pytest.mark.parametrize("name", ["mae", "mse"])
def test_segment_distance_is_the_per_frame_distance_averaged_over_valid_frames(name):
    layer = make_layer(segment_frames=2, distance=name)
    light = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    full = torch.tensor([[[0.0, 0.0, 1.0, 0.0, 9.0], [1.0, 2.0, 1.0, 0.0, 9.0]]])
    frame_mask = torch.tensor([[True, True, True, False, False]])
    diff = (light - full).abs() if name == "mae" else (light - full).square()
    per_frame = diff.mean(1)[0].tolist()  # mae: [1, 2, 1.5, 2, 6.5]
    expected = [(per_frame[0] + per_frame[1]) / 2, per_frame[2], 0.0]
    got = layer.segment_distance(light, full, frame_mask)
    torch.testing.assert_close(got, torch.tensor([expected]))


def test_switch_target_is_stop_gradient():
    """L_switch trains the switch but not the light tail (Eq. 3)."""
    enc = make_dsl_encoder(segment_frames=3).train()
    out = enc(torch.randn(2, 1, 16 * 12))
    terms = DSLLoss()(out)
    grads = torch.autograd.grad(
        terms["switch"],
        [out.light_features, out.distance, out.predicted],
        allow_unused=True,
        retain_graph=True,
    )
    assert grads[0] is None and grads[1] is None
    assert grads[2] is not None and grads[2].abs().sum() > 0
    light_params = list(enc.dsl.light_tail.parameters())
    assert all(
        g is None
        for g in torch.autograd.grad(
            terms["switch"], light_params, allow_unused=True, retain_graph=True
        )
    )
    switch_grads = torch.autograd.grad(
        terms["switch"], list(enc.dsl.switch.parameters()), retain_graph=True
    )
    assert any(g.abs().sum() > 0 for g in switch_grads)


def test_distillation_loss_does_not_reach_the_full_tail():
    """L_light trains the light tail towards a detached teacher (Eq. 4)."""
    enc = make_dsl_encoder(segment_frames=3).train()
    out = enc(torch.randn(2, 1, 16 * 12))
    light = DSLLoss()(out)["light"]
    to_emb, to_light = torch.autograd.grad(
        light, [out.features, out.light_features], allow_unused=True, retain_graph=True
    )
    assert to_emb is None
    assert to_light is not None and to_light.abs().sum() > 0
    full_params = list(enc.dsl.full_tail.parameters())
    assert all(g is None for g in torch.autograd.grad(light, full_params, allow_unused=True))


def test_gated_compression_loss_equals_hand_computation():
    masked = torch.tensor([[[1.0, -3.0]], [[0.5, 0.5]]])
    logits = torch.tensor([2.0, -1.0])
    labels = torch.tensor([1, 1])
    bce = (-math.log(1 / (1 + math.exp(-2.0))) - math.log(1 / (1 + math.exp(1.0)))) / 2
    expected = 0.5 * (5.0 / 4) + 3.0 * bce
    got = GatedCompressionLoss(alpha=0.5, beta=3.0)(masked, logits, labels)
    assert float(got) == pytest.approx(expected)
    labels = torch.tensor([0.0, 1.0])
    bce0 = (-math.log(1 - 1 / (1 + math.exp(-2.0))) - math.log(1 / (1 + math.exp(1.0)))) / 2
    assert float(GatedCompressionLoss(0.0, 1.0)(masked, logits, labels)) == pytest.approx(bce0)


# ------------------------------------------------------------- segments and switch


def test_length_mask_counts_rounded_relative_lengths_and_at_least_one_step():
    mask = length_mask(torch.tensor([1.0, 0.5, 0.01]), 6, "cpu", 3)
    assert mask.sum(1).tolist() == [6, 3, 1]
    assert mask[1].tolist() == [True, True, True, False, False, False]
    assert bool(length_mask(None, 4, "cpu", 2).all())


def test_segment_mean_ignores_masked_frames_and_handles_partial_last_segment():
    values = torch.tensor([[1.0, 3.0, 5.0, 100.0, 7.0], [2.0, 4.0, 6.0, 8.0, 10.0]])
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    got = segment_mean(values, 2, mask)
    torch.testing.assert_close(got, torch.tensor([[2.0, 5.0, 0.0], [3.0, 7.0, 10.0]]))
    torch.testing.assert_close(segment_mean(values, 10), values.mean(1, keepdim=True))


@pytest.mark.parametrize("valid", [60, 50])
def test_switch_prediction_is_unchanged_by_padding_declared_in_lengths(valid):
    switch = Switch(4, hidden=8)
    x = torch.randn(2, 4, valid)
    ref = switch(x, 20)
    garbage = torch.randn(2, 4, 100 - valid) * 50 + 10
    padded = torch.cat([x, garbage], dim=-1)
    got = switch(padded, 20, torch.full((2,), valid / 100))
    n = ref.shape[1]
    assert got.shape == (2, 5)
    torch.testing.assert_close(got[:, :n], ref, atol=1e-5, rtol=1e-5)


def test_dsl_switch_prediction_is_unchanged_when_padding_is_appended():
    enc = make_dsl_encoder(segment_frames=3).eval()
    wav = torch.randn(2, 1, 16 * 10)  # 10 frames -> 4 segments, last one partial
    padded = torch.cat([wav, torch.randn(2, 1, 16 * 10) * 5], dim=-1)
    with torch.no_grad():
        ref = enc(wav)
        out = enc(padded, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out.predicted[:, :4], ref.predicted, atol=1e-5, rtol=1e-5)
    assert out.segment_mask.tolist() == [[True] * 4 + [False] * 3] * 2


# -------------------------------------------------------------- gated compression


def make_gated_network():
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 10, 3))
    return GatedNetwork(nn.Conv1d(1, 4, 3, padding=1), GatedCompression(4, hidden=8), head)


def test_gated_network_negatives_exit_early_with_zero_output():
    net = make_gated_network().eval()
    seen = []
    net.head.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    x = torch.randn(8, 1, 10) * torch.linspace(0.1, 5, 8)[:, None, None]
    with torch.no_grad():
        _, logits = net.gate(net.base(x))
        net.gate.threshold = float(torch.sigmoid(logits).median())
        out, logits2, passed = net(x)
    assert torch.equal(passed, torch.sigmoid(logits) >= net.gate.threshold)
    assert 0 < int(passed.sum()) < 8
    torch.testing.assert_close(logits2, logits)
    assert len(seen) == 1 and seen[0].shape[0] == int(passed.sum())
    with torch.no_grad():
        masked, _ = net.gate(net.base(x))
        torch.testing.assert_close(seen[0], masked[passed])
        torch.testing.assert_close(out[passed], net.head(masked[passed]))
    assert bool((out[~passed] == 0).all())


def test_gated_network_runs_head_on_every_sample_in_training():
    net = make_gated_network().train()
    seen = []
    net.head.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    net.gate.threshold = 1.1  # nothing would pass in inference
    out, _, passed = net(torch.randn(5, 1, 10))
    assert seen == [5] and bool(passed.all()) and out.shape == (5, 3)


def test_gated_network_with_no_positive_returns_all_zeros():
    net = make_gated_network().eval()
    net.gate.threshold = 1.1
    out, _, passed = net(torch.randn(4, 1, 10))
    assert not bool(passed.any())
    assert out.shape == (4, 3) and bool((out == 0).all())


def test_gate_learns_to_separate_labelled_classes():
    gate = GatedCompression(4, hidden=16)
    loss_fn = GatedCompressionLoss(alpha=1e-4, beta=1.0)
    # Positives are loud, negatives quiet: separable by the log-std statistics.
    x = (
        torch.randn(32, 4, 50)
        * torch.cat([torch.full((16,), 3.0), torch.full((16,), 0.3)])[:, None, None]
    )
    labels = torch.cat([torch.ones(16), torch.zeros(16)])
    opt = torch.optim.Adam(gate.parameters(), lr=3e-2)

    def bce():
        with torch.no_grad():
            return float(nn.functional.binary_cross_entropy_with_logits(gate(x)[1], labels))

    before = bce()
    for _ in range(40):
        masked, logits = gate(x)
        loss = loss_fn(masked, logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = bce()
    assert after < 0.5 * before
    with torch.no_grad():
        assert torch.equal(gate.passes(gate(x)[1]), labels.bool())


# ----------------------------------------------------------------------- bad inputs


def test_invalid_mode_raises_value_error():
    layer = make_layer()
    with pytest.raises(ValueError, match="mode must be one of"):
        layer.mode = "fast"
    with pytest.raises(ValueError, match="mode must be one of"):
        make_dsl_encoder(mode="half")


def test_invalid_distance_raises_value_error():
    with pytest.raises(ValueError, match="distance must be one of.*'cosine'"):
        make_dsl_encoder(distance="cosine")


def test_invalid_switch_criterion_raises_value_error():
    with pytest.raises(ValueError, match="switch_criterion must be one of"):
        DSLLoss(switch_criterion="huber")


def test_light_tail_with_wrong_input_channels_raises_value_error():
    light = make_light_tail()
    light.stages[0] = type(light.stages[0])(5, 2, 4, stride=4)
    with pytest.raises(ValueError, match="light_tail takes 5 input channels.*outputs 8"):
        DSLEncoder(make_encoder(), light, Switch(8), Mask(8), split_after=1)


def test_light_tail_with_other_hop_raises_value_error():
    _, full_tail = make_encoder().split(1)
    light = make_light_tail()
    light.stages[0] = type(light.stages[0])(8, 2, 2, stride=2)
    light.hop = 4
    with pytest.raises(ValueError, match="hop 4 must equal the full tail hop 8"):
        DynamicSwitchLayer(full_tail, light, Switch(8))


def test_non_positive_segment_frames_raises_value_error():
    with pytest.raises(ValueError, match="segment_frames must be >= 1"):
        make_layer(segment_frames=0)


def test_base_features_off_the_tail_hop_raise_value_error():
    layer = make_layer().eval()
    with pytest.raises(ValueError, match="multiple of the tail hop 8"):
        layer(torch.randn(1, 8, 20))


@pytest.mark.parametrize("shape", [(2, 3), (2, 5), (1, 4), (2,), (2, 4, 1)])
def test_route_with_wrong_shape_raises_value_error(shape):
    enc = make_dsl_encoder(segment_frames=3).eval()
    wav = torch.randn(2, 1, 16 * 12)  # 12 frames -> 4 segments
    with pytest.raises(ValueError, match=r"route must have shape \(2, 4\)"):
        enc(wav, None, torch.zeros(shape, dtype=torch.bool))


def test_calibrated_threshold_is_saved_and_restored_with_the_state_dict():
    layer = make_layer(threshold=0.5)
    layer.threshold = 0.125
    state = layer.state_dict()
    other = make_layer(threshold=0.9)
    other.load_state_dict(state)
    assert other.threshold == 0.125


def test_relative_distance_is_level_invariant_and_absolute_mae_is_not():
    """The switch target does not scale with loudness (relative_mae), while mae does."""
    from tests.conftest import make_dsl_encoder

    torch.manual_seed(0)
    enc = make_dsl_encoder(segment_frames=3, distance="relative_mae").train()
    absolute = make_dsl_encoder(segment_frames=3, distance="mae").train()
    with torch.no_grad():  # without biases the tails' outputs follow the input's scale
        for name, p in enc.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    absolute.load_state_dict(enc.state_dict())
    wav = torch.randn(2, 1, 16 * 12) * 3.0  # the tiny tails output ~1e-2 at unit scale
    with torch.no_grad():
        loud, quiet = enc(wav).distance, enc(wav * 0.1).distance  # 20 dB apart
        loud_abs, quiet_abs = absolute(wav).distance, absolute(wav * 0.1).distance
    # ELU is not homogeneous, so equal only roughly; mae drops with the level (~10x)
    assert torch.allclose(loud, quiet, rtol=0.5)
    assert bool((quiet_abs < 0.3 * loud_abs).all())
