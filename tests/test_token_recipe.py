"""The DASB-style token KWS recipe: tokens extracted once, 2 codebooks, codec swapped in YAML."""

import difflib
import functools
import importlib.util
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT, make_codec

from speechbrain_dsl.inference.interface import load_tokenizer
from speechbrain_dsl.inference.tokenizer import DSLTokenizer
from speechbrain_dsl.lobes.probes import TokenClassifier
from speechbrain_dsl.training.recipe_utils import NOISY_LOGGERS, read_plain_hparams

RECIPE = ROOT / "recipes" / "SpeechCommands" / "tokens"
YAMLS = {
    "dsl": RECIPE / "hparams" / "tokens_dsl.yaml",
    "baseline": RECIPE / "hparams" / "tokens_baseline.yaml",
}


def recipe_module():
    """``recipes/SpeechCommands/tokens/train.py`` as a module."""
    spec = importlib.util.spec_from_file_location("token_recipe", RECIPE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory, speech_commands_data, packaged_dsl_codec, packaged_baseline_codec):
    tmp = tmp_path_factory.mktemp("tokens")
    return speech_commands_data, packaged_dsl_codec, packaged_baseline_codec, tmp


def test_the_two_codecs_differ_by_the_tokenizer_lines_of_the_yaml_only():
    dsl, baseline = (YAMLS[name].read_text().splitlines() for name in ("dsl", "baseline"))
    changed = [
        line
        for line in difflib.unified_diff(dsl, baseline, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        "-tokenizer_source: !PLACEHOLDER   # e.g. ../../../pretrained/dsl-codec-16k",
        "-tokenizer_mode: mixed            # full | light | mixed (a codec without DSL: full)",
        "+tokenizer_source: !PLACEHOLDER   # e.g. ../../../pretrained/baseline-codec-16k",
        "+tokenizer_mode: full             # a codec without DSL takes full only",
    ]
    modes = {
        name: read_plain_hparams(path, {"data_folder": "d", "tokenizer_source": "s"})[
            "tokenizer_mode"
        ]
        for name, path in YAMLS.items()
    }
    assert modes == {"dsl": "mixed", "baseline": "full"}


@pytest.mark.parametrize("tokenizer", ["dsl", "baseline"])
def test_token_recipe_extracts_two_codebooks_once_and_trains_with_either_codec(setup, tokenizer):
    data, dsl, baseline, tmp = setup
    source, mode = (dsl, "mixed") if tokenizer == "dsl" else (baseline, "full")
    out = tmp / f"run_{tokenizer}"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"hparams/{YAMLS[tokenizer].name}",
            f"--data_folder={data}",
            f"--tokenizer_source={source}",
            f"--output_folder={out}",
            "--number_of_epochs=1",
        ],
        cwd=RECIPE,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0
    assert "valid accuracy" in (out / "train_log.txt").read_text()
    assert list((out / "save").glob("CKPT+*/model.ckpt"))  # the model train.py built is saved

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
    codec = DSLTokenizer(make_codec(num_quantizers=3)).eval()
    codec.encode(torch.randn(2, 1600) * 0.1)  # initialise the codebooks (k-means)
    calls = []
    original = type(codec).sig_to_tokens

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("num_codebooks"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(codec), "sig_to_tokens", counting)
    args = dict(
        tokenizer=codec,
        manifests=tiny_corpus,
        folder=tmp_path / "tok",
        num_codebooks=2,
        vocab_size=16,
        batch_size=4,
        device="cpu",
    )
    tokens, embeddings = recipe.extract_tokens(**args)
    assert calls == [2, 2, 2]  # one batch per split
    clip = torch.from_numpy(sf.read(tiny_corpus["valid"].with_suffix(".wav"), dtype="float32")[0])
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
    model_class = functools.partial(TokenClassifier, num_codebooks=2, vocab_size=16, n_classes=5)
    vectors = make_codec().get_pretrained_embeddings(16, 2)
    model = recipe.make_model(functools.partial(model_class, emb_dim=8), vectors)
    assert torch.equal(model.embedding.weight.detach(), vectors)
    assert recipe.make_model(functools.partial(model_class, emb_dim=8)).embedding.weight.shape == (
        2 * 16,
        8,
    )  # pretrain_embeddings: False
    with pytest.raises(
        ValueError,
        match=r"pretrained embeddings \(32, 8\) do not match \(32, 4\)"
        r".*: set emb_dim to the tokenizer's vector size, or "
        r"pretrain_embeddings: False",
    ):
        recipe.make_model(functools.partial(model_class, emb_dim=4), vectors)


@pytest.mark.parametrize(
    "override, message",
    [
        ("--num_codebooks=0", r"num_codebooks=0: expected an integer >= 1"),
        (
            "--tokenizer_mode=loud",
            r"tokenizer_mode='loud': expected one of 'full', 'light', 'mixed'",
        ),
        ("--lr=-1", r"lr=-1: expected a number > 0"),
        ("--pretrain_embeddings=maybe", r"pretrain_embeddings='maybe': expected True or False"),
        ("--tokenizer_source=[a, b]", r"tokenizer_source=\['a', 'b'\]: expected a string"),
    ],
)
def test_token_recipe_refuses_a_bad_hyperparameter_before_anything_runs(
    tmp_path, override, message
):
    argv = [
        str(YAMLS["dsl"]),
        f"--data_folder={tmp_path}",
        f"--output_folder={tmp_path / 'out'}",
        override,
    ]
    if not override.startswith("--tokenizer_source="):
        argv.append("--tokenizer_source=somewhere")
    with pytest.raises(ValueError, match=r"bad hyperparameter in .*tokens_dsl.yaml.*" + message):
        recipe_module().main(argv)
    assert not (tmp_path / "out").exists()


def test_token_recipe_names_a_broken_manifest_and_rereads_a_broken_record(
    tiny_corpus, tmp_path, caplog
):
    recipe = recipe_module()
    codec = DSLTokenizer(make_codec(num_quantizers=3)).eval()
    codec.encode(torch.randn(2, 1600) * 0.1)
    args = dict(
        tokenizer=codec,
        manifests=tiny_corpus,
        folder=tmp_path / "tok",
        num_codebooks=2,
        vocab_size=16,
        batch_size=4,
        device="cpu",
    )
    good = tiny_corpus["valid"].read_text()
    tiny_corpus["valid"].write_text(good[:20])
    with pytest.raises(ValueError, match=f"manifest {tiny_corpus['valid']} is not valid JSON"):
        recipe.extract_tokens(**args)
    tiny_corpus["valid"].write_text(good.replace('"label": "yes", ', ""))
    with pytest.raises(
        ValueError,
        match=f"manifest {tiny_corpus['valid']}: entry 'valid_0' lacks the field\\(s\\) label",
    ):
        recipe.extract_tokens(**args)
    tiny_corpus["valid"].write_text(good)
    tokens, _ = recipe.extract_tokens(**args)
    (tmp_path / "tok" / "extraction.json").write_text('{"key": ')
    with caplog.at_level(logging.WARNING):
        again, _ = recipe.extract_tokens(**args)
    assert (
        "extraction.json is not valid JSON" in caplog.text
        and "extracting the tokens again" in caplog.text
    )
    assert torch.equal(again["test"]["test_0"], tokens["test"]["test_0"])


def test_token_recipe_quiets_third_party_loggers(setup, monkeypatch):
    """main() sets the noisy loggers to WARNING (log.txt takes every DEBUG record)."""
    data, dsl, _, tmp = setup
    for name in NOISY_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    recipe = recipe_module()
    monkeypatch.setattr(
        recipe,
        "prepare_speech_commands",
        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop here")),
    )
    with pytest.raises(RuntimeError, match="stop here"):
        recipe.main(
            [
                str(YAMLS["dsl"]),
                f"--data_folder={data}",
                f"--tokenizer_source={dsl}",
                f"--output_folder={tmp / 'quiet'}",
            ]
        )
    assert all(logging.getLogger(name).level == logging.WARNING for name in NOISY_LOGGERS)


def test_load_tokenizer_is_frozen_and_refuses_routing_without_dsl(setup):
    _, dsl, baseline, _ = setup
    codec = load_tokenizer(dsl, mode="light")
    assert isinstance(codec, DSLTokenizer) and codec.mode == "light" and not codec.training
    assert not any(p.requires_grad for p in codec.parameters())
    with pytest.raises(ValueError, match="without DSL"):
        load_tokenizer(baseline, mode="mixed")
