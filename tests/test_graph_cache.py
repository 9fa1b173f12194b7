"""The graph cache: a package without graphs runs in onnxruntime, its encoder exported once.

A copy of the shipped package (``codec.ckpt``, ``hyperparams.yaml``,
``SHA256SUMS``: no graphs) is loaded with a ``savedir``; the first load exports
``<savedir>/onnx-cache/encoder.onnx`` and lists it in the cache's own
``SHA256SUMS``, later loads check it (checksum, then the metadata's
``weights_sha256`` and settings) and reuse it. A tampered or foreign graph is
exported again, with a warning naming the file.
"""

import json
import logging
import shutil

import onnx
import pytest
import torch
from conftest import ROOT
from deploy_helpers import speechy

from speechbrain_dsl.inference import export
from speechbrain_dsl.inference.export import (
    DECODER_FILE,
    ENCODER_FILE,
    GRAPH_CACHE,
    METADATA_KEY,
    graph_problem,
    metadata,
    read_metadata,
)
from speechbrain_dsl.inference.interface import DSLCodecInterface, load_tokenizer
from speechbrain_dsl.inference.manifest import (
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from speechbrain_dsl.inference.runtime import OnnxCodec

MODEL = ROOT / "pretrained" / "dsl-codec-16k"
PACKAGE_FILES = ("codec.ckpt", "hyperparams.yaml", "SHA256SUMS")


def copy_package(folder):
    """The shipped package's files (no graphs) in ``folder``."""
    folder.mkdir(parents=True)
    for name in PACKAGE_FILES:
        shutil.copy(MODEL / name, folder / name)
    return folder


def load(folder, savedir, **kwargs):
    return DSLCodecInterface.from_hparams(source=str(folder), savedir=str(savedir), **kwargs)


def count_exports(monkeypatch, replace=None):
    """The paths every encoder export writes (``replace`` runs instead of exporting)."""
    calls = []
    real = export.export_onnx

    def counting(model, path, info=None):
        calls.append(path)
        return (replace or real)(model, path, info)

    monkeypatch.setattr(export, "export_onnx", counting)
    return calls


def audio():
    return torch.stack([speechy(1.5, 3), speechy(1.5, 4) * 0.5])  # 2 x 1.5 s


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The first load of a package copy: ``(package, savedir, interface, exports)``."""
    root = tmp_path_factory.mktemp("graph_cache")
    package = copy_package(root / "dsl-codec-16k")
    with pytest.MonkeyPatch.context() as patch:
        exports = count_exports(patch)
        interface = load(package, root / "savedir")
    return package, root / "savedir", interface, exports


@pytest.fixture(scope="module")
def cli_package(tmp_path_factory):
    """A package copy after ``python -m speechbrain_dsl.inference.export PKG --folder PKG``."""
    package = copy_package(tmp_path_factory.mktemp("cli") / "dsl-codec-16k")
    assert export.main([str(package), "--folder", str(package)]) == 0
    return package


def cache_copy(first, savedir):
    """``savedir`` holding a copy of the first load's cache."""
    _, cached, _, _ = first
    shutil.copytree(cached / GRAPH_CACHE, savedir / GRAPH_CACHE)
    return savedir / GRAPH_CACHE


def test_first_load_exports_the_encoder_graph_and_later_loads_reuse_it(first, monkeypatch):
    package, savedir, interface, exports = first
    cache = savedir / GRAPH_CACHE
    graph = cache / ENCODER_FILE
    assert exports == [graph] and interface.engine == "onnxruntime"
    assert interface.runtime.encoder_path == graph and interface.runtime.decoder is None
    assert read_manifest(cache) == {ENCODER_FILE: sha256_file(graph)}
    assert read_metadata(graph)["weights_sha256"] == sha256_file(package / "codec.ckpt")
    # the package itself is left as it was
    assert sorted(p.name for p in package.iterdir()) == sorted(PACKAGE_FILES)
    assert (package / "SHA256SUMS").read_bytes() == (MODEL / "SHA256SUMS").read_bytes()

    stamp, data = graph.stat().st_mtime_ns, graph.read_bytes()
    later = count_exports(monkeypatch)
    second = load(package, savedir)
    tokenizer = load_tokenizer(package, savedir=str(savedir))
    assert later == []  # no export: the cached graph is checked and reused
    assert second.engine == tokenizer.engine == "onnxruntime"
    assert second.runtime.encoder_path == tokenizer.runtime.encoder_path == graph
    assert graph.stat().st_mtime_ns == stamp and graph.read_bytes() == data
    assert load(package, savedir / "other", engine="torch").runtime is None
    assert later == [] and not (savedir / "other").exists()  # torch asks for no graph


def test_cached_engine_gives_the_tokens_of_a_freshly_exported_runtime(first, cli_package):
    _, _, interface, _ = first
    fresh = OnnxCodec.from_folder(cli_package, decoder=False)  # exported by the CLI, anew
    wavs = audio()
    out = interface.encode_with_routing(wavs, mode="mixed")
    want = fresh.encode(wavs.numpy(), mode="mixed", threshold=interface.threshold)
    assert out.tokens.shape == (2, 75, 8)
    assert torch.equal(out.tokens, torch.from_numpy(want.tokens))
    assert torch.equal(out.routing.route, torch.from_numpy(want.route))
    tokenizer = load_tokenizer(first[0], savedir=str(first[1]))
    assert torch.equal(tokenizer.sig_to_tokens(wavs), out.tokens)


def test_a_tampered_cached_graph_is_detected_and_exported_again(
    first, tmp_path, monkeypatch, caplog
):
    package, savedir, _, _ = first
    original = (savedir / GRAPH_CACHE / ENCODER_FILE).read_bytes()
    cache = cache_copy(first, tmp_path)
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    (cache / ENCODER_FILE).write_bytes(bytes(data))
    exports = count_exports(monkeypatch)
    with caplog.at_level(logging.WARNING):
        interface = load(package, tmp_path)
    assert exports == [cache / ENCODER_FILE] and interface.engine == "onnxruntime"
    assert f"{cache / ENCODER_FILE} fails its sha256 checksum" in caplog.text
    assert "exporting it again" in caplog.text
    assert (cache / ENCODER_FILE).read_bytes() == original  # the export is deterministic
    assert verify_manifest(cache, [ENCODER_FILE], require=True)


def test_a_cached_graph_of_other_weights_is_not_used(first, tmp_path, monkeypatch, caplog):
    package, _, interface, _ = first
    cache = cache_copy(first, tmp_path)
    proto = onnx.load(str(cache / ENCODER_FILE))
    (entry,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    foreign = metadata(interface.codec, "encoder", "0" * 64)
    entry.value = json.dumps(foreign)
    onnx.save(proto, str(cache / ENCODER_FILE))
    write_manifest(cache, [ENCODER_FILE])  # a consistent manifest: only the metadata tells
    expected = metadata(interface.codec, "encoder", sha256_file(package / "codec.ckpt"))
    assert "was exported from other weights" in graph_problem(cache, ENCODER_FILE, expected)
    exports = count_exports(monkeypatch)
    with caplog.at_level(logging.WARNING):
        again = load(package, tmp_path)
    assert exports == [cache / ENCODER_FILE] and again.engine == "onnxruntime"
    assert f"{cache / ENCODER_FILE} was exported from other weights" in caplog.text
    assert read_metadata(cache / ENCODER_FILE) == read_metadata(
        first[1] / GRAPH_CACHE / ENCODER_FILE
    )
    assert graph_problem(cache, ENCODER_FILE, expected) is None


def test_export_cli_folder_output_loads_with_its_own_graphs(cli_package, tmp_path, monkeypatch):
    listed = read_manifest(cli_package)
    assert sorted(listed) == sorted(["codec.ckpt", "hyperparams.yaml", ENCODER_FILE, DECODER_FILE])
    assert read_manifest(MODEL).items() <= listed.items()  # the package's entries, kept
    assert verify_manifest(cli_package, require=True)
    exports = count_exports(monkeypatch)
    interface = load(cli_package, tmp_path / "savedir")
    assert exports == [] and not (tmp_path / "savedir").exists()  # no cache needed
    assert interface.engine == "onnxruntime"
    assert interface.runtime.encoder_path == cli_package / ENCODER_FILE
    assert interface.runtime.decoder is not None
    tokens = interface.encode_batch(audio()[:1, :16000])
    assert interface.decode_batch(tokens).shape == (1, 16000)


def test_an_unwritable_savedir_exports_to_a_temporary_folder(first, tmp_path, monkeypatch, caplog):
    package, savedir, _, _ = first
    data = (savedir / GRAPH_CACHE / ENCODER_FILE).read_bytes()
    # the first load's graph stands in for an export (the same bytes): no minute spent here
    exports = count_exports(monkeypatch, lambda model, path, info: path.write_bytes(data))
    not_a_folder = tmp_path / "savedir"
    not_a_folder.write_text("a file where the cache folder would go")  # root writes anywhere
    with caplog.at_level(logging.WARNING):
        interface = load(package, not_a_folder)
    assert interface.engine == "onnxruntime" and len(exports) == 1
    assert "cannot write the graph cache" in caplog.text and str(not_a_folder) in caplog.text
    assert not_a_folder not in interface.runtime.encoder_path.parents


def test_a_failed_export_falls_back_to_torch_by_default_and_is_an_error_when_asked(
    first, tmp_path, monkeypatch, caplog
):
    package = first[0]

    def fail(model, path, info):
        raise RuntimeError("the exporter broke")

    count_exports(monkeypatch, fail)
    with caplog.at_level(logging.WARNING):
        interface = load(package, tmp_path / "a")
    assert interface.engine == "torch" and interface.runtime is None
    assert "running in PyTorch, not onnxruntime" in caplog.text
    assert "the exporter broke" in caplog.text
    with pytest.raises(ValueError, match=r"engine: onnxruntime: .* the exporter broke"):
        load(package, tmp_path / "b", engine="onnxruntime")
