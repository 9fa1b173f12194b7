"""Parameter and MAC accounting of the DSL encoder, and its command line."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import BASELINE_YAML, DSL_YAML, ROOT, load_hparams, make_encoder
from torch import nn

from speechbrain_dsl.evaluation.efficiency import (
    PARTS,
    count_macs,
    count_params,
    executed_macs,
    format_table,
    part_costs,
    predicted_mac_ratio,
)

NUMERIC_PARTS = ("base", "switch", "full_tail", "light_tail", "encoder")


@pytest.fixture(scope="module")
def default_model():
    torch.manual_seed(0)
    hp = load_hparams()
    return hp, part_costs(hp["encoder"], hp["sample_rate"])


def analytic_macs(module, *args):
    """Conv and linear MACs from the shapes seen by forward hooks (no padding waste)."""
    total = [0]
    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv1d):

            def conv_hook(mod, inp, out):
                per_out = mod.in_channels // mod.groups * mod.kernel_size[0]
                total[0] += out.numel() * per_out

            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):

            def linear_hook(mod, inp, out):
                total[0] += out.numel() * mod.in_features

            handles.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        module(*args)
    for h in handles:
        h.remove()
    return total[0]


# ----------------------------------------------------------------- default model


def test_default_encoder_has_about_70k_parameters(default_model):
    hp, costs = default_model
    n = count_params(hp["soundstream_encoder"])
    assert 60_000 <= n <= 80_000
    assert n == 71_712
    p = costs["params"]
    assert p["encoder"] == p["base"] + p["mask"] + p["full_tail"] == n + p["mask"]
    assert p["mask"] == 8  # one gain per channel of the first conv


def test_light_tail_is_at_least_paper_factor_cheaper_than_full_tail(default_model):
    _, costs = default_model
    p, m = costs["params"], costs["macs_per_second"]
    assert p["full_tail"] / p["light_tail"] >= 20.9
    assert m["full_tail"] / m["light_tail"] >= 12.3


def test_part_costs_cover_every_part_and_add_up(default_model):
    _, costs = default_model
    assert set(costs) == {"params", "macs_per_second"}
    assert set(costs["params"]) == set(PARTS) == set(costs["macs_per_second"])
    m = costs["macs_per_second"]
    assert all(m[k] > 0 for k in ("base", "switch", "full_tail", "light_tail"))
    assert m["encoder"] == pytest.approx(m["base"] + m["mask"] + m["full_tail"], rel=1e-3)


def test_part_macs_match_an_analytic_count_of_convolutions(default_model):
    """count_macs counts every conv, including the 1x1 ones run as batched matmuls."""
    hp, costs = default_model
    enc = hp["encoder"].eval()
    wav = torch.randn(1, 1, 16000)
    with torch.no_grad():
        feats = enc.dsl.mask(enc.base(wav))
    m = costs["macs_per_second"]
    assert m["base"] == pytest.approx(analytic_macs(enc.base, wav), rel=0.01)
    assert m["full_tail"] == pytest.approx(analytic_macs(enc.dsl.full_tail, feats), rel=0.01)
    assert m["light_tail"] == pytest.approx(analytic_macs(enc.dsl.light_tail, feats), rel=0.01)
    assert m["switch"] == pytest.approx(analytic_macs(enc.dsl.switch, feats, 16000), rel=0.01)


@pytest.mark.parametrize(
    "route",
    [
        [True, False, True, True, False, True],
        [True] * 6,
        [False] * 6,
        [False, True, False, False, False, False],
    ],
    ids=["two_thirds_light", "all_light", "all_full", "one_light"],
)
def test_mixed_mode_executed_macs_equal_base_switch_and_routed_tail_shares(default_model, route):
    hp, costs = default_model
    enc = hp["encoder"]
    assert enc.dsl.segment_frames == 50  # one segment per 1-second clip
    clips = len(route)
    route = torch.tensor(route)[:, None]
    wav = torch.randn(clips, 1, 16000) * 0.3
    m = costs["macs_per_second"]
    n_light = int(route.sum())
    expected = (
        clips * (m["base"] + m["mask"] + m["switch"])
        + n_light * m["light_tail"]
        + (clips - n_light) * m["full_tail"]
    )
    assert executed_macs(enc, wav, route=route) == pytest.approx(expected, rel=0.01)
    share = n_light / clips
    ratio = expected / (clips * m["encoder"])
    assert predicted_mac_ratio(costs, share) == pytest.approx(ratio, rel=1e-9)


def test_full_and_light_modes_execute_only_their_tail(default_model):
    hp, costs = default_model
    enc = hp["encoder"]
    m = costs["macs_per_second"]
    wav = torch.randn(3, 1, 16000) * 0.3
    full = executed_macs(enc, wav, mode="full")
    light = executed_macs(enc, wav, mode="light")
    assert full == pytest.approx(3 * m["encoder"], rel=0.01)
    assert light == pytest.approx(3 * (m["base"] + m["mask"] + m["light_tail"]), rel=0.01)


def test_executed_macs_restores_mode_and_training_state():
    enc = load_hparams(mode="mixed")["encoder"].train()
    executed_macs(enc, torch.randn(1, 1, 3200), mode="light")
    assert enc.dsl.mode == "mixed" and enc.training
    enc.eval()
    executed_macs(enc, torch.randn(1, 1, 3200), mode="full")
    assert enc.dsl.mode == "mixed" and not enc.training


def test_predicted_mac_ratio_interpolates_between_tails():
    costs = {
        "macs_per_second": {
            "base": 10.0,
            "mask": 0.0,
            "switch": 1.0,
            "full_tail": 89.0,
            "light_tail": 9.0,
            "encoder": 99.0,
        }
    }
    assert predicted_mac_ratio(costs, 0.0) == pytest.approx(100 / 99)
    assert predicted_mac_ratio(costs, 1.0) == pytest.approx(20 / 99)
    assert predicted_mac_ratio(costs, 0.8) == pytest.approx((11 + 0.8 * 9 + 0.2 * 89) / 99)


def test_count_macs_counts_linear_layers():
    assert count_macs(nn.Linear(5, 7), torch.randn(3, 5)) == 3 * 5 * 7
    assert count_params(None) == 0
    assert count_params(nn.Linear(5, 7)) == 42


def test_part_costs_rejects_an_encoder_without_dsl():
    with pytest.raises(ValueError, match="expected a DSLEncoder, got SoundStreamEncoder"):
        part_costs(make_encoder())


def test_format_table_lists_every_part_and_the_ratios(default_model):
    _, costs = default_model
    table = format_table(costs)
    for part in PARTS:
        assert part in table
    assert "71,648" in table  # full tail params, thousands separator
    assert "full/light tail params" in table and "full/light tail MACs/s" in table


# ---------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def cli_runs():
    """Runs the CLI cases concurrently (each pays the torch import once)."""
    cases = {
        "json": [str(DSL_YAML.relative_to(ROOT)), "--json"],
        "missing": ["hparams/does_not_exist.yaml", "--json"],
        "baseline": [str(BASELINE_YAML.relative_to(ROOT)), "--json"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "speechbrain_dsl.evaluation.efficiency", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in cases.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err)
    return results


def test_cli_json_reports_params_and_macs_per_second_of_every_part(cli_runs, default_model):
    code, out, err = cli_runs["json"]
    assert code == 0, err
    data = json.loads(out)
    assert {"params", "macs_per_second"} <= set(data)
    for key in ("params", "macs_per_second"):
        for part in NUMERIC_PARTS:
            assert isinstance(data[key][part], (int, float)) and data[key][part] > 0
    _, costs = default_model
    assert data["params"] == costs["params"]
    for part in NUMERIC_PARTS:
        assert data["macs_per_second"][part] == pytest.approx(
            costs["macs_per_second"][part], rel=1e-6
        )


def test_cli_missing_file_exits_nonzero_naming_the_file(cli_runs):
    code, out, err = cli_runs["missing"]
    assert code != 0
    assert "hparams/does_not_exist.yaml" in err
    assert "not found" in err
    assert "Traceback" not in err
    assert out == ""


def test_cli_baseline_yaml_gives_a_clear_error(cli_runs):
    code, out, err = cli_runs["baseline"]
    assert code != 0
    assert "expected a DSLEncoder" in err and "SoundStreamEncoder" in err
    assert "Traceback" not in err
    assert out == ""


def test_executed_macs_of_a_codec_follow_the_codecs_own_routing(default_model, monkeypatch):
    """Counting on the codec runs the encoder as encode() does (input scale included)."""
    hp, costs = default_model
    codec = hp["codec"].eval()
    gen = torch.Generator().manual_seed(0)
    wav = (
        torch.randn(4, 1, 16000, generator=gen)
        * torch.tensor([0.003, 0.01, 0.05, 0.3])[:, None, None]
    )
    # one segment a clip: a threshold between the middle two predictions routes both ways
    predicted = codec.predict_distances(wav).detach().flatten().sort().values
    assert predicted.numel() == 4 and predicted[1] < predicted[2]
    monkeypatch.setattr(codec, "threshold", float(predicted[1] + predicted[2]) / 2)
    with torch.no_grad():
        share = codec.encode_with_routing(wav, mode="mixed").routing.light_share
    assert share == 0.5
    m = costs["macs_per_second"]
    expected = 4 * (m["base"] + m["mask"] + m["switch"]) + 4 * (
        share * m["light_tail"] + (1 - share) * m["full_tail"]
    )
    mixed = executed_macs(codec, wav, mode="mixed")
    assert mixed == pytest.approx(expected, rel=0.01)
    assert executed_macs(codec, wav, mode="light") < mixed < executed_macs(codec, wav, mode="full")
