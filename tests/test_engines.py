"""The interface and the tokenizer in onnxruntime and in PyTorch: same tokens, routes, audio."""

import shutil

import pytest
import torch
from deploy_helpers import first_token_ties, onnx_package, route_ties, speechy, widest_gap

from speechbrain_dsl.inference.interface import DSLCodecInterface, load_tokenizer
from speechbrain_dsl.inference.tokenizer import DSLTokenizer
from speechbrain_dsl.lobes.codec import DSLCodec
from speechbrain_dsl.training.checkpoints import write_manifest


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return onnx_package(tmp_path_factory)


def load(folder, **kwargs):
    return DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder), **kwargs)


@pytest.fixture(scope="module")
def engines(folder):
    return load(folder), load(folder, engine="torch")


def batch():
    wavs = torch.stack([speechy(4.3, 11), speechy(4.3, 12), speechy(4.3, 13) * 0.5])
    return wavs, torch.tensor([1.0, 0.71, 0.38])


def test_packaged_graphs_are_checksummed_and_onnxruntime_is_the_default_on_cpu(folder, engines):
    listed = (folder / "SHA256SUMS").read_text()
    for name in (
        "codec.ckpt",
        "hyperparams.yaml",
        "encoder.onnx",
        "decoder.onnx",
        "encoder.int8.onnx",
    ):
        assert f"  {name}\n" in listed
    ort, pt = engines
    assert (ort.engine, pt.engine) == ("onnxruntime", "torch")
    assert ort.runtime.precision == "fp32" and pt.runtime is None
    assert load(folder, onnx_precision="int8").runtime.precision == "int8"


@pytest.mark.parametrize("mode", ["full", "light", "mixed"])
def test_engines_give_the_same_tokens_routes_and_audio(engines, mode):
    ort, pt = engines
    wavs, lengths = batch()
    threshold = widest_gap(pt.codec.predict_distances(wavs, lengths)[0])  # the unpadded item
    results = {}
    for model in (ort, pt):
        results[model.engine] = model.encode_with_routing(
            wavs, lengths, mode=mode, threshold=threshold
        )
    out_ort, out_pt = results["onnxruntime"], results["torch"]
    t_ort, t_pt = out_ort.tokens, out_pt.tokens
    s_ort, s_pt = out_ort.routing, out_pt.routing
    assert t_ort.shape == t_pt.shape == (3, 215, 8)
    assert (s_ort.mode, s_ort.threshold) == (s_pt.mode, s_pt.threshold) == (mode, threshold)
    valid = s_pt.segment_mask
    assert torch.equal(s_ort.segment_mask, valid)
    if mode == "mixed":
        assert (
            route_ties(
                s_ort.route[valid], s_pt.route[valid], s_pt.predicted[valid].detach(), threshold
            )[1]
            == 0
        )
        assert 0 < s_pt.light_share < 1
    else:
        assert torch.equal(s_ort.route[valid], s_pt.route[valid])
    with torch.no_grad():
        emb = pt.codec.embed(wavs, lengths)
    assert first_token_ties(t_ort, t_pt, emb, pt.codec.quantizer.codebooks)[1] == 0
    audio_ort, audio_pt = ort.decode_batch(t_pt, lengths), pt.decode_batch(t_pt, lengths)
    assert audio_ort.shape == audio_pt.shape == (3, 215 * 320)
    torch.testing.assert_close(audio_ort, audio_pt, atol=1e-5, rtol=1e-4)
    assert float(audio_ort[2, int(0.38 * 215 * 320) + 1 :].abs().max()) == 0.0  # padding zeroed


def test_tokenizer_runs_in_onnxruntime_with_the_same_contract(folder):
    fast = load_tokenizer(folder, "mixed", 2)
    slow = load_tokenizer(folder, "mixed", 2, engine="torch")
    assert type(fast) is type(slow) is DSLTokenizer and type(fast.codec) is DSLCodec
    assert (fast.engine, slow.engine) == ("onnxruntime", "torch")
    wavs, lengths = batch()
    threshold = widest_gap(slow.predict_distances(wavs, lengths)[0])
    fast.threshold = slow.threshold = threshold
    tokens = fast.sig_to_tokens(wavs, lengths)
    want = slow.sig_to_tokens(wavs, lengths)
    assert tokens.shape == want.shape == (3, 215, 2)
    with torch.no_grad():
        emb = slow.embed(wavs, lengths)
    assert first_token_ties(tokens, want, emb, slow.quantizer.codebooks)[1] == 0
    torch.testing.assert_close(fast.embed(wavs, lengths), emb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        fast.tokens_to_sig(want, lengths), slow.tokens_to_sig(want, lengths), atol=1e-5, rtol=1e-4
    )
    fast.mode = "oracle"  # both tails: runs in PyTorch
    oracle = fast.sig_to_tokens(wavs)
    slow.mode = "oracle"
    assert torch.equal(oracle, slow.sig_to_tokens(wavs))
    fast.mode = "mixed"
    fast.engine = "torch"
    assert torch.equal(fast.sig_to_tokens(wavs, lengths), want)


def test_onnxruntime_refuses_missing_stale_or_tampered_graphs(folder, tmp_path):
    missing = tmp_path / "missing"
    shutil.copytree(folder, missing)
    (missing / "decoder.onnx").unlink()
    (missing / "encoder.int8.onnx").unlink()
    write_manifest(missing, ["codec.ckpt", "hyperparams.yaml", "encoder.onnx"])
    partial = load(missing)  # the encoder graph alone: onnxruntime, decoding in PyTorch
    assert partial.engine == "onnxruntime" and partial.runtime.decoder is None
    assert partial.runtime.encoder_path == missing / "encoder.onnx"
    with pytest.raises(ValueError, match="has no encoder.int8.onnx"):
        load(missing, onnx_precision="int8")
    with pytest.raises(ValueError, match="engine: expected one of"):
        load(folder, engine="tensorrt")

    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    data = bytearray((tampered / "encoder.onnx").read_bytes())
    data[-100] ^= 0xFF
    (tampered / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="encoder.onnx fails its sha256 checksum"):
        load(tampered)

    stale = tmp_path / "stale"
    shutil.copytree(folder, stale)
    state = torch.load(stale / "codec.ckpt")
    key = next(k for k in state if k.endswith("weight"))
    state[key] = state[key] * 1.01
    torch.save(state, stale / "codec.ckpt")
    write_manifest(stale)  # a consistent manifest: only the graphs' own record can tell
    with pytest.raises(ValueError, match="encoder.onnx was exported from other weights"):
        load(stale)
    assert load(stale, engine="torch").engine == "torch"


def test_streams_and_files_follow_the_engine_in_use(folder, engines):
    from speechbrain_dsl.inference.streaming import StreamingEncoder

    ort, pt = engines
    assert StreamingEncoder(ort).engine == "onnxruntime"
    assert StreamingEncoder(pt).engine == "torch"
    assert StreamingEncoder(ort, engine="torch").runtime is None
    tokenizer = load_tokenizer(folder)
    assert StreamingEncoder(tokenizer).engine == "onnxruntime"
    tokenizer.engine = "torch"
    assert StreamingEncoder(tokenizer).engine == "torch"
    with pytest.raises(ValueError, match="precision: an int8 encoder needs calibration audio"):
        StreamingEncoder(pt.codec, engine="onnxruntime", precision="int8")


def test_engine_can_be_switched_on_a_loaded_interface(folder, engines):
    ort, pt = engines
    with pytest.raises(ValueError, match="loaded without exported graphs"):
        pt.engine = "onnxruntime"
    ort.engine = "torch"
    try:
        ort.mode = pt.mode = "full"
        wav = speechy(2.0, 5)[None]
        assert torch.equal(ort.encode_batch(wav), pt.encode_batch(wav))
    finally:
        ort.engine = "onnxruntime"
    # the graph records the calibrated threshold; the interface passes its own (settable) one
    assert ort.runtime.threshold == pytest.approx(load(folder, engine="torch").threshold)
