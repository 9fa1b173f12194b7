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
from conftest import BASELINE_YAML, DSL_YAML
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import resolve_references

from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.inference.package import package
from speechbrain_dsl.training.checkpoints import AtomicCheckpointer

RECIPE = """# a recipe's hparams, as the LibriTTS codec recipe includes its model
output_folder: {folder}
save_folder: !ref <output_folder>/save
sample_rate: 16000
lr: 0.001
model: !include:{model}
    sample_rate: !ref <sample_rate>
codec: !ref <model[codec]>
# the discriminator, the losses and the optimizers would follow here
modules:
    codec: !ref <codec>
checkpointer: !new:speechbrain_dsl.training.checkpoints.AtomicCheckpointer
    checkpoints_dir: !ref <save_folder>
    recoverables:
        codec: !ref <codec>
"""


def recipe_run(folder, model_yaml):
    """A recipe's output folder as SpeechBrain leaves it: ``hyperparams.yaml`` and ``save/``.

    The run's file holds the recipe's hparams with every reference resolved, as
    ``speechbrain.core.create_experiment_directory`` writes it. Returns the run's
    codec (codebooks initialised) and checkpointer.
    """
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "train.yaml"
    recipe.write_text(RECIPE.format(folder=folder, model=model_yaml))
    with open(recipe) as f:
        resolved = resolve_references(f).getvalue()
    (folder / "hyperparams.yaml").write_text(
        f"# Generated from:\n# {recipe}\n# yamllint disable\n{resolved}"
    )
    with open(recipe) as f:
        hparams = load_hyperpyyaml(f)
    codec = hparams["codec"].eval()
    codec.encode(torch.randn(2, 16000) * 0.1)  # initialise the codebooks
    return codec, hparams["checkpointer"]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """A recipe run's checkpoint, packaged with the model definition of the run itself."""
    tmp = tmp_path_factory.mktemp("pkg")
    codec, checkpointer = recipe_run(tmp / "run", DSL_YAML)
    codec.threshold = 0.4321
    checkpointer.save_checkpoint(meta={"mel_full": 2.0})
    return package(tmp / "run" / "save", tmp / "model"), codec


def test_packaged_folder_loads_offline_and_matches_the_trained_codec(packaged, tmp_path):
    folder, codec = packaged
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "codec.ckpt",
        "hyperparams.yaml",
    ]
    # bit for bit against the eager codec: the torch engine (the default, onnxruntime, can
    # differ where two codewords tie, as this untrained codec's residual codebooks do)
    model = DSLCodecInterface.from_hparams(
        source=str(folder), savedir=str(tmp_path / "cache"), engine="torch"
    )
    assert model.threshold == pytest.approx(0.4321) and model.mode == "mixed"
    wav = torch.randn(2, 16000) * 0.1
    with model.routing() as calls:
        tokens = model.encode_batch(wav)
    expected, _ = codec.encode(wav)
    assert tokens.shape == (2, 50, 8) and torch.equal(tokens, expected)
    (routing,) = calls
    assert routing.route.shape == (2, 1) and routing.segment_mask.all()
    assert torch.equal(routing.route, routing.predicted < 0.4321)  # the package's threshold
    assert routing.light_share == float(routing.route.float().mean())
    assert routing.mode == "mixed" and routing.threshold == pytest.approx(0.4321)
    assert model.decode_batch(tokens).shape == (2, 16000)
    assert model.encode_with_routing(wav, mode="full").routing.light_share == 0.0
    assert model.mode == "mixed"  # a call's mode is not the model's default


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
    return DSLCodecInterface.from_hparams(
        source=str(folder), savedir=str(tmp_path_factory.mktemp("cache"))
    )


def test_num_codebooks_chosen_at_load_sets_tokens_and_bitrate(packaged, interface, tmp_path):
    folder, codec = packaged
    two = DSLCodecInterface.from_hparams(
        source=str(folder), savedir=str(tmp_path / "c"), num_codebooks=2
    )
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
        DSLCodecInterface.from_hparams(
            source=str(folder), savedir=str(tmp_path / "d"), num_codebooks=9
        )


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


@pytest.mark.parametrize(
    "wav_lens, message",
    [
        (torch.tensor([1.0, 1.5]), r"wav_lens: relative lengths must be in \(0, 1\]"),
        (torch.tensor([1.0, 0.0]), r"wav_lens: relative lengths must be in \(0, 1\]"),
        (torch.tensor([1.0, -0.5]), r"wav_lens: relative lengths must be in \(0, 1\]"),
        (
            torch.tensor([1.0, 0.5, 0.5]),
            r"wav_lens: expected one relative length per item, "
            r"shape \[2\], got shape \(3,\)",
        ),
    ],
)
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
        [
            sys.executable,
            "-m",
            "speechbrain_dsl.inference.package",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "holds no checkpoint" in result.stderr


def test_packaged_model_definition_is_the_runs_codec_alone(packaged):
    folder, _ = packaged
    text = (folder / "hyperparams.yaml").read_text()
    assert text.startswith("# the `model` entry of the run's hyperparams.yaml")
    definition = text.split("# --- added by speechbrain_dsl.inference.package")[0]
    for run_only in ("checkpointer", "save_folder", "lr:", "discriminator"):
        assert run_only not in definition, run_only
    with open(DSL_YAML) as f:
        default = load_hyperpyyaml(f)["codec"]
    built = load_hyperpyyaml(definition)["codec"]
    assert type(built) is type(default) and built.has_dsl
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in default.state_dict().items()
    }


def test_a_baseline_run_is_packaged_as_the_baseline_it_trained(tmp_path):
    """No model YAML to name: the run's own definition, not a default DSL model."""
    codec, checkpointer = recipe_run(tmp_path / "run", BASELINE_YAML)
    checkpointer.save_checkpoint()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_dsl.inference.package",
            str(tmp_path / "run" / "save"),
            "--out",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = DSLCodecInterface.from_hparams(
        source=str(tmp_path / "model"), savedir=str(tmp_path / "model")
    )
    assert not model.codec.has_dsl
    wav = torch.randn(1, 16000) * 0.1
    assert torch.equal(model.encode_batch(wav), codec.encode(wav)[0])


def test_packaging_a_save_folder_without_the_runs_hyperparams_asks_for_the_model(tmp_path):
    with open(BASELINE_YAML) as f:
        codec = load_hyperpyyaml(f)["codec"]
    AtomicCheckpointer(tmp_path / "save", {"codec": codec}).save_checkpoint()
    with pytest.raises(ValueError, match=r"no hyperparams.yaml beside it .*--model"):
        package(tmp_path / "save", tmp_path / "model")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_dsl.inference.package",
            str(tmp_path / "save"),
            "--out",
            str(tmp_path / "model"),
            "--model",
            str(BASELINE_YAML),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        (tmp_path / "model" / "hyperparams.yaml").read_text().startswith(BASELINE_YAML.read_text())
    )


def test_package_cli_takes_the_best_checkpoint_by_the_named_metric(tmp_path):
    with open(BASELINE_YAML) as f:
        codec = load_hyperpyyaml(f)["codec"]
    (tmp_path / "hyperparams.yaml").write_text(BASELINE_YAML.read_text())
    checkpointer = AtomicCheckpointer(tmp_path / "save", {"codec": codec})
    best = checkpointer.save_checkpoint(meta={"mel_full": 1.0, "accuracy": 0.5}).path
    with torch.no_grad():
        next(codec.parameters()).add_(1.0)  # later weights, with a worse and a better metric
    latest = checkpointer.save_checkpoint(meta={"mel_full": 2.0, "accuracy": 0.9}).path
    for flags, expected in (
        ([], latest),
        (["--min-key", "mel_full"], best),
        (["--max-key", "accuracy"], latest),
    ):
        out = tmp_path / f"model{len(flags)}{flags[:1]}"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "speechbrain_dsl.inference.package",
                str(tmp_path / "save"),
                "--out",
                str(out),
                *flags,
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert (out / "codec.ckpt").read_bytes() == (expected / "codec.ckpt").read_bytes(), flags
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_dsl.inference.package",
            str(tmp_path / "save"),
            "--out",
            str(tmp_path / "x"),
            "--min-key",
            "a",
            "--max-key",
            "b",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not allowed with" in result.stderr
