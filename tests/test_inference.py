"""Packaging a recipe checkpoint and loading it offline with ``from_hparams``."""

import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.training.checkpoints import AtomicCheckpointer
from speechbrain_dsl.inference.interface import DSLCodecInterface
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
    assert sorted(p.name for p in folder.iterdir()) == ["SHA256SUMS", "codec.ckpt",
                                                        "hyperparams.yaml"]
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


@pytest.fixture(scope="module")
def interface(packaged, tmp_path_factory):
    folder, _ = packaged
    return DSLCodecInterface.from_hparams(source=str(folder),
                                          savedir=str(tmp_path_factory.mktemp("cache")))


def test_num_codebooks_chosen_at_load_sets_tokens_and_bitrate(packaged, interface, tmp_path):
    folder, codec = packaged
    two = DSLCodecInterface.from_hparams(source=str(folder), savedir=str(tmp_path / "c"),
                                         num_codebooks=2)
    wav = torch.randn(3, 16000) * 0.1
    tokens = two.encode_batch(wav)
    assert tokens.shape == (3, 50, 2) and two.num_codebooks == 2
    assert torch.equal(tokens, interface.encode_batch(wav)[..., :2])
    # bitrate = token bits per second of audio: 50 frames x 2 codebooks x 10 bits
    seconds = wav.shape[-1] / two.sample_rate
    assert two.bitrate == pytest.approx(tokens[0].numel() * math.log2(1024) / seconds / 1000)
    assert (two.bitrate, interface.bitrate) == (1.0, 4.0)
    assert two.decode_batch(tokens).shape == (3, 16000)
    with pytest.raises(ValueError, match=r"num_codebooks: expected an int in 1\.\.8"):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(tmp_path / "d"),
                                       num_codebooks=9)


def test_encode_batch_resamples_a_declared_rate(interface):
    wav8k = torch.sin(torch.arange(8000) * 0.05)[None] * 0.3
    tokens = interface.encode_batch(wav8k, sample_rate=8000)
    assert tokens.shape == (1, 50, 8)  # 1 s of audio, not 0.5 s
    resampled = torchaudio.functional.resample(wav8k, 8000, 16000)
    assert torch.equal(tokens, interface.encode_batch(resampled))
    with pytest.raises(ValueError, match="sample_rate: expected a positive whole number"):
        interface.encode_batch(wav8k, sample_rate=0)


def test_encode_batch_refuses_int16_scaled_floats_and_accepts_numpy(interface):
    wav = torch.randn(2, 16000) * 0.1
    with pytest.raises(ValueError, match=r"wavs: expected a waveform in \[-1, 1\].*32768"):
        interface.encode_batch(wav * 32767)
    with pytest.raises(ValueError, match=r"expected a waveform in \[-1, 1\], got a peak of 5"):
        interface.encode_batch(wav / wav.abs().max() * 5)
    assert torch.equal(interface.encode_batch(wav.numpy()), interface.encode_batch(wav))
    with pytest.raises(ValueError, match="floating-point.*int16"):
        interface.encode_batch((wav.numpy() * 32767).astype(np.int16))


@pytest.mark.parametrize("wav_lens, message", [
    (torch.tensor([1.0, 1.5]), r"wav_lens: relative lengths must be in \(0, 1\]"),
    (torch.tensor([1.0, 0.0]), r"wav_lens: relative lengths must be in \(0, 1\]"),
    (torch.tensor([1.0, -0.5]), r"wav_lens: relative lengths must be in \(0, 1\]"),
    (torch.tensor([1.0, 0.5, 0.5]), r"wav_lens: expected one relative length per item, "
                                    r"shape \[2\], got shape \(3,\)"),
])
def test_encode_batch_refuses_bad_wav_lens(interface, wav_lens, message):
    with pytest.raises(ValueError, match=message):
        interface.encode_batch(torch.randn(2, 16000) * 0.1, wav_lens)


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
