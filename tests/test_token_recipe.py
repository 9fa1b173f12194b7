"""The DASB-style token KWS recipe: tokens extracted once, 2 codebooks, codec swapped in YAML."""

import difflib
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_dsl.inference.codec import load_tokenizer
from speechbrain_dsl.inference.package import ROOT

from conftest import make_codec

RECIPE = ROOT / "recipes" / "SpeechCommands" / "tokens"
YAML = RECIPE / "hparams" / "tokens_dsl.yaml"


def recipe_module():
    """``recipes/SpeechCommands/tokens/train.py`` as a module."""
    spec = importlib.util.spec_from_file_location("token_recipe", RECIPE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_tokenizer(yaml_text, source, mode):
    """The recipe's YAML with its two tokenizer lines set (nothing else changes)."""
    yaml_text = re.sub(r"(?m)^tokenizer_source: .*$", f"tokenizer_source: {source}", yaml_text)
    return re.sub(r"(?m)^tokenizer_mode: .*$", f"tokenizer_mode: {mode}", yaml_text)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, speech_commands_data, packaged_dsl_codec, packaged_baseline_codec):
    tmp = tmp_path_factory.mktemp("tokens")
    return speech_commands_data, packaged_dsl_codec, packaged_baseline_codec, tmp


def test_the_two_codecs_differ_by_the_tokenizer_lines_of_the_yaml_only(setup):
    _, dsl, baseline, _ = setup
    text = YAML.read_text()
    changed = [line for line in difflib.unified_diff(
        with_tokenizer(text, dsl, "mixed").splitlines(),
        with_tokenizer(text, baseline, "full").splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == [f"-tokenizer_source: {dsl}", f"-tokenizer_mode: mixed",
                       f"+tokenizer_source: {baseline}", "+tokenizer_mode: full"]


@pytest.mark.parametrize("tokenizer", ["dsl", "baseline"])
def test_token_recipe_extracts_two_codebooks_once_and_trains_with_either_codec(setup, tokenizer):
    data, dsl, baseline, tmp = setup
    source, mode = (dsl, "mixed") if tokenizer == "dsl" else (baseline, "full")
    hparams = tmp / f"{tokenizer}.yaml"
    hparams.write_text(with_tokenizer(YAML.read_text(), source, mode))
    out = tmp / f"run_{tokenizer}"
    result = subprocess.run(
        [sys.executable, "train.py", str(hparams), f"--data_folder={data}",
         f"--output_folder={out}", "--number_of_epochs=1"],
        cwd=RECIPE, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0
    assert "valid accuracy" in (out / "train_log.txt").read_text()

    # the saved tokens are sig_to_tokens' output on 2 codebooks, the embeddings
    # get_pretrained_embeddings' 2 x 1024 rows
    codec = load_tokenizer(source, mode, num_codebooks=2)
    saved = torch.load(out / "tokens" / "test.pt")
    manifest = json.loads((out / "manifests" / "test.json").read_text())
    utt = next(u for u in sorted(saved) if manifest[u]["stop"] == -1)
    clip, rate = sf.read(manifest[utt]["wav"], dtype="float32")
    assert rate == 16000
    expected = codec.sig_to_tokens(torch.from_numpy(clip)[None])[0]
    assert saved[utt].dtype == torch.int64 and saved[utt].shape[-1] == 2
    # undo_padding keeps round(relative length x frames): a last partial frame may go
    assert len(expected) - 1 <= len(saved[utt]) <= len(expected)
    assert torch.equal(saved[utt], expected[: len(saved[utt])])
    embeddings = torch.load(out / "tokens" / "embeddings.pt")
    assert embeddings.shape == (2 * 1024, 64)
    torch.testing.assert_close(embeddings, codec.get_pretrained_embeddings(1024, 2))
    assert json.loads((out / "tokens" / "extraction.json").read_text())["num_codebooks"] == 2


@pytest.fixture
def tiny_corpus(tmp_path):
    """Three 1-s clips (one per split) and their manifests."""
    rng = np.random.default_rng(0)
    manifests = {}
    for split in ("train", "valid", "test"):
        wav = tmp_path / f"{split}.wav"
        sf.write(wav, rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
        entry = {"wav": str(wav), "start": 0, "stop": -1, "label": "yes", "duration": 1.0}
        manifests[split] = tmp_path / f"{split}.json"
        manifests[split].write_text(json.dumps({f"{split}_0": entry}))
    return manifests


def test_extraction_runs_once_per_tokenizer_setting(tiny_corpus, tmp_path, monkeypatch):
    recipe = recipe_module()
    codec = make_codec(num_quantizers=3).eval()
    codec.encode(torch.randn(2, 1600) * 0.1)  # initialise the codebooks (k-means)
    calls = []
    original = type(codec).sig_to_tokens

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("num_codebooks"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(codec), "sig_to_tokens", counting)
    args = dict(tokenizer=codec, manifests=tiny_corpus, folder=tmp_path / "tok",
                num_codebooks=2, vocab_size=16, batch_size=4, device="cpu")
    tokens, embeddings = recipe.extract_tokens(**args)
    assert calls == [2, 2, 2]  # one batch per split
    clip = torch.from_numpy(sf.read(tiny_corpus["valid"].with_suffix(".wav"),
                                    dtype="float32")[0])
    assert torch.equal(tokens["valid"]["valid_0"], codec.sig_to_tokens(clip[None], None, 2)[0])
    assert tokens["train"]["train_0"].shape == (1000, 2)
    torch.testing.assert_close(embeddings, codec.get_pretrained_embeddings(16, 2))
    calls.clear()
    again, _ = recipe.extract_tokens(**args)
    assert calls == [] and torch.equal(again["test"]["test_0"], tokens["test"]["test_0"])
    codec.mode = "light"  # another routing gives other tokens: extracted anew
    recipe.extract_tokens(**args)
    assert calls == [2, 2, 2]


def test_pretrained_embeddings_must_fit_the_model(tiny_corpus):
    recipe = recipe_module()
    table = torch.nn.Embedding(2 * 16, 8)
    vectors = make_codec().get_pretrained_embeddings(16, 2)
    recipe.init_embeddings(table, vectors)
    assert torch.equal(table.weight.detach(), vectors)
    with pytest.raises(ValueError, match="emb_dim"):
        recipe.init_embeddings(torch.nn.Embedding(2 * 16, 4), vectors)


def test_load_tokenizer_is_frozen_and_refuses_routing_without_dsl(setup):
    _, dsl, baseline, _ = setup
    codec = load_tokenizer(dsl, mode="light")
    assert codec.mode == "light" and not codec.training
    assert not any(p.requires_grad for p in codec.parameters())
    with pytest.raises(ValueError, match="without DSL"):
        load_tokenizer(baseline, mode="mixed")
