"""Loading a model needs nothing from training: one manifest reader, one file checksum,
one strict loader, and every shipped model still loads through them."""

import ast
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT
from speechbrain.inference.interfaces import Pretrained

from speechbrain_dsl.inference import export, loading, manifest, runtime
from speechbrain_dsl.inference.loading import (
    find_codec_checkpoint,
    list_checkpoints,
    load_codec,
    load_packaged,
    load_state_strict,
    load_weights,
)
from speechbrain_dsl.inference.manifest import (
    MANIFEST,
    CheckpointError,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from speechbrain_dsl.training import checkpoints, weight_average

INFERENCE = ROOT / "speechbrain_dsl" / "inference"
PRETRAINED = sorted(p for p in (ROOT / "pretrained").iterdir() if p.is_dir())
MODULES = sorted(p.stem for p in INFERENCE.glob("*.py") if p.stem != "__init__")


def run_python(code):
    """Runs ``code`` in a fresh interpreter from the checkout; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture
def checked_folder(tmp_path):
    """A folder with a weights file and its manifest."""
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "layer.ckpt")
    write_manifest(tmp_path)
    return tmp_path


# --- the manifest -------------------------------------------------------------------


def test_a_tampered_file_fails_its_checksum_in_every_reader_naming_the_file(checked_folder):
    path = checked_folder / "layer.ckpt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    expected = f"{path} fails its sha256 checksum .*{MANIFEST}"
    with pytest.raises(CheckpointError, match=expected):
        verify_manifest(checked_folder)
    with pytest.raises(CheckpointError, match=expected):
        load_state_strict(torch.nn.Linear(2, 2), path)
    with pytest.raises(ValueError, match=expected):  # the onnxruntime engine's check
        runtime._check_manifest(checked_folder, ["layer.ckpt"])


@pytest.mark.parametrize(
    "line",
    [
        "not a checksum line",
        "abc123  layer.ckpt",  # a digest too short
        "G" * 64 + "  layer.ckpt",  # not hex
        "0" * 64 + "layer.ckpt",  # no separator
    ],
)
def test_a_malformed_manifest_line_is_refused_naming_the_manifest_and_line(checked_folder, line):
    good = (checked_folder / MANIFEST).read_text()
    (checked_folder / MANIFEST).write_text(good + line + "\n")
    expected = f"checksum manifest {checked_folder / MANIFEST} is corrupt \\(line 2: "
    with pytest.raises(CheckpointError, match=expected):
        read_manifest(checked_folder)
    with pytest.raises(CheckpointError, match=expected):
        load_state_strict(torch.nn.Linear(2, 2), checked_folder / "layer.ckpt")
    # the onnxruntime engine used to skip such lines; now it reads the manifest alike
    with pytest.raises(ValueError, match=expected):
        runtime._check_manifest(checked_folder, ["layer.ckpt"])


def test_an_empty_manifest_and_an_unlisted_file_are_refused_by_the_runtime_too(checked_folder):
    (checked_folder / "other.onnx").write_bytes(b"graph")
    with pytest.raises(ValueError, match="other.onnx is not listed in the checksum manifest"):
        runtime._check_manifest(checked_folder, ["other.onnx"])
    (checked_folder / MANIFEST).write_text("")
    with pytest.raises(ValueError, match=f"checksum manifest .*{MANIFEST} is empty"):
        runtime._check_manifest(checked_folder, ["layer.ckpt"])


def test_a_folder_without_manifest_is_loaded_with_a_warning_or_refused_when_required(
    tmp_path, caplog
):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "layer.ckpt")
    runtime._check_manifest(tmp_path, ["layer.ckpt"])  # nothing to check against
    with caplog.at_level(logging.WARNING):
        load_state_strict(torch.nn.Linear(2, 2), tmp_path / "layer.ckpt")
    assert f"{tmp_path} has no {MANIFEST}" in caplog.text
    with pytest.raises(CheckpointError, match=f"{tmp_path} has no {MANIFEST}"):
        verify_manifest(tmp_path, require=True)


def test_the_manifest_is_written_atomically_in_sha256sums_format(checked_folder):
    text = (checked_folder / MANIFEST).read_text()
    digest = hashlib.sha256((checked_folder / "layer.ckpt").read_bytes()).hexdigest()
    assert text == f"{digest}  layer.ckpt\n"  # what `sha256sum -c` reads
    assert not [p for p in checked_folder.iterdir() if p.name.startswith(".")]  # no temp left


def test_there_is_one_sha256_of_a_file_and_one_manifest_reader():
    assert export.sha256_of is sha256_file  # the old name is the same function
    for module in (checkpoints, loading):
        assert module.sha256_file is sha256_file
    for name in ("MANIFEST", "read_manifest", "verify_manifest", "write_manifest"):
        assert getattr(checkpoints, name) is getattr(manifest, name)
    for path in INFERENCE.glob("*.py"):  # nothing else hashes a file in inference/
        if path.name != "manifest.py":
            assert "hashlib" not in path.read_text(), path


# --- the loader and the old import paths ----------------------------------------------


def test_old_names_in_training_are_the_loading_modules_objects():
    moved = (
        "BEST_BY",
        "CheckpointError",
        "INFINITE_ALLOWED",
        "check_state_dict",
        "find_codec_checkpoint",
        "has_bad_values",
        "load_codec",
        "load_state_strict",
        "load_weights",
    )
    for name in moved:
        assert getattr(checkpoints, name) is getattr(loading, name), name
    for name in ("AVERAGE_FILE", "RECOVERABLE", "averaged_state", "read_average"):
        assert getattr(weight_average, name) is getattr(loading, name), name
    assert issubclass(CheckpointError, ValueError)


def test_find_codec_checkpoint_takes_the_latest_of_equal_values_and_skips_a_corrupt_meta(
    tmp_path, caplog
):
    for name, loss, time in (("CKPT+a", 1.0, 1.0), ("CKPT+b", 1.0, 2.0), ("CKPT+c", 3.0, 3.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "CKPT.yaml").write_text(f"unixtime: {time}\nloss: {loss}\n")
        (tmp_path / name / "codec.ckpt").write_bytes(b"")
    (tmp_path / "CKPT+broken").mkdir()
    (tmp_path / "CKPT+broken" / "CKPT.yaml").write_text("unixtime: [unclosed\n")
    with caplog.at_level(logging.WARNING):
        assert sorted(c.path.name for c in list_checkpoints(tmp_path)) == [
            "CKPT+a",
            "CKPT+b",
            "CKPT+c",
        ]
    assert "skipping checkpoint" in caplog.text and "CKPT+broken" in caplog.text
    assert find_codec_checkpoint(tmp_path, min_key="loss").parent.name == "CKPT+b"
    assert find_codec_checkpoint(tmp_path, max_key="loss").parent.name == "CKPT+c"
    assert find_codec_checkpoint(tmp_path).parent.name == "CKPT+c"
    with pytest.raises(ValueError, match="min_key .* or max_key .*, not both"):
        find_codec_checkpoint(tmp_path, min_key="loss", max_key="loss")


def test_load_codec_checks_the_model_definition_that_travels_with_the_weights(tmp_path):
    folder = tmp_path / "packaged"
    folder.mkdir()
    for name in ("codec.ckpt", "hyperparams.yaml", MANIFEST):
        shutil.copy(ROOT / "pretrained" / "baseline-codec-16k" / name, folder / name)
    with open(folder / "hyperparams.yaml", "a") as f:
        f.write("\n# edited\n")
    with pytest.raises(ValueError, match="hyperparams.yaml fails its sha256 checksum"):
        load_codec(None, folder)


def test_inference_imports_nothing_from_training():
    result = run_python("""
        import sys
        import speechbrain_dsl.inference.interface, speechbrain_dsl.inference.package
        loaded = [m for m in sys.modules if m.startswith('speechbrain_dsl.training')]
        assert not loaded, loaded
    """)
    assert result.returncode == 0, result.stderr[-2000:]


def test_runtime_and_its_manifest_check_import_without_pytorch(checked_folder):
    result = run_python(f"""
        import sys
        from pathlib import Path
        sys.modules["torch"] = None  # any import of PyTorch fails
        from speechbrain_dsl.inference import runtime
        runtime._check_manifest(Path({str(checked_folder)!r}), ["layer.ckpt"])
        assert "speechbrain_dsl.inference.loading" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_function_in_inference_imports_the_package_to_dodge_a_circle():
    for path in INFERENCE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "speechbrain_dsl"
                ):
                    pytest.fail(f"{path.name}:{node.lineno} imports {node.module} in a function")
                if isinstance(node, ast.Import) and any(
                    a.name.startswith("speechbrain_dsl") for a in node.names
                ):
                    pytest.fail(f"{path.name}:{node.lineno} imports the package in a function")


@pytest.mark.parametrize("module", MODULES)
def test_each_inference_module_imports_on_its_own(module):
    result = run_python(f"""
        import sys
        import speechbrain_dsl.inference.{module}
        assert not [m for m in sys.modules if m.startswith('speechbrain_dsl.training')]
    """)
    assert result.returncode == 0, result.stderr[-2000:]


# --- the shipped models ---------------------------------------------------------------


@pytest.mark.parametrize("folder", PRETRAINED, ids=lambda p: p.name)
def test_every_shipped_model_matches_its_manifest_and_loads_with_the_new_loader(folder):
    listed = read_manifest(folder)
    assert {"codec.ckpt", "hyperparams.yaml"} <= set(listed)
    assert verify_manifest(folder, require=True)
    assert all(sha256_file(folder / name) == digest for name, digest in listed.items())
    codec = load_codec(None, folder)  # weights and definition checked, keys strict
    loaded, state = codec.state_dict(), load_weights(folder / "codec.ckpt")
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert find_codec_checkpoint(folder) == folder / "codec.ckpt"


def test_a_shipped_model_loads_as_an_interface_through_load_packaged():
    folder = ROOT / "pretrained" / "dsl-codec-16k"
    interface = load_packaged(Pretrained, folder, savedir=str(folder))
    state = load_weights(folder / "codec.ckpt")
    assert torch.equal(
        interface.mods.codec.state_dict()["encoder.dsl.calibrated_threshold"],
        state["encoder.dsl.calibrated_threshold"],
    )
