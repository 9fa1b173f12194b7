"""benchmarks/deploy.py runs end to end and reports every case (small settings)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
from conftest import ROOT
from deploy_helpers import onnx_package, speechy


def test_deploy_benchmark_reports_every_engine_precision_mode_and_stage(tmp_path_factory, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(onnx_package(tmp_path_factory), model)  # graphs up to date: reused
    for name, seconds in (("calibration", 40), ("eval", 20)):
        for i in range(seconds // 10):
            wav = speechy(10.0, 300 + i, rate=24000).numpy() * 0.5  # resampled to 16 kHz
            path = tmp_path / name / f"{i}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, wav, 24000)
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/deploy.py",
            "--json",
            "--model",
            str(model),
            "--out",
            str(model),
            "--calibration",
            str(tmp_path / "calibration"),
            "--eval",
            str(tmp_path / "eval"),
            "--eval-seconds",
            "20",
            "--seconds",
            "20",
            "--repeats",
            "1",
            "--long-minutes",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    cases = {(r["stage"], r["engine"], r["precision"], r["mode"]) for r in rows}
    for stage in ("encode", "stream"):
        for engine, precision in (
            ("torch", "fp32"),
            ("onnxruntime", "fp32"),
            ("onnxruntime", "int8"),
        ):
            for mode in ("full", "mixed", "light"):
                assert (stage, engine, precision, mode) in cases
    assert {
        ("decode", "torch", "fp32", "mixed"),
        ("decode", "onnxruntime", "fp32", "mixed"),
    } <= cases
    assert all(0 < r["rtf"] < 1 for r in rows)
    encode = {(r["engine"], r["precision"], r["mode"]): r for r in rows if r["stage"] == "encode"}
    assert encode[("onnxruntime", "int8", "full")]["light_share"] == 0.0
    assert encode[("onnxruntime", "int8", "light")]["light_share"] == 1.0
    assert 0.4 <= encode[("onnxruntime", "int8", "mixed")]["light_share"] <= 0.6
    vs_fp32 = encode[("onnxruntime", "int8", "mixed")]["vs_fp32"]
    assert vs_fp32["route_agreement"] == 1.0 and vs_fp32["tokens"] > 0
    assert vs_fp32["clips"] == 2  # --eval-seconds 20 of 10-s files
    # The untrained model's decodes score ViSQOL's floor, 1.0 exactly (measured, both
    # precisions). Scoring against the wrong reference would not: the int8 decode against
    # the fp32 one (mel 0.005 apart) or the input against itself (4.15 on a clip like these).
    for precision in ("int8", "fp32"):
        assert vs_fp32[f"visqol_{precision}_to_input"] == pytest.approx(1.0, abs=0.05)
    assert vs_fp32["mel_int8_to_fp32"] < 0.05 < vs_fp32["mel_int8_to_input"]  # 0.005, 2.41
    stream = [r for r in rows if r["stage"] == "stream"]
    assert all(r["p50_ms"] <= r["p99_ms"] for r in stream)
    size = (model / "encoder.onnx").stat().st_size
    assert encode[("onnxruntime", "fp32", "full")]["model_bytes"] == size
