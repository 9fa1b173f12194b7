"""Calibrating the switch threshold: :func:`speechbrain_dsl.evaluation.calibration.calibrate`.

The library function replaced three methods of the codec recipe's ``CodecBrain``
(``calibrate``, ``calibrate_on_visqol``, ``calibrate_best_on_visqol``). ``RECORDED``
holds what those methods gave (commit 52ee15b) on the inputs built here; the
function must give the same thresholds and try the same shares.
"""

from pathlib import Path

import pytest
import torch
from conftest import load_hparams, make_codec, make_decoder, make_dsl_encoder

from speechbrain_dsl.evaluation import calibration
from speechbrain_dsl.evaluation.calibration import (
    Calibration,
    LightShare,
    MelBudget,
    VisqolBudget,
    calibrate,
    segment_mel_drops,
)
from speechbrain_dsl.evaluation.metrics import mel_distance
from speechbrain_dsl.lobes.codec import DSLCodec
from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained" / "dsl-codec-16k"
SUBSETS = ["a", "b", "a", "b", "b", "a"]

#: The recipe's former results, from its ``CodecBrain`` methods on the same audio
#: (``calibrate`` for LightShare/MelBudget; ``calibrate_on_visqol`` for VisqolBudget:
#: its share, ``{share: worst subset drop}`` in order, and the threshold it left set).
RECORDED = {
    "tiny": {
        LightShare(0.5): {"threshold": 0.040489837527275085},
        MelBudget(0.5): {"threshold": 0.019345050677657127},
        VisqolBudget(1.0, LightShare(0.75), steps=3, every=2): {
            "share": 0.4690476134419441,
            "tried": [
                (0.7504761815071106, 2.2880845069885254),
                (0.3752380907535553, -0.3732571601867676),
                (0.562857136130333, 1.0182714462280273),
                (0.4690476134419441, 0.6082141399383545),
            ],
            "threshold": 0.03616754710674286,
        },
        VisqolBudget(0.05, MelBudget(0.5), steps=2, every=1): {
            "share": 0.1314285695552826,
            "tried": [(0.1314285695552826, -0.5005081494649252)],
            "threshold": 0.019345050677657127,
        },
    },
    "pretrained": {
        LightShare(0.5): {"threshold": 0.7664575576782227},
        MelBudget(0.05): {"threshold": 0.6196545362472534},
        VisqolBudget(0.5, LightShare(0.75), steps=3, every=2): {
            "share": 0.2916666716337204,
            "tried": [
                (0.7777777910232544, 1.191990852355957),
                (0.3888888955116272, 1.191990852355957),
                (0.1944444477558136, 0.29025471210479736),
                (0.2916666716337204, 0.29025471210479736),
            ],
            "threshold": 0.7113991975784302,
        },
        VisqolBudget(0.1, MelBudget(0.05), steps=2, every=1): {
            "share": 0.0,
            "tried": [
                (0.1111111119389534, 0.19350385665893555),
                (0.0555555559694767, 0.19350385665893555),
                (0.02777777798473835, 0.19350385665893555),
            ],
            "threshold": 0.5565432906150818,
        },
    },
}


def tiny_model():
    """A tiny codec (10-frame segments: 160 samples, whole mel hops) and 6 rows of audio."""
    torch.manual_seed(0)
    codec = DSLCodec(
        make_dsl_encoder(segment_frames=10),
        ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16),
        make_decoder(),
        sample_rate=16000,
    )
    gen = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(6):
        wav = torch.randn(16000, generator=gen) * 0.01
        for start in range(0, 16000, 4000):  # loud and quiet stretches
            wav[start : start + 2000] *= 3 + 20 * float(torch.rand(1, generator=gen))
        rows.append(wav)
    wav = torch.stack(rows)
    codec.train()
    codec(wav[:, None])  # k-means initialises the codebooks
    return codec.eval(), wav, torch.tensor([1.0, 0.8, 1.0, 0.55, 0.9, 1.0])


def pretrained_model():
    """The shipped DSL model and its held-out check clips (ViSQOL needs a codec that codes)."""
    from speechbrain_dsl.evaluation.check_clips import read_check_clips
    from speechbrain_dsl.training.checkpoints import load_codec

    codec = load_codec(None, PRETRAINED).eval()
    clips, _ = read_check_clips(PRETRAINED)
    return codec, torch.stack(clips[:6]), torch.tensor([1.0, 0.9, 1.0, 0.7, 1.0, 0.8])


def batches_of(wav, lens):
    """Three batches of two rows, each padded to its longest row as ``PaddedBatch`` does."""
    batches = []
    for b in range(3):
        rows = slice(2 * b, 2 * b + 2)
        w, n = wav[rows], lens[rows]
        w = w[:, : int(round(float(n.max()) * w.shape[-1]))]
        batches.append((w, n / n.max(), SUBSETS[rows]))
    return batches


def fake_visqol(estimate, reference, lengths=None):
    """A ViSQOL stand-in for the tiny codec, whose decodes all score ViSQOL's floor."""
    return 5.0 - mel_distance(estimate, reference, lengths)


def check_recorded(result, recorded):
    # float32 kernels differ between CPUs: the recorded thresholds (an Intel Xeon with
    # AVX-512) and an AMD EPYC without it are up to 5e-5 apart, relative
    assert result.threshold == pytest.approx(recorded["threshold"], rel=2e-4, abs=1e-7)
    if "tried" in recorded:
        assert list(result.tried) == [share for share, _ in recorded["tried"]]  # same shares
        # the tiny codec decodes near silence, where log-mel amplifies those float
        # differences: its fake ViSQOL drops are up to 0.04 apart between the two CPUs
        assert list(result.tried.values()) == pytest.approx(
            [drop for _, drop in recorded["tried"]], rel=1e-5, abs=0.1
        )
        assert result.share == recorded["share"]


@pytest.mark.parametrize("policy", list(RECORDED["tiny"]), ids=repr)
def test_calibrate_gives_the_recipes_former_results_on_a_tiny_model(policy, monkeypatch):
    monkeypatch.setattr(calibration, "visqol", fake_visqol)
    codec, wav, lens = tiny_model()
    check_recorded(calibrate(codec, batches_of(wav, lens), policy), RECORDED["tiny"][policy])


def test_calibrate_gives_the_recipes_former_results_with_real_visqol():
    codec, wav, lens = pretrained_model()
    batches = batches_of(wav, lens)
    for policy, recorded in RECORDED["pretrained"].items():
        check_recorded(calibrate(codec, batches, policy), recorded)


def test_calibrate_sets_nothing_on_the_codec():
    codec, wav, lens = tiny_model()
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    result = calibrate(codec, batches_of(wav, lens), MelBudget(0.5))
    assert codec.threshold == 0.5 != result.threshold  # conftest's tiny DSL default
    assert all(torch.equal(before[k], v) for k, v in codec.state_dict().items())
    assert not codec.training
    codec.encoder.dsl.threshold = result.threshold
    assert codec.threshold == result.threshold  # float32: stored as returned


def test_light_share_policy_sends_that_share_of_the_valid_segments_light():
    codec, wav, lens = tiny_model()
    result = calibrate(codec, [(wav, lens)], LightShare(0.3))
    predicted = codec.predict_distances(wav, lens)
    valid = codec.encoder.dsl.valid_segments(lens, codec.frames_for(wav.shape[-1]), 6, "cpu")
    light = predicted[valid] < result.threshold
    assert (result.share, result.tried) == (0.3, {})
    assert int(light.sum()) == round(0.3 * int(valid.sum()))
    assert int((predicted[~valid] < result.threshold).sum()) > 0  # padding would count else


def test_mel_budget_keeps_the_mean_segment_mel_drop_within_the_budget():
    """The threshold sends light the segments with the lowest predictions, as many
    as keep the mean mel drop (over all valid segments) within the budget."""
    torch.manual_seed(0)
    codec = load_hparams()["codec"].eval()
    wav = torch.randn(3, 4 * 16000) * torch.tensor([[0.3], [0.03], [0.003]])
    codec.encode(wav)  # k-means initialises the codebooks
    lens = torch.tensor([1.0, 1.0, 0.6])  # the padded segments do not count
    drops = segment_mel_drops(codec, wav, lens)
    predicted = codec.predict_distances(wav, lens)
    valid = torch.tensor([[True] * 4, [True] * 4, [True, True, True, False]])
    order = predicted[valid].argsort()
    mean_drop = drops[valid][order].cumsum(0) / int(valid.sum())
    budget = float(mean_drop.max() + mean_drop.min()) / 2  # some segments fit, not all
    result = calibrate(codec, [(wav, lens)], MelBudget(budget))
    light = predicted[valid] < result.threshold
    assert 0 < int(light.sum()) < int(valid.sum())
    assert result.share == int(light.sum()) / int(valid.sum())
    assert float(drops[valid][light].sum()) / int(valid.sum()) <= budget
    next_segment = order[int(light.sum())]  # the lowest prediction kept full
    assert float(drops[valid][light].sum() + drops[valid][next_segment]) / int(valid.sum()) > budget


def test_visqol_budget_keeps_the_worst_subset_drop_within_the_budget(monkeypatch):
    """The share the start policy allows is halved while the mixed pass loses more
    ViSQOL than the budget on a subset; utterances routed all full keep the full
    pass's scores. On the shipped DSL model and its held-out check clips."""
    real_visqol, calls = calibration.visqol, []
    monkeypatch.setattr(
        calibration, "visqol", lambda *args: calls.append(len(args[0])) or real_visqol(*args)
    )
    codec, wav, _ = pretrained_model()
    wav, lens = wav[:4], torch.ones(4)
    batches = [(wav, lens, ["a", "a", "b", "b"])]
    full = calibration._pass_visqol(codec, wav, lens, "full")
    assert float(full.mean()) > 1.5 and calls == [4]  # a codec that codes (3 s clips score low)
    nothing_light = calibration._pass_visqol(
        codec, wav, lens, "mixed", float("-inf"), unless_all_full=full
    )
    assert torch.equal(nothing_light, full) and calls == [4]  # neither decoded nor scored

    def worst_drop(threshold):
        mixed = calibration._pass_visqol(codec, wav, lens, "mixed", threshold)
        drop = full - mixed
        return max(float(drop[:2].mean()), float(drop[2:].mean()))

    generous = calibrate(codec, batches, VisqolBudget(10.0, LightShare(0.75), steps=2))
    share = generous.share
    assert share == pytest.approx(0.75, abs=0.1) and list(generous.tried) == [share]
    high, drop_at_high = share, generous.tried[share]
    assert drop_at_high > 0.2
    assert drop_at_high == pytest.approx(worst_drop(generous.threshold), abs=1e-6)
    budget = drop_at_high / 2
    result = calibrate(codec, batches, VisqolBudget(budget, LightShare(0.75), steps=2))
    tried = result.tried
    assert list(tried)[:2] == [high, high / 2] and len(tried) == 3 and result.share < high
    assert result.share == 0.0 or tried[result.share] <= budget
    assert all(drop > budget for s, drop in tried.items() if s > result.share)
    light = codec.predict_distances(wav, lens) < result.threshold
    assert float(light.float().mean()) == pytest.approx(result.share, abs=0.1)
    if result.share > 0:
        assert worst_drop(result.threshold) == pytest.approx(tried[result.share], abs=1e-6)


def test_visqol_budget_scores_every_nth_row_across_batches(monkeypatch):
    """``every``: the rows counted across batches from 0, as validation picks them."""
    scored = []

    def counting_visqol(estimate, reference, lengths=None):
        scored.extend(float(row[0]) for row in reference)
        return fake_visqol(estimate, reference, lengths)

    monkeypatch.setattr(calibration, "visqol", counting_visqol)
    codec, wav, lens = tiny_model()
    calibrate(codec, batches_of(wav, lens), VisqolBudget(100.0, LightShare(0.5), every=4))
    assert set(scored) == {float(wav[0, 0]), float(wav[4, 0])}  # rows 0 and 4 only


def test_calibrate_refuses_what_it_cannot_use():
    codec, wav, lens = tiny_model()
    with pytest.raises(ValueError, match="expected a codec with a DSL encoder"):
        calibrate(make_codec(dsl=False), [(wav, lens)], LightShare(0.5))
    with pytest.raises(ValueError, match="no calibration audio"):
        calibrate(codec, [], LightShare(0.5))
    with pytest.raises(ValueError, match=r"policy must be a LightShare.*got 0.5"):
        calibrate(codec, [(wav, lens)], 0.5)
    with pytest.raises(ValueError, match=r"expected wav \[batch, samples\], got \(6, 1, 16000\)"):
        calibrate(codec, [(wav[:, None], lens)], LightShare(0.5))
    with pytest.raises(ValueError, match="expected batches of .*got Tensor"):
        calibrate(codec, [wav], LightShare(0.5))
    with pytest.raises(ValueError, match=r"a subset name per row \(6\), got 2"):
        calibrate(codec, [(wav, lens, ["a", "b"])], LightShare(0.5))
    with pytest.raises(ValueError, match=r"share must be a number in \[0, 1\], got 1.5"):
        LightShare(1.5)
    with pytest.raises(ValueError, match="max_drop must be a finite number, got nan"):
        MelBudget(float("nan"))
    with pytest.raises(ValueError, match="start must be a LightShare or a MelBudget"):
        VisqolBudget(0.1, start=0.5)
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        VisqolBudget(0.1, LightShare(0.5), steps=-1)
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        VisqolBudget(0.1, LightShare(0.5), every=0)
    assert isinstance(calibrate(codec, [(wav, None)], LightShare(0.5)), Calibration)
