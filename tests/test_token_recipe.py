"""The DASB-style token KWS recipe runs with different tokenizers after a YAML change only."""

import json
import os
import subprocess
import sys

import pytest

from speechbrain_dsl.inference.codec import load_tokenizer
from speechbrain_dsl.inference.package import ROOT

RECIPE = ROOT / "recipes" / "SpeechCommands" / "tokens"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, speech_commands_data, packaged_dsl_codec, packaged_baseline_codec):
    tmp = tmp_path_factory.mktemp("tokens")
    return speech_commands_data, packaged_dsl_codec, packaged_baseline_codec, tmp


@pytest.mark.parametrize("tokenizer", ["dsl", "baseline"])
def test_token_recipe_trains_and_tests_with_either_tokenizer(setup, tokenizer):
    data, dsl, baseline, tmp = setup
    source, mode = (dsl, "mixed") if tokenizer == "dsl" else (baseline, "full")
    out = tmp / f"run_{tokenizer}"
    result = subprocess.run(
        [sys.executable, "train.py", "hparams/tokens_dsl.yaml", f"--data_folder={data}",
         f"--tokenizer_source={source}", f"--tokenizer_mode={mode}", f"--output_folder={out}",
         "--number_of_epochs=1"],
        cwd=RECIPE, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0
    assert "valid accuracy" in (out / "train_log.txt").read_text()


def test_load_tokenizer_is_frozen_and_refuses_routing_without_dsl(setup):
    _, dsl, baseline, _ = setup
    codec = load_tokenizer(dsl, mode="light")
    assert codec.mode == "light" and not codec.training
    assert not any(p.requires_grad for p in codec.parameters())
    with pytest.raises(ValueError, match="without DSL"):
        load_tokenizer(baseline, mode="mixed")
