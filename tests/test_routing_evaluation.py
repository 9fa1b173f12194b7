"""Routing evaluation: calibration utilities and the AudioSet evaluation end to end."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.data.synthetic import make_audioset
from speechbrain_dsl.evaluation.calibration import threshold_for_quality_drop, threshold_for_share
from speechbrain_dsl.training.checkpoints import (
    AtomicCheckpointer,
    find_codec_checkpoint,
    load_codec,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "hparams" / "soundstream_dsl.yaml"
FIGURES = (
    "fig3a_predicted_distance.png",
    "fig3bc_visqol.png",
    "fig3bc_mel.png",
    "fig4_routes_silence.png",
    "fig4_routes_speech.png",
    "fig7_predicted_vs_true.png",
    "tradeoff.png",
)


@pytest.mark.parametrize("share", [0.0, 0.3, 0.8, 1.0])
def test_calibrated_threshold_hits_its_share_on_held_out_predictions(share):
    gen = torch.Generator().manual_seed(0)
    predictions = torch.cat(
        [torch.rand(4000, generator=gen) * 0.2, 0.5 + torch.rand(4000, generator=gen)]
    )
    shuffled = predictions[torch.randperm(8000, generator=gen)]
    calibration, held_out = shuffled[:4000], shuffled[4000:]
    threshold = threshold_for_share(calibration, share)
    assert float((held_out < threshold).float().mean()) == pytest.approx(share, abs=0.03)
    assert float((calibration < threshold).float().mean()) == pytest.approx(share, abs=1e-3)


def test_quality_drop_calibration_takes_the_largest_share_within_the_budget():
    predicted = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    drop = torch.tensor([0.0, 0.1, 0.1, 1.0, 2.0])
    threshold, share = threshold_for_quality_drop(predicted, drop, max_drop=0.05)
    assert share == 0.6 and 0.3 < threshold < 0.4  # mean drop 0.2 / 5 = 0.04
    assert threshold_for_quality_drop(predicted, drop, max_drop=-1.0)[1] == 0.0
    with pytest.raises(ValueError, match="share"):
        threshold_for_share(predicted, 1.5)


def test_load_codec_restores_weights_and_threshold_and_rejects_bad_files(tmp_path):
    with open(MODEL) as f:
        codec = load_hyperpyyaml(f)["codec"]
    codec.threshold = 0.1234
    AtomicCheckpointer(tmp_path / "save", {"codec": codec}).save_checkpoint(meta={"mel_full": 1.0})
    loaded = load_codec(MODEL, tmp_path / "save")
    assert loaded.threshold == pytest.approx(0.1234)
    assert not loaded.training
    ckpt = find_codec_checkpoint(tmp_path / "save")
    torch.testing.assert_close(
        loaded.state_dict()["decoder.embed.weight"], codec.state_dict()["decoder.embed.weight"]
    )
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.ckpt"):
        load_codec(MODEL, truncated)
    with pytest.raises(ValueError, match="not found"):
        load_codec(MODEL, tmp_path / "nowhere")


def test_evaluation_writes_the_report_and_every_figure(tmp_path):
    data = make_audioset(tmp_path / "data", seed=5, clips_per_class=3)
    with open(MODEL) as f:
        codec = load_hyperpyyaml(f)["codec"]
    codec.eval().encode(torch.randn(2, 16000) * 0.1)  # initialise the codebooks
    # the untrained switch predicts every segment over the YAML's threshold: the median
    # prediction of the evaluated clips instead routes half of their 12 segments light
    sys.path.insert(0, str(ROOT / "recipes" / "AudioSet" / "routing"))
    from evaluate import load_clips, prepare_audioset

    manifest = tmp_path / "manifest.json"
    prepare_audioset(
        data / "eval_segments.csv", data / "class_labels_indices.csv", data / "audio", manifest
    )
    clips = load_clips(manifest, codec.sample_rate, 2.0, 40, seed=1986)  # the YAML's
    with torch.no_grad():
        predicted = torch.cat([codec.predict_distances(w).flatten() for _, w in clips.values()])
    middle = predicted.sort().values[5:7]
    assert predicted.numel() == 12 and middle[0] < middle[1]
    codec.threshold = float(middle.mean())
    AtomicCheckpointer(tmp_path / "save", {"codec": codec}).save_checkpoint()
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "evaluate.py",
        "hparams/evaluate.yaml",
        f"--data_folder={data}",
        f"--codec_checkpoint={tmp_path / 'save'}",
        f"--model_yaml={MODEL}",
        f"--output_folder={out}",
        "--clip_seconds=2.0",
        "--wall_repeats=1",
        "--sweep_shares=[0.0,0.5,1.0]",
        "--sweep_max_clips_per_class=2",
    ]
    result = subprocess.run(
        cmd,
        cwd=ROOT / "recipes" / "AudioSet" / "routing",
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "report.md").read_text()
    for figure in FIGURES:
        assert (out / figure).stat().st_size > 5000, figure
        assert f"({figure})" in report
    assert "nan" not in report.split("## Switch")[0].lower().replace("n/a", "")
    rows = {
        line.split("|")[1].strip(): line
        for line in report.splitlines()
        if line.startswith("| silence |") or line.startswith("| speech |")
    }
    assert set(rows) == {"silence", "speech"}
    assert re.search(r"\| silence \| 3 \| \d+\.\d%", report)
    results = json.loads((out / "results.json").read_text())
    segments = json.loads((out / "segments.json").read_text())
    assert len(segments) == 6 * 2 and {"predicted", "true", "light"} <= set(segments[0])
    # the switch's numbers, recomputed from the segments it scored
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    pred, true = [s["predicted"] for s in segments], [s["true"] for s in segments]
    switch = results["switch"]
    assert switch["spearman"] == pytest.approx(spearmanr(pred, true).statistic, abs=1e-9)
    is_speech = [s["class"] == "speech" for s in segments]
    assert switch["class_auroc"] == pytest.approx(roc_auc_score(is_speech, pred), abs=1e-9)
    assert "telling speech from silence" in report
    # routes both ways: half the segments light (the threshold above), per class as routed
    assert switch["overall_light_share"] == 0.5
    assert [s["light"] for s in segments] == [p < results["threshold"] for p in pred]
    for label in ("silence", "speech"):
        routed = [s["light"] for s in segments if s["class"] == label]
        assert results["classes"][label]["light_share"] == pytest.approx(sum(routed) / 6)
    assert [p["share"] for p in results["sweep"]] == [0.0, 0.5, 1.0]
    # the same speech at -35 and -15 dBFS: routed at each level, one target row (the
    # shares themselves: test_light_share_by_input_level_routes_each_level_through_the_switch)
    by_level = results["classes"]["speech"]["light_share_by_level"]
    assert list(by_level) == ["-35", "-15"]
    assert "light_share_by_level" not in results["classes"]["silence"]
    assert (
        "| speech: light share at -35 and -15 dBFS within 20 points | n/a | "
        f"{by_level['-35']:.1%} vs {by_level['-15']:.1%} |"
    ) in report
    assert "| speech segments light >= 25% |" in report and "switch AUROC >= 0.85" in report
    # the headline AUROC scores the switch's own decision: true distance under the threshold
    light_ok = [s["true"] < results["threshold"] for s in segments]
    assert results["switch"]["light_ok_share"] == pytest.approx(sum(light_ok) / len(light_ok))
    if 0 < sum(light_ok) < len(light_ok):
        from sklearn.metrics import roc_auc_score

        expected = roc_auc_score(light_ok, [-s["predicted"] for s in segments])
        assert results["switch"]["auroc"] == pytest.approx(expected, abs=1e-6)
    else:  # one class only: AUROC is undefined and must say so
        assert results["switch"]["auroc"] != results["switch"]["auroc"]


def test_sweep_trains_runs_for_each_alpha_and_placement(tmp_path):
    cmd = [
        sys.executable,
        "sweep.py",
        "--steps",
        "2",
        "--alphas",
        "1e-4",
        "1.0",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(
        cmd,
        cwd=ROOT / "recipes" / "AudioSet" / "routing",
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert set(summary["sparsity"]) == {"0.0001", "1.0"}
    assert set(summary["placement"]) == {"0", "1", "2"}
    # held-out switch quality of each placement after 2 steps, measured twice (one CPU):
    # Spearman 0.507/0.476, -0.189/-0.214, 0.799/0.799; AUROC 0.747/0.778, 0.361/0.361,
    # 0.910/0.910 (the espeak corpus jitters): a tolerance of 3x the spread. Placements
    # that ignored their overrides, or an AUROC of the wrong sign, would not match.
    recorded = {"0": (0.49, 0.76), "1": (-0.20, 0.36), "2": (0.80, 0.91)}
    for split, (spearman, auroc) in recorded.items():
        run = summary["placement"][split]
        assert run["spearman"] == pytest.approx(spearman, abs=0.1), split
        assert run["auroc"] == pytest.approx(auroc, abs=0.1), split
    for name in ("fig6_sparsity_vs_alpha.png", "fig8_switch_placement.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_recorded_speech_joins_as_a_third_class(tmp_path):
    from speechbrain_dsl.data.recordings import build_corpus

    build_corpus(tmp_path / "recorded", max_speakers=7, max_utterances_per_speaker=4)
    sys.path.insert(0, str(ROOT / "recipes" / "AudioSet" / "routing"))
    from evaluate import load_recorded_clips

    ids, wav = load_recorded_clips(tmp_path / "recorded", "test-recorded", 16000, 4.0, 5)
    # 3 held-out speakers with 19 clips of 4 s between them: max_clips=5 takes 5
    assert wav.shape == (5, 4 * 16000) and len(ids) == 5
    speakers = [i.split("/")[1] for i in ids]
    assert len(set(speakers[:3])) == 3 and speakers[3:] == speakers[:2]  # they take turns
    assert [i.split("/")[2] for i in ids] == ["0", "0", "0", "1", "1"]
    assert all(float(w.abs().max()) > 0.01 for w in wav)  # speech, not padding
    with pytest.raises(ValueError, match="recorded_folder: no wavs under"):
        load_recorded_clips(tmp_path / "recorded", "train-clean-100", 16000, 4.0, 5)

    data = make_audioset(tmp_path / "data", seed=5, clips_per_class=2)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "evaluate.py",
        "hparams/evaluate.yaml",
        f"--data_folder={data}",
        f"--codec_checkpoint={packaged_untrained_dsl(tmp_path)}",
        f"--output_folder={out}",
        f"--recorded_folder={tmp_path / 'recorded'}",
        "--clip_seconds=2.0",
        "--visqol=False",
        "--wall_repeats=1",
        "--sweep_shares=[0.0,1.0]",
        "--sweep_max_clips_per_class=1",
        "--max_clips_per_class=2",
    ]
    result = subprocess.run(
        cmd,
        cwd=ROOT / "recipes" / "AudioSet" / "routing",
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["classes"]) == ["silence", "speech", "recorded"]
    assert results["classes"]["recorded"]["clips"] == 2
    report = (out / "report.md").read_text()
    assert "| recorded | 2 |" in report and "(fig4_routes_recorded.png)" in report
    assert "| recorded: light share at -35 and -15 dBFS within 20 points |" in report
    assert (out / "fig4_routes_recorded.png").stat().st_size > 5000


def test_light_share_by_input_level_routes_each_level_through_the_switch():
    sys.path.insert(0, str(ROOT / "recipes" / "AudioSet" / "routing"))
    from evaluate import light_share_by_input_level

    with open(MODEL) as f:
        codec = load_hyperpyyaml(f)["codec"].eval()
    wav = torch.randn(2, 32000) * 0.05
    codec.encode(wav)  # initialise the codebooks
    rms = wav.square().mean(-1, keepdim=True).sqrt()
    loud = codec.predict_distances(wav / rms * 10 ** (-15 / 20)).detach()
    quiet = codec.predict_distances(wav / rms * 10 ** (-35 / 20)).detach()
    codec.threshold = float(torch.cat([loud, quiet]).median())
    shares = light_share_by_input_level(codec, wav, [-35.0, -15.0], batch_size=1)
    assert shares == {
        "-35": pytest.approx(float((quiet < codec.threshold).float().mean())),
        "-15": pytest.approx(float((loud < codec.threshold).float().mean())),
    }


def packaged_untrained_dsl(tmp_path):
    from conftest import DSL_YAML, package_untrained

    return package_untrained(DSL_YAML, tmp_path / "codec")
