"""Packaging a recipe checkpoint and loading it offline with ``from_hparams``."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.checkpoints import AtomicCheckpointer
from speechbrain_dsl.inference.codec import DSLCodecInterface
from speechbrain_dsl.inference.package import ROOT, package


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    with open(ROOT / "hparams" / "soundstream_dsl.yaml") as f:
        codec = load_hyperpyyaml(f)["codec"]
    codec.eval().encode(torch.randn(2, 16000) * 0.1)  # initialise the codebooks
    codec.threshold = 0.4321
    AtomicCheckpointer(tmp / "save", {"codec": codec}).save_checkpoint(meta={"mel_full": 2.0})
    return package(tmp / "save", tmp / "model"), codec


def test_packaged_folder_loads_offline_and_matches_the_trained_codec(packaged, tmp_path):
    folder, codec = packaged
    assert sorted(p.name for p in folder.iterdir()) == ["codec.ckpt", "hyperparams.yaml"]
    model = DSLCodecInterface.from_hparams(source=str(folder), savedir=str(tmp_path / "cache"))
    assert model.threshold == pytest.approx(0.4321) and model.mode == "mixed"
    wav = torch.randn(2, 16000) * 0.1
    tokens = model.encode_batch(wav)
    expected, _ = codec.encode(wav)
    assert tokens.shape == (2, 50, 8) and torch.equal(tokens, expected)
    stats = model.routing_stats()
    assert 0.0 <= stats["light_share"] <= 1.0 and stats["route"].shape == (2, 1)
    assert model.decode_batch(tokens).shape == (2, 16000)
    model.mode = "full"
    model.encode_batch(wav)
    assert model.routing_stats()["light_share"] == 0.0


def test_encode_file_resamples_and_names_unreadable_files(packaged, tmp_path):
    folder, _ = packaged
    model = DSLCodecInterface.from_hparams(source=str(folder), savedir=str(tmp_path / "cache"))
    sf.write(tmp_path / "clip.wav", np.random.default_rng(0).normal(0, 0.1, 22050), 22050)
    assert model.encode_file(tmp_path / "clip.wav").shape == (1, 50, 8)
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.wav"):
        model.encode_file(tmp_path / "bad.wav")


def test_missing_or_truncated_files_give_errors_naming_the_file(packaged, tmp_path):
    folder, _ = packaged
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "codec.ckpt").unlink()
    with pytest.raises(ValueError, match="missing codec.ckpt"):
        DSLCodecInterface.from_hparams(source=str(broken), savedir=str(tmp_path / "c1"))
    (broken / "codec.ckpt").write_bytes((folder / "codec.ckpt").read_bytes()[:2000])
    with pytest.raises(ValueError, match="codec.ckpt"):
        DSLCodecInterface.from_hparams(source=str(broken), savedir=str(tmp_path / "c2"))


class NotWeights:
    """Anything but tensors: weights_only loading must refuse to unpickle it."""


def test_tampered_checkpoint_is_refused_without_running_its_code(packaged, tmp_path):
    folder, _ = packaged
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    torch.save({"payload": NotWeights()}, tampered / "codec.ckpt")
    with pytest.raises(ValueError, match="codec.ckpt"):
        DSLCodecInterface.from_hparams(source=str(tampered), savedir=str(tmp_path / "c"))


def test_package_cli_reports_a_folder_without_checkpoints(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_dsl.inference.package", str(tmp_path),
         "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and "holds no checkpoint" in result.stderr
