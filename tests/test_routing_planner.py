"""The routing planner and the routed forward that executes it.

Specification: for any batch size, padding and route pattern, a mixed pass computes
each tail on its own segments, the context their runs need and almost nothing more
(padding beyond the lengths is never computed), and its output equals the tails run
on whole utterances and stitched by the route.
"""

import numpy as np
import pytest
import torch

from speechbrain_dsl.evaluation.efficiency import count_macs, executed_macs, part_costs
from speechbrain_dsl.nnet import routing
from speechbrain_dsl.nnet.routing import (
    Window,
    context_frames,
    decide,
    pack_windows,
    plan_routes,
    relative_levels,
    route_runs,
    threshold_for,
    valid_frame_counts,
)
from tests.conftest import BASELINE_YAML, load_hparams, make_dsl_encoder


def random_batch(rng, batch, segments, segment_frames, light_share):
    frames = segments * segment_frames
    route = rng.random((batch, segments)) < light_share
    lengths = rng.uniform(0.3, 1.0, batch)
    lengths[rng.integers(batch)] = 1.0  # SpeechBrain: the longest item sets the batch length
    return route, lengths.astype(np.float32), frames


@pytest.mark.parametrize("seed", range(40))
def test_plan_computes_windows_plus_at_most_a_context_per_row(seed):
    rng = np.random.default_rng(seed)
    batch = int(rng.choice([1, 2, 8, 32]))
    segment_frames = int(rng.choice([4, 8, 16, 50]))
    route, lengths, frames = random_batch(
        rng, batch, int(rng.integers(1, 20)), segment_frames, rng.uniform(0, 1)
    )
    contexts = {"light": int(rng.integers(0, 4)), "full": int(rng.integers(0, 4))}
    valid = valid_frame_counts(lengths, batch, frames)
    cap = int(rng.choice([0, 1, 5, 12, 40]))  # rows cut into blocks for the executor
    plans = plan_routes(route, segment_frames, frames, contexts, valid, max_row_frames=cap)
    written = np.zeros((batch, frames), int)
    for name, plan in plans.items():
        needed = sum(w.frames for w in plan.windows)
        assert plan.computed_frames <= needed + plan.rows * (contexts[name] + 1)
        assert not cap or plan.row_frames <= max(cap, contexts[name] + 1)
        np.add.at(written.reshape(-1), plan.target, 1)
        # every kept output comes from a frame gathered from the same item and frame
        gathered = plan.gather[plan.source]
        assert np.array_equal(gathered, plan.target)
    # each valid frame is written by exactly one tail, padding by none
    inside = np.arange(frames)[None] < valid[:, None]
    assert np.array_equal(written, inside.astype(int))


def test_windows_that_start_an_utterance_open_their_own_row():
    windows = [Window(0, 0, 6, 0), Window(1, 0, 6, 0), Window(0, 9, 12, 2), Window(1, 9, 12, 2)]
    plan = pack_windows(windows, context=2, frames=12, batch=2)
    rows = plan.gather.reshape(plan.rows, plan.row_frames)
    starts = {0, 12}  # frame 0 of item 0 and of item 1 (flat item * 12 + frame)
    assert {int(r[0]) for r in rows} == starts
    for r in rows:
        assert all(int(v) not in starts for v in r[1:])  # never mid-row


def test_runs_stop_at_the_valid_length_and_skip_padding_segments():
    selected = np.array([[True, True, True, True]])
    assert route_runs(selected, 5, [12]) == [(0, 0, 12)]


def test_context_frames_cover_the_lookback():
    assert context_frames(0, 320) == 0
    assert context_frames(319, 320) == 0
    assert context_frames(320, 320) == 1


def test_decide_routes_numpy_and_torch_alike():
    scores = [0.1, 0.5, 0.9]
    for mode, expected in (
        ("mixed", [True, False, False]),
        ("full", [False] * 3),
        ("light", [True] * 3),
    ):
        assert decide(np.array(scores), mode, 0.5).tolist() == expected
        assert decide(torch.tensor(scores), mode, 0.5).tolist() == expected


def test_unknown_modes_are_refused_by_name():
    with pytest.raises(ValueError, match="'fast'"):
        threshold_for("fast", 0.5)


def direct_levels(energy, counts):
    """relative_levels written out per segment, in float64: the specification."""
    out = np.zeros(energy.shape)
    for index in np.ndindex(energy.shape[:-1]):
        e, c = energy[index], np.maximum(counts[index], 1)
        for s in range(e.shape[0]):
            own = e[s] / c[s] + 1e-10
            reference = e[: s + 1].sum() / c[: s + 1].sum() + 1e-10
            out[index + (s,)] = np.clip(np.log10(own / reference), -6.0, 3.0)
    return out


def test_relative_levels_follow_the_formula_on_any_batch_shape_and_padding():
    """Uneven counts (a 1-sample segment, padding of 0), digital silence, [2, 2, segments]."""
    rng = np.random.default_rng(0)
    counts = np.array([[[1, 4, 4, 2, 0], [3, 3, 3, 3, 3]], [[5, 5, 1, 0, 0], [2, 2, 2, 2, 2]]])
    energy = rng.uniform(0.01, 2.0, counts.shape) * counts
    energy[1, 1] = 0.0  # an utterance of digital silence: finite, level 0
    expected = direct_levels(energy, counts)
    assert np.isfinite(expected).all() and (expected[1, 1] == 0).all()
    np.testing.assert_allclose(relative_levels(energy, counts), expected, rtol=1e-9, atol=1e-9)
    # torch (the model): the same values, a tensor, and gradients flow through
    energy_t = torch.tensor(energy, requires_grad=True)
    levels = relative_levels(energy_t, torch.tensor(counts))
    assert isinstance(levels, torch.Tensor) and levels.requires_grad
    np.testing.assert_allclose(levels.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    levels.sum().backward()
    assert torch.isfinite(energy_t.grad).all()


def test_valid_frames_use_torchs_float32_product_and_stay_within_the_batch():
    # float64 would give 0.8 * 150 = 120.0000018 -> 121 and 0.14 * 50 = 7.0000000003 -> 8;
    # SpeechBrain's float32 masks keep 120 and 7 frames
    for length, frames in ((np.float32(0.8), 150), (0.14, 50)):
        product = torch.tensor([length], dtype=torch.float32) * frames
        torch_keeps = int((torch.arange(frames) < product).sum())
        assert valid_frame_counts([length], 1, frames).tolist() == [torch_keeps]
    assert valid_frame_counts([0.8], 1, 150).tolist() == [120]
    assert valid_frame_counts([1.2, 1.0], 2, 10).tolist() == [10, 10]  # never past the batch


def test_a_route_of_whole_utterances_runs_each_tail_on_its_items_in_place():
    route = np.zeros((2, 3), dtype=bool)  # 2 items, 3 segments: all full
    plans = plan_routes(route, segment_frames=2, frames=6, contexts={"light": 1, "full": 1})
    full, light = plans["full"], plans["light"]
    assert full.whole_batch is True and (full.rows, full.row_frames) == (2, 6)
    assert np.array_equal(full.gather, np.arange(12)) and np.array_equal(full.target, full.gather)
    assert (light.rows, light.row_frames, light.computed_frames, light.windows) == (0, 0, 0, ())
    assert light.gather.size == light.source.size == light.target.size == 0
    # a whole utterance of one item only: gathered and written for that item, nothing else
    route = np.array([[True, True], [False, False]])
    plans = plan_routes(route, segment_frames=2, frames=4, contexts={"light": 0, "full": 0})
    assert not plans["light"].whole_batch and not plans["full"].whole_batch
    assert np.array_equal(plans["light"].target, np.arange(4))
    assert np.array_equal(plans["full"].target, 4 + np.arange(4))
    assert set(plans["light"].gather.tolist()) <= {-1, 0, 1, 2, 3}


def test_an_integer_route_plans_as_its_bool_twin():
    route = np.array([[1, 0, 0, 1], [0, 1, 1, 1]])  # e.g. an exported engine's int64 route
    contexts = {"light": 1, "full": 2}
    got = plan_routes(route, 2, 8, contexts, valid=[8, 7])
    want = plan_routes(route.astype(bool), 2, 8, contexts, valid=[8, 7])
    for name in want:
        assert got[name].windows == want[name].windows
        assert np.array_equal(got[name].target, want[name].target)


def test_windows_inside_utterances_spread_over_one_row_per_item():
    windows = [Window(b, 4, 8, 2) for b in range(4)]  # 6 computed frames each
    plan = pack_windows(windows, context=2, frames=8, batch=4)
    assert (plan.rows, plan.row_frames) == (4, 6)
    plan = pack_windows(windows, context=2, frames=8, batch=4, max_rows=2)
    assert (plan.rows, plan.row_frames) == (2, 12)


def test_a_single_window_costs_exactly_its_frames():
    plan = pack_windows([Window(0, 4, 5, 1)], context=1, frames=8, batch=1)
    assert (plan.rows, plan.row_frames) == (1, 2)
    assert plan.gather.tolist() == [3, 4] and plan.source.tolist() == [1]


def test_the_cheapest_layout_tried_is_kept():
    """Rows of 4 overflow to 5 rows (20 frames); longer rows fit 3 rows but cost more."""
    windows = [Window(0, 0, 8, 0), Window(2, 0, 2, 0), Window(3, 0, 2, 0)]
    plan = pack_windows(windows, context=2, frames=8, batch=4)
    assert (plan.rows, plan.row_frames) == (5, 4)


def test_a_layout_that_fits_is_taken_at_once(monkeypatch):
    fills = []
    fill = routing._fill
    monkeypatch.setattr(routing, "_fill", lambda *args: fills.append(1) or fill(*args))
    plan = pack_windows([Window(0, 0, 4, 0), Window(1, 0, 4, 0)], context=1, frames=8, batch=2)
    assert (plan.rows, plan.row_frames, len(fills)) == (2, 4, 1)


@pytest.mark.parametrize("seed", range(6))
def test_routed_forward_equals_stitched_whole_utterance_tails(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = make_dsl_encoder(segment_frames=3).eval()
    enc.dsl.block_frames = int(rng.choice([0, 2, 5, 11]))  # any block size, the same output
    batch, segments = int(rng.choice([1, 3, 8])), int(rng.integers(2, 9))
    route, lengths, frames = random_batch(rng, batch, segments, 3, rng.uniform(0.2, 0.8))
    wav = torch.randn(batch, 1, frames * 16) * 0.3
    route, lengths = torch.from_numpy(route), torch.from_numpy(lengths)
    with torch.no_grad():
        mixed = enc(wav, lengths, route=route).features
        enc.dsl.block_frames = 0  # the reference: each tail in one call on whole utterances
        full = enc(wav, mode="full").features
        light = enc(wav, mode="light").features
    stitched = enc.dsl.stitch(light, full, route)
    valid = torch.from_numpy(valid_frame_counts(lengths.numpy(), batch, frames))
    inside = torch.arange(frames)[None] < valid[:, None]
    assert torch.allclose(
        mixed[inside[:, None].expand_as(mixed)],
        stitched[inside[:, None].expand_as(stitched)],
        atol=1e-5,
    )
    assert bool((mixed[~inside[:, None].expand_as(mixed)] == 0).all())


@pytest.fixture(scope="module")
def default_encoder():
    torch.manual_seed(0)
    hp = load_hparams(segment_frames=8)
    enc = hp["encoder"].eval()
    return enc, part_costs(enc, hp["sample_rate"])["macs_per_second"]


@pytest.mark.parametrize("batch,light_share", [(1, 0.3), (8, 0.05), (8, 0.5), (32, 0.1)])
def test_mixed_macs_stay_within_two_percent_of_the_routed_work(default_encoder, batch, light_share):
    """Executed MACs <= each tail on its frames plus its runs' context, + base and switch."""
    enc, per_second = default_encoder
    rng = np.random.default_rng(batch)
    segments, segment_frames, fps = 30, 8, 50  # 4.8 s utterances, 160-ms segments
    route, lengths, frames = random_batch(rng, batch, segments, segment_frames, light_share)
    wav = torch.randn(batch, 1, frames * 320) * 0.1
    route_t = torch.from_numpy(route)
    valid = valid_frame_counts(lengths, batch, frames)
    plans = enc.dsl.plan(route_t, frames, torch.from_numpy(lengths))
    routed = sum(
        per_second[f"{name}_tail"] / fps * sum(w.frames for w in plan.windows)
        for name, plan in plans.items()
    )
    base = batch * frames / fps * per_second["base"]
    fixed = base + count_macs(enc.dsl.switch, torch.randn(batch, 8, frames * 320), 8 * 320)
    executed = executed_macs(enc, wav, route=route_t, lengths=torch.from_numpy(lengths))
    assert executed <= 1.02 * (routed + fixed)
    # and the windows hold no more than the valid frames plus one context per run
    for name, plan in plans.items():
        written = sum(w.end - w.first for w in plan.windows)
        assert written == int(
            sum(
                min(valid[b], (s + 1) * segment_frames) - s * segment_frames
                for b in range(batch)
                for s in range(segments)
                if s * segment_frames < valid[b] and route[b, s] == (name == "light")
            )
        )


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_mixed_with_nothing_light_never_costs_more_than_full(default_encoder, batch):
    enc, _ = default_encoder
    rng = np.random.default_rng(batch)
    _, lengths, frames = random_batch(rng, batch, 20, 8, 0.0)
    wav = torch.randn(batch, 1, frames * 320) * 0.1
    lengths = torch.from_numpy(lengths)
    nothing_light = torch.zeros(batch, 20, dtype=torch.bool)
    mixed = executed_macs(enc, wav, route=nothing_light, lengths=lengths)
    full = executed_macs(enc, wav, mode="full", lengths=lengths)
    switch = count_macs(enc.dsl.switch, torch.randn(batch, 8, frames * 320), 8 * 320)
    assert mixed <= full + switch


def test_exported_rows_execute_one_tail_each(default_encoder):
    """The onnxruntime graph's rows: mixed costs the light rows' and full rows' share, no more."""
    from speechbrain_dsl.inference.export import ExportableEncoder

    torch.manual_seed(0)
    codec = load_hparams(segment_frames=50)["codec"].eval()
    rows = torch.randn(12, 1, 16000) * 0.1
    rows[:5] *= 0.01  # quiet rows: the untrained switch predicts them apart
    context = torch.randn(12, 1, 320) * 0.1
    with torch.no_grad():
        codec.encode(rows[:, 0])  # initialise the codebooks
        model = ExportableEncoder(codec)
        predicted = model(rows, torch.tensor(0.0), context)[2]
    threshold = predicted.median()
    light = int((predicted < threshold).sum())
    assert 0 < light < 12

    def macs(limit):
        return count_macs(model, rows, torch.tensor(float(limit)), context)

    all_full, all_light, mixed = macs(-np.inf), macs(np.inf), macs(threshold)
    expected = (light * all_light + (12 - light) * all_full) / 12
    assert mixed == pytest.approx(expected, rel=0.02)
    assert all_light < mixed < all_full


@pytest.mark.parametrize("block_frames", [0, 7, 40])
def test_baseline_encoder_in_blocks_equals_one_call_on_long_and_batched_audio(block_frames):
    """Eval-mode blocks (items and time cut after their receptive field) change nothing."""
    torch.manual_seed(block_frames)
    enc = load_hparams(BASELINE_YAML)["encoder"]
    wav = torch.randn(3, 1, 100 * 320 + 77) * 0.1  # 101 frames, the last one padded
    with torch.no_grad():
        reference = enc.train()(wav)
        enc.eval().block_frames = block_frames
        blocked = enc(wav)
    assert blocked.shape == reference.shape == (3, 64, 101)
    assert torch.allclose(blocked, reference, atol=1e-5)
