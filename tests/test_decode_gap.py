"""The switch's decoded target: DecodeGap, and the codec recipe regressing to it."""

import contextlib
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import make_codec

from speechbrain_dsl.nnet.decode_gap import DecodeGap
from speechbrain_dsl.nnet.dsl_loss import DSLLoss

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "LibriTTS" / "codec"


def _voiced(seconds=1.0, rate=16000, pause=(0.5, 0.75)):
    """A harmonic tone with a pause: speech-like enough for a spectrogram."""
    t = torch.arange(int(seconds * rate)) / rate
    wav = sum(torch.sin(2 * torch.pi * 150 * k * t) / k for k in range(1, 8))
    wav[int(pause[0] * rate) : int(pause[1] * rate)] *= 1e-3
    return 0.1 * wav[None, None]


def test_gap_is_the_light_decodes_extra_error_per_segment_and_level_invariant():
    torch.manual_seed(0)
    gap = DecodeGap(16000, hop_length=320, segment_frames=10)  # 200-ms segments
    wav = _voiced()
    full = wav + 0.002 * torch.randn_like(wav)
    light = wav.clone()
    light[..., :3200] += 0.05 * torch.randn(3200)  # the light decode is bad in segment 0
    target = gap(wav, full, light)[0]
    assert target.shape == (5,)
    assert target[0] > 10 * target[1:].max()
    for gain in (0.01, 3.0):  # scaling input and decodes together changes nothing
        assert torch.allclose(gap(gain * wav, gain * full, gain * light)[0], target, atol=1e-3)


def test_errors_far_below_the_utterances_level_count_for_nothing():
    torch.manual_seed(1)
    gap = DecodeGap(16000, hop_length=320, segment_frames=10, floor_db=-40.0)
    wav = _voiced()
    light = wav.clone()
    pause = slice(8000 + 640, 12000 - 640)  # inside segment 2 (400-600 ms) ... and 3
    light[..., pause] += 1e-5 * torch.randn(pause.stop - pause.start)  # -80 dB: inaudible
    assert gap(wav, wav, light)[0].max() < 1e-3
    no_floor = DecodeGap(16000, hop_length=320, segment_frames=10, floor_db=-200.0)
    assert no_floor(wav, wav, light)[0, 2:4].min() > 0.5  # in log-mel it would look far
    light[..., pause] += 0.05 * torch.randn(pause.stop - pause.start)  # loud in the pause
    assert gap(wav, wav, light)[0, 2:4].min() > 0.5


def test_padded_frames_are_left_out_and_bad_shapes_are_refused():
    torch.manual_seed(2)
    gap = DecodeGap(16000, hop_length=320, segment_frames=10)
    wav = _voiced().repeat(2, 1, 1)
    light = wav.clone()
    # garbage only in item 1's padding, beyond the last valid frame's window (640 samples)
    light[1, :, 8640:] += 0.5 * torch.randn(16000 - 8640)
    target = gap(wav, wav, light, lengths=torch.tensor([1.0, 0.5]))
    assert target[1].abs().max() == 0 and target.shape == (2, 5)
    assert gap(wav, wav, light)[1, 3:].min() > 0  # counted without the lengths
    with pytest.raises(ValueError, match="wav, full and light must have one shape"):
        gap(wav, wav, light[..., :-1])


def test_dsl_loss_refuses_a_switch_target_of_another_shape():
    from speechbrain_dsl.nnet.dsl import DSLOutput

    out = DSLOutput(
        features=None,
        masked=torch.ones(1, 2, 4),
        predicted=torch.zeros(1, 2),
        distance=torch.ones(1, 2),
        route=None,
        segment_mask=torch.ones(1, 2, dtype=torch.bool),
    )
    with pytest.raises(ValueError, match=r"switch_target must have the switch's shape \(1, 2\)"):
        DSLLoss()(out, switch_target=torch.zeros(1, 3))


def _recipe():
    spec = importlib.util.spec_from_file_location("codec_recipe_gap", RECIPE / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


@pytest.mark.parametrize("switch_target", ["latent", "decoded"])
def test_recipe_trains_the_switch_on_the_target_its_yaml_names(switch_target):
    """With ``switch_target: decoded`` the switch term is L1(predicted, gap of the two
    decodes, both with every codebook: the training pass's own decode drops a random
    number of them) and the light tail is still distilled on the feature distance."""
    torch.manual_seed(3)
    recipe = _recipe()
    codec = make_codec().train()
    hop, segment_frames = codec.encoder.hop, codec.encoder.dsl.segment_frames
    gap = DecodeGap(16000, hop_length=hop, segment_frames=segment_frames, n_mels=8)
    weights = {"mel": 1.0, "dsl_switch": 1.0, "dsl_light": 1.0, "light_mel": 0.5}
    l1 = lambda a, b: F.l1_loss(a, b)  # noqa: E731
    brain = object.__new__(recipe.CodecBrain)
    seen = []

    def dsl_loss(out, lens, switch_target=None):  # DSLLoss, recording the target it gets
        seen.append(switch_target)
        return DSLLoss()(out, lens, switch_target)

    brain.hparams = SimpleNamespace(
        loss_weights=weights, dsl_loss=dsl_loss, decode_gap=gap, switch_target=switch_target
    )
    brain.modules = SimpleNamespace(codec=codec, mel_loss=l1, stft_loss=l1, level_loss=l1)
    brain.training_ctx = contextlib.nullcontext()
    wav, lens = 0.1 * torch.randn(2, 1, 30 * hop), torch.ones(2)
    out = codec(wav, lens)
    wav_hat = out.wav_hat[..., : wav.shape[-1]].float()
    torch.manual_seed(4)  # the light decode draws nothing random, but be sure
    terms = brain.generator_losses(out, wav, wav_hat, lens, adversarial=False)
    _, light_decode = brain.light_pass_terms(out.dsl.light_features, wav)
    with torch.no_grad():  # the full pass as a user decodes it: tokens of every codebook
        tokens, _ = codec.encode(wav, mode="full")
        full_decode = codec.decode(tokens)[..., : wav.shape[-1]]
    codec.train()
    target = gap(wav, full_decode, light_decode.detach(), lens)
    dropped = gap(wav, wav_hat.detach(), light_decode.detach(), lens)
    latent = out.dsl.distance
    predicted = out.dsl.predicted
    expected = target if switch_target == "decoded" else latent
    other = latent if switch_target == "decoded" else target
    assert float(terms["dsl_switch"].detach()) == pytest.approx(
        float(l1(predicted, expected).detach()), rel=1e-5
    )
    assert float(terms["dsl_switch"].detach()) != pytest.approx(
        float(l1(predicted, other).detach()), rel=1e-3
    )
    if switch_target == "decoded":  # the training pass dropped codebooks (seeded): not that
        assert torch.allclose(seen[0], target, atol=1e-6)
        assert not torch.allclose(seen[0], dropped, atol=1e-4)
    else:
        assert seen == [None]
    assert float(terms["dsl_light"].detach()) == pytest.approx(
        float(latent.detach().mean()), rel=1e-5
    )


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_switch_learns_at_its_own_rate_and_the_rest_at_the_codecs(scale):
    """``lr_switch_scale`` puts the switch (and only it) in a group at ``scale`` times
    the generator's rate; at 1 the optimizer has the single group older checkpoints hold,
    and a step moves the switch ``scale`` times as far as Adam's first step moves anything."""
    torch.manual_seed(5)
    recipe = _recipe()
    codec = make_codec()
    brain = object.__new__(recipe.CodecBrain)
    brain.hparams = SimpleNamespace(lr_generator=1e-3, lr_switch_scale=scale)
    brain.modules = SimpleNamespace(codec=codec)
    optimizer = torch.optim.Adam(brain._generator_param_groups(), lr=1e-3)
    switch = {id(p) for p in codec.encoder.dsl.switch.parameters()}
    assert len(optimizer.param_groups) == (1 if scale == 1.0 else 2)
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in codec.parameters())  # each once
    before = {n: p.detach().clone() for n, p in codec.named_parameters()}
    for p in codec.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # Adam's first step moves every weight by its group's lr
    for name, p in codec.named_parameters():
        moved = float((before[name] - p.detach()).abs().max())
        lr = 1e-3 * (scale if id(p) in switch else 1.0)
        assert moved == pytest.approx(lr, rel=1e-3), name


def test_a_switch_rate_for_a_codec_without_a_switch_is_refused():
    recipe = _recipe()
    brain = object.__new__(recipe.CodecBrain)
    brain.hparams = SimpleNamespace(lr_generator=1e-3, lr_switch_scale=10.0)
    brain.modules = SimpleNamespace(codec=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"lr_switch_scale=10.0: the codec has no switch"):
        brain._generator_param_groups()


def test_validation_reports_each_subsets_light_share_and_the_switch_against_the_decode_gap():
    """With several subsets, validation logs ``light_share@<subset>`` (the mixed pass's
    share among that subset's own segments) and ``switch_spearman_decoded``, the rank
    correlation of the switch's predictions with the gap between the full and light
    decodes: what the switch is trained to predict under ``switch_target: decoded``."""
    from scipy.stats import spearmanr

    torch.manual_seed(6)
    recipe = _recipe()
    codec = make_codec().eval()
    hop, segment_frames = codec.encoder.hop, codec.encoder.dsl.segment_frames
    gap = DecodeGap(16000, hop_length=hop, segment_frames=segment_frames, n_mels=8)
    wav = 0.1 * torch.randn(4, 40 * hop)
    wav[1, : 20 * hop] *= 0.01  # quiet and loud segments: both routes
    lens = torch.tensor([1.0, 1.0, 0.75, 0.5])
    with torch.no_grad():
        predicted = codec.predict_distances(wav[:, None], lens)
    codec.threshold = float(predicted.median())
    brain = object.__new__(recipe.CodecBrain)
    brain.hparams = SimpleNamespace(
        valid_visqol=False, eval_modes=["full", "light", "mixed"], decode_gap=gap
    )
    brain.modules = SimpleNamespace(codec=codec, mel_loss=F.l1_loss)
    brain.device, brain.position, brain.visqol_every = "cpu", 0, 1
    brain.several_subsets, brain.stats = True, {"mel_loss": []}
    subsets = ["dev-clean", "dev-recorded", "dev-clean", "dev-recorded"]
    paths = [f"/c/{s}/1/2/u{i}.wav" for i, s in enumerate(subsets)]
    brain.evaluate_batch(SimpleNamespace(sig=(wav, lens), wav=paths), stage=None)
    summary = brain.summarize()
    with torch.no_grad():
        routing = codec.encode_with_routing(wav, lens, mode="mixed").routing
        decoded = {
            m: codec.decode(codec.encode_with_routing(wav, lens, mode=m).tokens, lens)
            for m in ("full", "light")
        }
        _, out = codec.encode_features(wav[:, None], lens, mode="oracle")
    for subset in ("dev-clean", "dev-recorded"):
        items = [i for i, s in enumerate(subsets) if s == subset]
        routes = torch.cat([routing.route[i][routing.segment_mask[i]] for i in items]).float()
        assert summary[f"light_share@{subset}"] == pytest.approx(float(routes.mean()))
    shares = [summary[f"light_share@{s}"] for s in ("dev-clean", "dev-recorded")]
    assert shares[0] != pytest.approx(shares[1])  # else a pooled share would pass
    target = gap(
        wav, *(decoded[m][..., : wav.shape[-1]].squeeze(1) for m in ("full", "light")), lens
    )
    mask = out.segment_mask
    expected = spearmanr(out.predicted[mask], target[mask]).statistic
    assert summary["switch_spearman_decoded"] == pytest.approx(float(expected), abs=1e-6)
    assert summary["switch_spearman_decoded"] != pytest.approx(summary["switch_spearman"])
