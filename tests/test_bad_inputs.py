"""Bad inputs, as a careless user and a hostile file would give them (issue 15).

Each case asserts the exception type and that the message names the offending
file, key or argument: weights and packaged folders, checkpoints, the audio
helper, the four prepare scripts and the routing evaluation's inputs.
"""

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_dsl.data.audio import (
    AudioChecker,
    BadAudioError,
    audio_info,
    read_json,
    read_text,
)
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.training.checkpoints import (
    MANIFEST,
    AtomicCheckpointer,
    CheckpointError,
    find_codec_checkpoint,
    load_codec,
    load_state_strict,
    read_manifest,
    verify_manifest,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
DSL_YAML = ROOT / "hparams" / "soundstream_dsl.yaml"
for recipe in ("LibriTTS", "AudioSet", "SpeechCommands", "LibriCount", "AudioSet/routing"):
    sys.path.insert(0, str(ROOT / "recipes" / recipe))
from audioset_prepare import prepare_audioset  # noqa: E402
from libricount_prepare import prepare_libricount  # noqa: E402
from libritts_prepare import prepare_libritts  # noqa: E402
from speech_commands_prepare import prepare_speech_commands  # noqa: E402

BAD_NAME = os.fsdecode(b"caf\xe9.wav")  # not valid UTF-8 on disk


def tone(path, seconds=0.1, rate=16000, subtype=None):
    """A short sine wave; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype("float32"), rate, subtype=subtype)
    return path


def badly_named_tone(folder):
    """A good wav whose file name is not valid UTF-8 (soundfile cannot even write one)."""
    good = tone(Path(folder) / "good-name.wav")
    os.rename(good, Path(folder) / BAD_NAME)
    return Path(folder) / BAD_NAME


def empty_wav(path):
    """A header-only wav: a valid file with zero samples."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(0, "float32"), 16000)
    return Path(path)


def truncate(path, keep=0.5):
    """Cuts ``path`` mid-data, as an interrupted copy would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


# --- weights: load_state_strict on a small module ----------------------------------


@pytest.fixture
def linear_ckpt(tmp_path):
    layer = torch.nn.Linear(3, 2)
    path = tmp_path / "layer.ckpt"
    torch.save(layer.state_dict(), path)
    return path


def test_empty_state_dict_is_refused_naming_file_and_keys(tmp_path):
    torch.save({}, tmp_path / "codec.ckpt")
    with pytest.raises(
        ValueError, match=r"codec.ckpt does not fit Linear: 2 missing key\(s\) \(weight, bias\)"
    ):
        load_state_strict(torch.nn.Linear(3, 2), tmp_path / "codec.ckpt")


def test_unknown_keys_are_refused_by_name(linear_ckpt):
    state = torch.load(linear_ckpt, weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, linear_ckpt)
    with pytest.raises(ValueError, match=r"layer.ckpt .*unknown key\(s\) \(extra.weight\)"):
        load_state_strict(torch.nn.Linear(3, 2), linear_ckpt)


def test_shape_mismatch_names_the_key_and_both_shapes(linear_ckpt):
    with pytest.raises(ValueError, match=r"layer.ckpt .*weight: \(2, 3\) instead of \(4, 3\)"):
        load_state_strict(torch.nn.Linear(3, 4), linear_ckpt)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(linear_ckpt, value):
    state = torch.load(linear_ckpt, weights_only=True)
    state["bias"][0] = value
    torch.save(state, linear_ckpt)
    with pytest.raises(
        ValueError, match=r"layer.ckpt .*NaN or infinite values in 1 tensor\(s\) \(bias\)"
    ):
        load_state_strict(torch.nn.Linear(3, 2), linear_ckpt)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    with pytest.raises(ValueError, match="tensor.ckpt holds a Tensor, not a state dict"):
        load_state_strict(torch.nn.Linear(3, 2), tmp_path / "tensor.ckpt")


def test_a_non_tensor_value_is_refused_naming_the_key(tmp_path):
    torch.save({"weight": [[0.0] * 3] * 2, "bias": torch.zeros(2)}, tmp_path / "list.ckpt")
    with pytest.raises(ValueError, match=r"list.ckpt .*not tensors \(weight: list\)"):
        load_state_strict(torch.nn.Linear(3, 2), tmp_path / "list.ckpt")


@pytest.mark.parametrize("content", [b"", b"\0" * 512, b"not a torch file"])
def test_truncated_zeroed_or_foreign_bytes_are_refused(linear_ckpt, content):
    linear_ckpt.write_bytes(content if content else linear_ckpt.read_bytes()[:60])
    with pytest.raises(ValueError, match="cannot load .*layer.ckpt: not an intact weights file"):
        load_state_strict(torch.nn.Linear(3, 2), linear_ckpt)


class Payload:
    """A pickled object: weights_only loading must not build it."""


def test_a_pickle_payload_is_refused_without_running_code(tmp_path):
    torch.save({"weight": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="cannot load .*evil.ckpt"):
        load_state_strict(torch.nn.Linear(3, 2), tmp_path / "evil.ckpt")


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="weights file not found: .*gone.ckpt"):
        load_state_strict(torch.nn.Linear(3, 2), tmp_path / "gone.ckpt")


def test_flipped_bytes_fail_the_checksum_naming_file_and_manifest(linear_ckpt):
    write_manifest(linear_ckpt.parent)
    data = bytearray(linear_ckpt.read_bytes())
    data[-200] ^= 0x01
    linear_ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"layer.ckpt fails its sha256 checksum .*{MANIFEST}"):
        load_state_strict(torch.nn.Linear(3, 2), linear_ckpt)


def test_a_file_missing_from_the_manifest_is_refused(linear_ckpt):
    (linear_ckpt.parent / MANIFEST).write_text("0" * 64 + "  other.ckpt\n")
    with pytest.raises(ValueError, match="layer.ckpt is not listed in the checksum manifest"):
        load_state_strict(torch.nn.Linear(3, 2), linear_ckpt)


@pytest.mark.parametrize("text", ["", "no checksum here\n", "abc  file\n"])
def test_a_corrupt_or_empty_manifest_is_named(tmp_path, text):
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(CheckpointError, match=f"checksum manifest .*{MANIFEST} is (corrupt|empty)"):
        read_manifest(tmp_path)


def test_a_required_manifest_that_is_missing_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path} has no {MANIFEST}"):
        verify_manifest(tmp_path, require=True)


# --- packaged models: DSLCodecInterface.from_hparams, load_codec ---------------------


def packaged_copy(tmp_path, name="dsl-codec-16k"):
    folder = tmp_path / name
    folder.mkdir()
    for file in ("codec.ckpt", "hyperparams.yaml", MANIFEST):
        shutil.copy(PRETRAINED / name / file, folder / file)
    return folder


def test_packaged_reference_models_carry_manifests_that_verify():
    for name in ("dsl-codec-16k", "baseline-codec-16k"):
        assert verify_manifest(PRETRAINED / name, ["codec.ckpt", "hyperparams.yaml"], require=True)


def test_packaged_folder_with_an_empty_state_dict_is_refused(tmp_path):
    folder = packaged_copy(tmp_path)
    torch.save({}, folder / "codec.ckpt")
    write_manifest(folder, ["codec.ckpt", "hyperparams.yaml"])  # even with a matching checksum
    with pytest.raises(ValueError, match=r"codec.ckpt does not fit DSLCodec: \d+ missing key"):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder))


def test_packaged_folder_with_another_models_weights_is_refused(tmp_path):
    folder = packaged_copy(tmp_path)
    shutil.copy(PRETRAINED / "baseline-codec-16k" / "codec.ckpt", folder / "codec.ckpt")
    write_manifest(folder, ["codec.ckpt", "hyperparams.yaml"])
    with pytest.raises(
        ValueError, match=r"codec.ckpt does not fit DSLCodec: \d+ missing key.*encoder\."
    ):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder))


def test_packaged_folder_with_flipped_weight_bytes_is_refused(tmp_path):
    folder = packaged_copy(tmp_path)
    data = bytearray((folder / "codec.ckpt").read_bytes())
    data[len(data) // 2] ^= 0x40
    (folder / "codec.ckpt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="codec.ckpt fails its sha256 checksum"):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder))


def test_packaged_folder_with_an_edited_hyperparams_file_is_refused(tmp_path):
    folder = packaged_copy(tmp_path)
    with open(folder / "hyperparams.yaml", "a") as f:
        f.write("\n# edited\n")
    with pytest.raises(ValueError, match="hyperparams.yaml fails its sha256 checksum"):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder))


def test_packaged_folder_with_nan_weights_is_refused_naming_a_tensor(tmp_path):
    folder = packaged_copy(tmp_path)
    state = torch.load(folder / "codec.ckpt", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 3)
    state[key][0, 0, 0] = float("nan")
    torch.save(state, folder / "codec.ckpt")
    write_manifest(folder, ["codec.ckpt", "hyperparams.yaml"])
    with pytest.raises(ValueError, match=f"codec.ckpt .*NaN or infinite values .*{key}"):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder))


def test_packaged_folder_whose_yaml_does_not_parse_is_named(tmp_path):
    folder = packaged_copy(tmp_path)
    (folder / "hyperparams.yaml").write_text("codec: !new:no.such.Module\n")
    (folder / MANIFEST).unlink()
    with pytest.raises(ValueError, match="cannot build the model of .*hyperparams.yaml"):
        DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder))


def test_load_codec_refuses_a_foreign_checkpoint_naming_it(tmp_path):
    with pytest.raises(ValueError, match="baseline-codec-16k/codec.ckpt does not fit DSLCodec"):
        load_codec(DSL_YAML, PRETRAINED / "baseline-codec-16k" / "codec.ckpt")


def test_load_codec_and_find_checkpoint_name_missing_paths(tmp_path):
    with pytest.raises(ValueError, match="model YAML not found: .*nope.yaml"):
        load_codec(tmp_path / "nope.yaml", PRETRAINED / "dsl-codec-16k")
    with pytest.raises(ValueError, match="codec checkpoint not found: .*nowhere"):
        find_codec_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=f"{tmp_path} holds no checkpoint with a codec.ckpt"):
        find_codec_checkpoint(tmp_path)


# --- checkpoints -----------------------------------------------------------------


def test_recovery_with_every_checkpoint_broken_names_each_file(tmp_path):
    layer = torch.nn.Linear(2, 2)
    ckpt = AtomicCheckpointer(tmp_path, {"layer": layer})
    saved = [ckpt.save_checkpoint(meta={"n": n}) for n in range(2)]
    for checkpoint in saved:
        truncate(checkpoint.path / "layer.ckpt")
    with pytest.raises(CheckpointError) as info:
        ckpt.recover_if_possible()
    for checkpoint in saved:
        assert str(checkpoint.path / "layer.ckpt") in str(info.value)


def test_a_checkpoint_lacking_a_recoverable_is_refused_naming_the_file(tmp_path):
    layer = torch.nn.Linear(2, 2)
    AtomicCheckpointer(tmp_path, {"layer": layer}).save_checkpoint()
    ckpt = AtomicCheckpointer(tmp_path, {"layer": layer, "other": torch.nn.Linear(1, 1)})
    with pytest.raises(CheckpointError, match="lacks other.ckpt"):
        ckpt.recover_if_possible()


# --- the audio helper ------------------------------------------------------------


def test_audio_info_names_each_kind_of_bad_file(tmp_path):
    cases = {
        "empty": empty_wav(tmp_path / "empty.wav"),
        "truncated": truncate(tone(tmp_path / "cut.wav")),
        "unreadable": tmp_path / "missing.wav",
    }
    (tmp_path / "flac").mkdir()
    cases["truncated flac"] = truncate(tone(tmp_path / "flac" / "cut.flac", seconds=1.0))
    for kind, path in cases.items():
        with pytest.raises(BadAudioError) as info:
            audio_info(path)
        assert info.value.kind == kind.split()[0]
        assert str(info.value).startswith(f"{kind.split()[0]} audio file {path}")


def test_audio_info_refuses_a_directory_and_a_self_referencing_symlink(tmp_path):
    with pytest.raises(ValueError, match=f"unreadable audio file {tmp_path} \\(not a regular file"):
        audio_info(tmp_path)
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    with pytest.raises(ValueError, match="unreadable audio file .*loop.wav"):
        audio_info(loop)


def test_read_text_and_read_json_name_the_file(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"list .*latin1.txt is not UTF-8 text \(line 1, byte 3"):
        read_text(tmp_path / "latin1.txt", "list")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(
        ValueError, match="manifest .*list.json holds a JSON list, expected a JSON object"
    ):
        read_json(tmp_path / "list.json", "manifest", expect=dict)


def test_checker_lists_every_bad_file_once_with_a_count(tmp_path):
    checker = AudioChecker()
    for i in range(12):
        checker.check(empty_wav(tmp_path / f"e{i:02d}.wav"))
    with pytest.raises(ValueError) as info:
        checker.finish("the set")
    text = str(info.value)
    assert text.startswith("12 bad audio files in the set") and "and 2 more" in text
    assert str(tmp_path / "e00.wav") in text and "skip_bad_audio=True" in text


# --- LibriTTS ----------------------------------------------------------------------


@pytest.fixture
def libritts(tmp_path):
    root = tmp_path / "LibriTTS"
    for subset, speaker in (("train-clean-100", "19"), ("dev-clean", "84"), ("test-clean", "61")):
        for utt in range(2):
            wav = tone(
                root / subset / speaker / "198" / f"{speaker}_198_000000_00000{utt}.wav", rate=24000
            )
            wav.with_suffix(".normalized.txt").write_text("Hello there.")
    return root


def test_libritts_refuses_a_header_only_wav_naming_it(libritts, tmp_path):
    bad = empty_wav(libritts / "train-clean-100" / "19" / "198" / "19_198_000000_000009.wav")
    with pytest.raises(ValueError, match=f"empty audio file {bad} \\(0 samples\\)"):
        prepare_libritts(libritts, tmp_path / "m")
    assert not (tmp_path / "m" / "train.json").exists()


def test_libritts_refuses_a_wav_cut_mid_data_naming_it(libritts, tmp_path):
    bad = truncate(libritts / "dev-clean" / "84" / "198" / "84_198_000000_000001.wav")
    with pytest.raises(ValueError, match=f"truncated audio file {bad} \\(the data chunk lacks"):
        prepare_libritts(libritts, tmp_path / "m")


def test_libritts_prepare_reports_bad_files_of_train_and_test_together(libritts, tmp_path):
    # one check of every split, then one error: fixing train must not reveal test's
    train = empty_wav(libritts / "train-clean-100" / "19" / "198" / "19_198_000000_000009.wav")
    test = truncate(libritts / "test-clean" / "61" / "198" / "61_198_000000_000001.wav")
    with pytest.raises(
        ValueError,
        match=r"^2 bad audio files in the LibriTTS subsets \(train "
        r"\['train-clean-100'\], valid \['dev-clean'\], test "
        r"\['test-clean'\]\)",
    ) as raised:
        prepare_libritts(libritts, tmp_path / "m")
    assert f"empty audio file {train}" in str(raised.value)
    assert f"truncated audio file {test}" in str(raised.value)
    assert not list((tmp_path / "m").glob("*.json"))


def test_libritts_skip_bad_audio_leaves_bad_files_out_with_a_warning(libritts, tmp_path, caplog):
    bad = empty_wav(libritts / "train-clean-100" / "19" / "198" / "19_198_000000_000009.wav")
    with caplog.at_level(logging.WARNING):
        paths = prepare_libritts(libritts, tmp_path / "m", skip_bad_audio=True)
    assert bad.stem not in json.loads(paths["train"].read_text())
    assert len(json.loads(paths["train"].read_text())) == 2 and str(bad) in caplog.text


def test_libritts_refuses_a_file_name_that_is_not_utf8(libritts, tmp_path):
    badly_named_tone(libritts / "train-clean-100" / "19" / "198")
    with pytest.raises(
        ValueError,
        match=r"badly named audio file .*/caf\\udce9\.wav \(the name is not valid UTF-8\)",
    ):
        prepare_libritts(libritts, tmp_path / "m")


def test_libritts_names_a_transcript_that_is_not_utf8(libritts, tmp_path):
    text = libritts / "dev-clean" / "84" / "198" / "84_198_000000_000000.normalized.txt"
    text.write_bytes(b"na\xefve\n")
    with pytest.raises(ValueError, match=f"transcript {text} is not UTF-8"):
        prepare_libritts(libritts, tmp_path / "m")


@pytest.mark.parametrize("broken", ["opt_libritts_prepare.json", "valid.json"])
def test_libritts_rebuilds_an_option_file_or_manifest_that_does_not_parse(
    libritts, tmp_path, caplog, broken
):
    paths = prepare_libritts(libritts, tmp_path / "m")
    (tmp_path / "m" / broken).write_text('{"truncated": ')
    with caplog.at_level(logging.WARNING):
        prepare_libritts(libritts, tmp_path / "m")
    assert (
        f"{tmp_path / 'm' / broken} is not valid JSON" in caplog.text
        and "rebuilding" in caplog.text
    )
    assert len(read_json(paths["valid"], expect=dict)) == 2
    assert isinstance(read_json(tmp_path / "m" / "opt_libritts_prepare.json"), dict)


# --- AudioSet ----------------------------------------------------------------------


@pytest.fixture
def audioset(tmp_path):
    folder = tmp_path / "as"
    (folder / "audio").mkdir(parents=True)
    (folder / "labels.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/028v0c,"Silence"\n'
    )
    rows = ["# header", "# header", "# YTID, start_seconds, end_seconds, positive_labels"]
    for i, mid in enumerate(["/m/09x0r", "/m/028v0c"] * 2):
        ytid = f"clip{i:07d}"
        rows.append(f'{ytid}, 30.000, 40.000, "{mid}"')
        tone(folder / "audio" / f"Y{ytid}.wav")
    (folder / "segments.csv").write_text("\n".join(rows) + "\n")
    return folder


def _prepare_audioset(folder, **kwargs):
    return prepare_audioset(
        folder / "segments.csv",
        folder / "labels.csv",
        folder / "audio",
        folder / "m.json",
        **kwargs,
    )


def test_audioset_refuses_a_zero_sample_clip_naming_it(audioset):
    bad = empty_wav(audioset / "audio" / "Yclip0000001.wav")
    with pytest.raises(ValueError, match=f"empty audio file {bad}"):
        _prepare_audioset(audioset)
    assert not (audioset / "m.json").exists()


def test_audioset_skip_bad_audio_counts_and_leaves_out_the_truncated_clip(audioset, caplog):
    bad = truncate(audioset / "audio" / "Yclip0000002.wav")
    with caplog.at_level(logging.WARNING):
        counts = _prepare_audioset(audioset, skip_bad_audio=True)
    assert counts["bad"] == 1 and counts["speech"] + counts["silence"] == 3
    assert f"truncated audio file {bad}" in caplog.text
    assert "clip0000002_30" not in read_json(audioset / "m.json")


@pytest.mark.parametrize("which", ["segments.csv", "labels.csv"])
def test_audioset_names_a_csv_that_is_not_utf8(audioset, which):
    with open(audioset / which, "ab") as f:
        f.write(b'clipXXXXXXX, 0.0, 10.0, "/m/09x0r \xff"\n')
    with pytest.raises(ValueError, match=f"{audioset / which} is not UTF-8 text \\(line \\d+"):
        _prepare_audioset(audioset)


def test_routing_evaluation_names_a_manifest_that_does_not_parse(tmp_path):
    from evaluate import load_clips

    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="AudioSet manifest .*manifest.json is not valid JSON"):
        load_clips(tmp_path / "manifest.json", 16000, 1.0, 10, 0)


def test_routing_evaluation_refuses_a_zero_sample_clip_in_an_old_manifest(tmp_path):
    from evaluate import load_clips

    good, bad = tone(tmp_path / "good.wav"), empty_wav(tmp_path / "bad.wav")
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {"a": {"wav": str(good), "label": "speech"}, "b": {"wav": str(bad), "label": "silence"}}
        )
    )
    with pytest.raises(ValueError, match=f"empty audio file {bad}"):
        load_clips(tmp_path / "manifest.json", 16000, 1.0, 10, 0)


# --- Speech Commands ---------------------------------------------------------------


@pytest.fixture
def commands(tmp_path):
    root = tmp_path / "sc"
    for word in ("yes", "no", "bed"):
        for i in range(3):
            tone(root / word / f"0000000{i}_nohash_0.wav")
    (root / "validation_list.txt").write_text("yes/00000001_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/00000002_nohash_0.wav\n")
    tone(root / "_background_noise_" / "noise.wav", seconds=2.0)
    return root


def test_speech_commands_refuses_a_header_only_wav_naming_it(commands, tmp_path):
    bad = empty_wav(commands / "bed" / "deadbeef_nohash_0.wav")
    with pytest.raises(ValueError, match=f"empty audio file {bad}"):
        prepare_speech_commands(commands, tmp_path / "m", task="35")


def test_speech_commands_refuses_a_self_referencing_symlink_naming_it(commands, tmp_path):
    loop = commands / "yes" / "cafecafe_nohash_0.wav"
    loop.symlink_to(loop)
    with pytest.raises(
        ValueError, match=f"unreadable audio file {loop} \\(.*(loop|Too many levels)"
    ):
        prepare_speech_commands(commands, tmp_path / "m", task="35")


def test_speech_commands_names_a_list_file_that_is_not_utf8(commands, tmp_path):
    (commands / "testing_list.txt").write_bytes(b"no/\xff\xfe_nohash_0.wav\n")
    with pytest.raises(
        ValueError, match=f"Speech Commands list {commands / 'testing_list.txt'} is not UTF-8"
    ):
        prepare_speech_commands(commands, tmp_path / "m", task="35")


def test_speech_commands_refuses_a_truncated_background_noise_file(commands, tmp_path):
    bad = truncate(commands / "_background_noise_" / "noise.wav")
    with pytest.raises(ValueError, match=f"truncated audio file {bad}"):
        prepare_speech_commands(commands, tmp_path / "m", task="12")


def test_speech_commands_skips_a_badly_named_file_when_asked(commands, tmp_path, caplog):
    badly_named_tone(commands / "bed")
    with caplog.at_level(logging.WARNING):
        paths = prepare_speech_commands(commands, tmp_path / "m", task="35", skip_bad_audio=True)
    assert "badly named audio file" in caplog.text
    assert sum(len(read_json(p)) for p in paths.values()) == 9


# --- LibriCount --------------------------------------------------------------------


@pytest.fixture
def libricount(tmp_path):
    folder = tmp_path / "lc" / "test"
    for count in range(3):
        for i in range(2):
            wav = tone(folder / f"{count}_{i:04d}.wav")
            wav.with_suffix(".json").write_text(
                json.dumps([{"speaker_id": s} for s in range(count)])
            )
    return folder.parent


def test_libricount_refuses_a_header_only_wav_naming_it(libricount, tmp_path):
    bad = empty_wav(libricount / "test" / "2_0009.wav")
    bad.with_suffix(".json").write_text("[{}, {}]")
    with pytest.raises(ValueError, match=f"empty audio file {bad}"):
        prepare_libricount(libricount, tmp_path / "m.json", folds=2)


def test_libricount_refuses_a_truncated_wav_naming_it(libricount, tmp_path):
    bad = truncate(libricount / "test" / "1_0001.wav")
    with pytest.raises(ValueError, match=f"truncated audio file {bad}"):
        prepare_libricount(libricount, tmp_path / "m.json", folds=2)


def test_libricount_reports_metadata_problems_and_bad_audio_together(libricount, tmp_path):
    bad = truncate(libricount / "test" / "2_0001.wav")
    missing = libricount / "test" / "1_0000.json"
    missing.unlink()
    wrong = libricount / "test" / "0_0001.json"
    wrong.write_text("[{}]")
    with pytest.raises(ValueError) as raised:
        prepare_libricount(libricount, tmp_path / "m.json", folds=2)
    lines = str(raised.value).splitlines()
    assert lines[0] == f"problems in LibriCount {libricount / 'test'} (every file was checked):"
    assert lines[1].startswith(
        f"- 1 bad audio file in LibriCount {libricount / 'test'}: truncated audio file {bad}"
    )
    assert lines[2:] == [
        f"- {wrong.with_suffix('.wav')}: the name says 0 speakers but 0_0001.json lists 1",
        f"- {missing.with_suffix('.wav')} has no 1_0000.json next to it",
    ]
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(ValueError) as raised:  # bad audio left out; the metadata still named
        prepare_libricount(libricount, tmp_path / "m.json", folds=2, skip_bad_audio=True)
    assert str(raised.value).splitlines() == lines[:1] + lines[2:]


def test_libricount_names_metadata_that_does_not_parse_with_its_position(libricount, tmp_path):
    meta = libricount / "test" / "1_0000.json"
    meta.write_text('[{"speaker_id": 1},')
    with pytest.raises(
        ValueError, match=f"LibriCount metadata {meta} is not valid JSON \\(line 1, column"
    ):
        prepare_libricount(libricount, tmp_path / "m.json", folds=2)


def test_libricount_names_metadata_that_is_not_utf8(libricount, tmp_path):
    meta = libricount / "test" / "2_0001.json"
    meta.write_bytes(b'[{"name": "\xe9"}, {}]')
    with pytest.raises(ValueError, match=f"LibriCount metadata {meta} is not UTF-8"):
        prepare_libricount(libricount, tmp_path / "m.json", folds=2)


def test_libricount_names_metadata_of_the_wrong_type(libricount, tmp_path):
    meta = libricount / "test" / "0_0000.json"
    meta.write_text('{"speakers": []}')
    with pytest.raises(
        ValueError, match=f"LibriCount metadata {meta}: expected a JSON list .* dict"
    ):
        prepare_libricount(libricount, tmp_path / "m.json", folds=2)


# --- the codec recipe: hyperparameters, manifests, batch size ----------------------

CODEC_RECIPE = ROOT / "recipes" / "LibriTTS" / "codec"


def _load_recipe(name, path):
    """A recipe script as a module (every recipe's script is called train.py)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def codec_recipe():
    return _load_recipe("codec_recipe_train", CODEC_RECIPE / "train.py")


@pytest.mark.parametrize(
    "override, message",
    [
        ("--number_of_epochs=abc", r"number_of_epochs='abc': expected an integer >= 1"),
        ("--number_of_epochs=2.5", r"number_of_epochs=2.5: expected an integer >= 1"),
        ("--number_of_epochs=0", r"number_of_epochs=0: expected an integer >= 1"),
        ("--lr_generator=abc", r"lr_generator='abc': expected a number > 0"),
        ("--lr_discriminator=0", r"lr_discriminator=0: expected a number > 0"),
        ("--lr_generator=.nan", r"lr_generator=nan: expected a number > 0"),
        ("--batch_size=0", r"batch_size=0: expected an integer >= 1"),
        ("--valid_batch_size=true", r"valid_batch_size=True: expected an integer >= 1"),
        ("--train_crop_seconds=0", r"train_crop_seconds=0: expected a number > 0"),
        ("--valid_max_seconds=-1.0", r"valid_max_seconds=-1.0: expected a number > 0"),
        ("--target_light_share=2", r"target_light_share=2: expected a number in \(0, 1\)"),
        ("--target_light_share=0", r"target_light_share=0: expected a number in \(0, 1\)"),
        ("--adversarial_start_step=-1", r"adversarial_start_step=-1: expected an integer >= 0"),
        ("--retrofit_distill_steps=-5", r"retrofit_distill_steps=-5: expected an integer >= 0"),
        (
            "--loss_weights={mell: 1.0}",
            r"loss_weights=.*: expected only the terms mel, stft, .* \(unknown: mell\)",
        ),
        (
            "--loss_weights={stft: -4.0}",
            r"loss_weights=.*: expected weights that are each a number >= 0 \(stft: -4.0\)",
        ),
        (
            "--level_check_dbfs=[-20.0, 3.0]",
            r"level_check_dbfs=\[-20.0, 3.0\]: expected a non-empty list of items, each a number <= 0",
        ),
        ("--valid_visqol=maybe", r"valid_visqol='maybe': expected True or False"),
        (
            "--eval_modes=[full, loud]",
            r"eval_modes=\['full', 'loud'\]: expected a non-empty list of items among full, light, mixed",
        ),
        ("--lr_decay_per_step=1.5", r"lr_decay_per_step=1.5: expected a number > 0 and <= 1"),
    ],
)
def test_codec_recipe_refuses_a_bad_hyperparameter_before_writing_anything(
    codec_recipe, tmp_path, override, message
):
    out = tmp_path / "out"
    argv = [
        str(CODEC_RECIPE / "hparams" / "codec_dsl.yaml"),
        f"--data_folder={tmp_path}",
        f"--output_folder={out}",
        override,
    ]
    with pytest.raises(ValueError, match=r"bad hyperparameter in .*codec_dsl.yaml .*" + message):
        codec_recipe.main(argv)
    assert not out.exists()  # checked before the experiment folder, the data, the model


def test_codec_recipe_names_every_bad_hyperparameter_at_once(codec_recipe, tmp_path):
    argv = [
        str(CODEC_RECIPE / "hparams" / "codec_baseline.yaml"),
        f"--data_folder={tmp_path}",
        "--number_of_epochs=abc",
        "--lr_generator=-1e-3",
    ]
    with pytest.raises(
        ValueError,
        match=r"bad hyperparameters in .*codec_baseline.yaml .*"
        r"number_of_epochs='abc'.*; lr_generator=-0.001: expected",
    ):
        codec_recipe.main(argv)


def test_codec_recipe_refuses_a_crop_shorter_than_the_losses_windows(codec_recipe, tmp_path):
    argv = [
        str(CODEC_RECIPE / "hparams" / "codec_dsl.yaml"),
        f"--data_folder={tmp_path}",
        f"--output_folder={tmp_path / 'out'}",
        "--train_crop_seconds=0.05",
    ]
    with pytest.raises(
        ValueError,
        match=r"train_crop_seconds=0.05: expected at least 0.064 s "
        r"\(1025 samples at sample_rate=16000: one codec hop \(320",
    ):
        codec_recipe.main(argv)
    assert not (tmp_path / "out" / "manifests").exists()  # before data preparation


def test_codec_recipe_refuses_a_batch_larger_than_the_training_set_before_training(
    libritts, tmp_path
):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "hparams/codec_dsl.yaml",
            f"--data_folder={libritts}",
            f"--output_folder={out}",
            "--batch_size=3",
            "--valid_visqol=False",
        ],
        cwd=CODEC_RECIPE,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr  # SpeechBrain logs the exception once its log is set up
    assert re.search(
        r"ValueError: batch_size=3: expected at most 2, the training utterances per "
        r"process \(.*/manifests/train.json holds 2",
        output,
    ), output[-2000:]
    assert "batch_size=3: expected at most 2" in (out / "log.txt").read_text()
    assert (out / "manifests" / "train.json").is_file()  # refused after preparing, before training
    assert not (out / "test_metrics.json").exists() and not list((out / "save").glob("CKPT*"))


def _dataio_hparams(folder):
    return {
        "sample_rate": 16000,
        "train_crop_seconds": 1.0,
        "valid_max_seconds": 1.0,
        "manifest_folder": str(folder),
    }


def test_codec_recipe_names_a_manifest_that_does_not_parse(codec_recipe, libritts, tmp_path):
    paths = prepare_libritts(libritts, tmp_path / "m")
    truncate(paths["valid"])
    with pytest.raises(ValueError, match=f"manifest {paths['valid']} is not valid JSON \\(line"):
        codec_recipe.dataio_prepare(_dataio_hparams(tmp_path / "m"), libritts)


def test_codec_recipe_names_a_manifest_entry_without_its_duration(codec_recipe, libritts, tmp_path):
    paths = prepare_libritts(libritts, tmp_path / "m")
    entries = read_json(paths["test"])
    utt = sorted(entries)[0]
    del entries[utt]["duration"]
    paths["test"].write_text(json.dumps(entries))
    with pytest.raises(
        ValueError, match=f"manifest {paths['test']}: entry '{utt}' lacks the field\\(s\\) duration"
    ):
        codec_recipe.dataio_prepare(_dataio_hparams(tmp_path / "m"), libritts)


# --- the probe recipes: hyperparameters and manifests ------------------------------


def _run_probe(recipe, *args):
    return subprocess.run(
        [sys.executable, "train.py", "hparams/probe.yaml", *args],
        cwd=ROOT / "recipes" / recipe / "probe",
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )


def test_speech_commands_probe_names_a_manifest_that_does_not_parse(tmp_path):
    out = tmp_path / "out"
    (out / "manifests").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (out / "manifests" / f"{split}.json").write_text("{}")
    (out / "manifests" / "valid.json").write_text('{"yes_0": {"wav": ')
    result = _run_probe(
        "SpeechCommands", f"--data_folder={tmp_path}", f"--output_folder={out}", "--skip_prep=True"
    )
    assert result.returncode != 0
    assert (
        f"ValueError: manifest {out / 'manifests' / 'valid.json'} is not valid JSON"
        in result.stdout + result.stderr
    )


def test_libricount_probe_names_a_manifest_of_the_wrong_type(tmp_path):
    out = tmp_path / "out"
    (out / "manifests").mkdir(parents=True)
    (out / "manifests" / "libricount.json").write_text("[1, 2]")
    result = _run_probe(
        "LibriCount", f"--data_folder={tmp_path}", f"--output_folder={out}", "--skip_prep=True"
    )
    assert result.returncode != 0
    assert (
        f"ValueError: manifest {out / 'manifests' / 'libricount.json'} holds a JSON list, "
        f"expected a JSON object"
    ) in result.stdout + result.stderr


@pytest.mark.parametrize(
    "recipe, override, message",
    [
        ("SpeechCommands", "--task=20", r"task=20: expected one of 12, 35, '12', '35'"),
        ("LibriCount", "--folds=1", r"folds=1: expected an integer >= 2"),
        (
            "LibriCount",
            "--modes=[full, loud]",
            r"modes=\['full', 'loud'\]: expected a non-empty list of items among",
        ),
    ],
)
def test_probe_recipes_refuse_a_bad_hyperparameter_naming_it(tmp_path, recipe, override, message):
    module = _load_recipe(f"{recipe}_probe_train", ROOT / "recipes" / recipe / "probe" / "train.py")
    argv = [
        str(ROOT / "recipes" / recipe / "probe" / "hparams" / "probe.yaml"),
        f"--data_folder={tmp_path}",
        f"--output_folder={tmp_path / 'out'}",
        override,
    ]
    with pytest.raises(ValueError, match=r"bad hyperparameter in .*probe.yaml .*" + message):
        module.main(argv)
    assert not (tmp_path / "out").exists()
