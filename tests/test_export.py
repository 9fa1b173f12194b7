"""Exported graphs: the routed encoder (rows with context and lengths), the decoder, int8.

onnxruntime must give PyTorch's tokens and routes: routes may differ only where
the prediction ties the threshold, tokens only where two codewords tie (both
checked by :mod:`deploy_helpers`), and nothing else.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime
import pytest
import soundfile as sf
import torch
from conftest import DSL_YAML, ROOT
from deploy_helpers import first_token_ties, onnx_package, route_ties, speechy, widest_gap
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.evaluation.check_clips import read_check_clips
from speechbrain_dsl.evaluation.metrics import mel_distance
from speechbrain_dsl.inference.export import (
    ExportableDecoder,
    ExportableEncoder,
    MatmulISTFT,
    export_decoder_onnx,
    export_onnx,
    export_torch,
    metadata,
    quantize_encoder,
    read_metadata,
)
from speechbrain_dsl.inference.package import package
from speechbrain_dsl.inference.runtime import OnnxCodec, agreement
from speechbrain_dsl.lobes.vocos import ISTFTHead
from speechbrain_dsl.training.checkpoints import AtomicCheckpointer, load_codec

SHIPPED = ROOT / "pretrained" / "dsl-codec-16k"
# int8 against fp32 decodes of the shipped check clips: the measured spread is
# 0.000-0.012 in log-mel distance (four calibration sets, mixed and light passes);
# with every tail conv quantized, clips 4 and 5 were 0.5-1.9 worse
INT8_MEL_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = onnx_package(tmp_path_factory)
    codec = load_codec(None, folder / "codec.ckpt")
    return codec, OnnxCodec.from_folder(folder, threads=1), folder


def rows_of(seed, rows, context):
    """``rows`` one-second segments of speech-like audio with ``context`` samples before each."""
    wav = speechy(rows + 1, seed)
    start = 16000 - context
    segments = torch.stack([wav[16000 * (i + 1) : 16000 * (i + 2)] for i in range(rows)])[:, None]
    ctx = torch.stack([wav[start + 16000 * i : 16000 * (i + 1)] for i in range(rows)])[:, None]
    return segments, ctx


@pytest.mark.parametrize("rows", [1, 6])
@pytest.mark.parametrize("context", [0, 320])
@pytest.mark.parametrize("case", ["all_full", "all_light", "mixed"])
def test_onnxruntime_rows_equal_pytorch_rows(exported, rows, context, case):
    codec, runtime, _ = exported
    segments, ctx = rows_of(rows + context, rows, context)
    lengths = torch.ones(rows)
    if rows > 1:
        lengths[-1] = 0.37  # a padded last segment: its tail is left out of the switch
    model = ExportableEncoder(codec).eval()
    with torch.no_grad():
        _, _, predicted = model(segments, torch.tensor(0.0), ctx, lengths)
    threshold = {"all_full": -np.inf, "all_light": np.inf, "mixed": widest_gap(predicted)}[case]
    with torch.no_grad():
        ref_emb, ref_tokens, ref_pred = model(segments, torch.tensor(threshold), ctx, lengths)
    emb, tokens, pred = runtime.encode_rows(
        segments.numpy(), threshold, ctx.numpy(), lengths.numpy()
    )
    np.testing.assert_allclose(pred, ref_pred.numpy(), atol=1e-4, rtol=1e-4)
    assert (
        route_ties(pred < threshold, ref_pred.numpy() < threshold, ref_pred.numpy(), threshold)[1]
        == 0
    )
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-4)
    assert first_token_ties(tokens, ref_tokens, ref_emb.transpose(1, 2), model.codebooks)[1] == 0
    if case == "mixed" and rows > 1:
        assert 0 < int((pred < threshold).sum()) < rows


def test_rows_with_context_give_the_frames_of_whole_utterance_encoding(exported):
    codec, runtime, _ = exported
    wav = speechy(4.6, 3)[None]
    lengths = torch.tensor([1.0])
    threshold = widest_gap(codec.predict_distances(wav))
    with torch.no_grad():
        encoded = codec.encode_with_routing(wav, lengths, mode="mixed", threshold=threshold)
    tokens, reference = encoded.tokens, encoded.routing
    out = runtime.encode(wav.numpy(), lengths.numpy(), threshold=threshold, embeddings=True)
    assert out.tokens.shape == tuple(tokens.shape) == (1, 230, 8)
    assert out.route.tolist() == reference.route.tolist()
    assert 0 < out.route.sum() < out.route.size
    emb = encoded.emb
    np.testing.assert_allclose(out.embeddings, emb.transpose(1, 2).numpy(), atol=1e-4)
    assert first_token_ties(out.tokens, tokens, emb, codec.quantizer.codebooks)[1] == 0


def test_matmul_istft_equals_the_fft_head():
    torch.manual_seed(0)
    for n_fft, hop in ((64, 16), (1280, 320), (60, 16)):  # the last overlap-adds by conv
        head = ISTFTHead(8, n_fft=n_fft, hop_length=hop)
        with torch.no_grad():
            head.proj.weight.mul_(3)  # magnitudes of many sizes, phases all around
        x = torch.randn(2, 8, 13)
        with torch.no_grad():
            want, got = head(x), MatmulISTFT(head)(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5 * float(want.abs().max()), rtol=1e-4)


def test_decoder_graph_equals_pytorch_for_both_decoder_types(exported, tmp_path):
    codec, runtime, _ = exported  # the default YAML: Vocos decoder
    tokens = torch.randint(0, codec.vocab_size, (2, 37, 8))
    with torch.no_grad():
        want = codec.decode(tokens)[:, 0].numpy()
    np.testing.assert_allclose(runtime.decode(tokens.numpy()), want, atol=1e-5)
    np.testing.assert_allclose(
        runtime.decode(tokens[..., :3].numpy()),  # fewer codebooks
        codec.decode(tokens[..., :3])[:, 0].detach().numpy(),
        atol=1e-5,
    )
    with open(ROOT / "hparams" / "soundstream_dsl.yaml") as f:  # the paper's waveform decoder
        soundstream = load_hyperpyyaml(f, {"decoder_type": "soundstream"})["codec"].eval()
    soundstream.encode(speechy(1.0, 1)[None])
    path = export_decoder_onnx(
        ExportableDecoder(soundstream), tmp_path / "decoder.onnx", metadata(soundstream, "decoder")
    )
    session = onnxruntime.InferenceSession(str(path))
    with torch.no_grad():
        want = soundstream.decode(tokens)
    got = session.run(None, {"tokens": tokens.numpy()})[0]
    assert type(soundstream.decoder).__name__ == "SoundStreamDecoder"
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_int8_encoder_is_quantized_keeps_index_routing_and_fp32_routes(exported):
    codec, runtime, folder = exported
    path = folder / "encoder.int8.onnx"
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    fp32_ops = [node.op_type for node in onnx.load(str(folder / "encoder.onnx")).graph.node]
    assert ops.count("DequantizeLinear") > 10 and "QuantizeLinear" in ops
    assert ops.count("NonZero") == fp32_ops.count("NonZero") >= 2  # rows selected per tail
    info = read_metadata(path)
    assert info["precision"] == "int8" and info["calibration_rows"] >= 32
    int8 = OnnxCodec.from_folder(folder, precision="int8", threads=1)
    clips = [speechy(6.0, 200 + s).numpy() for s in range(3)]
    threshold = widest_gap(
        np.concatenate([runtime.encode(c, mode="full").predicted[0] for c in clips])
    )
    fp32_out = [runtime.encode(c, threshold=threshold) for c in clips]
    int8_out = [int8.encode(c, threshold=threshold) for c in clips]
    measure = agreement(fp32_out, int8_out)
    # the base conv, mask and switch stay float: the same predictions, the same routes
    assert measure["route_agreement"] == 1.0 and measure["segments"] == 18
    for a, b in zip(fp32_out, int8_out):
        np.testing.assert_allclose(a.predicted, b.predicted, atol=1e-5)
    assert 0 < measure["token_changes"] < measure["tokens"]  # int8 tails do change some tokens
    routes = np.concatenate([out.route.ravel() for out in fp32_out])
    assert 0 < routes.sum() < routes.size


def test_int8_encoder_decodes_the_shipped_check_clips_as_well_as_fp32(tmp_path):
    """Digital silence (clips 4 and 5 have some) must not decode as noise in int8.

    Calibrated on 15 s only (five held-out clips of the other packages, not the
    shipped model's own, joined: 12 rows), so the test stays fast. With every tail conv quantized
    (``float_convs=()``) clips 4 and 5 fail here as after 300 s of dev speech.
    """
    codec = load_codec(None, SHIPPED / "codec.ckpt")
    fp32 = export_onnx(
        ExportableEncoder(codec), tmp_path / "encoder.onnx", metadata(codec, "encoder")
    )
    own = {p.name for p in (SHIPPED / "check").glob("*.wav")}
    others = {p.name: p for p in sorted((ROOT / "pretrained").glob("*/check/*.wav"))}
    others = [others[name] for name in sorted(others) if name not in own][:5]
    calibration = [sf.read(p, dtype="float32")[0] for p in others]
    assert len(calibration) == 5, "the other packages hold too few held-out clips"
    int8 = quantize_encoder(
        fp32, tmp_path / "encoder.int8.onnx", [np.concatenate(calibration)], batch_rows=4
    )
    engines = {"fp32": OnnxCodec(fp32, threads=1), "int8": OnnxCodec(int8, threads=1)}
    clips, _ = read_check_clips(SHIPPED)
    worse = []
    for mode in ("mixed", "light"):  # mixed at the calibrated threshold: all full here
        for i, clip in enumerate(clips):
            out = {k: e.encode(clip.numpy(), mode=mode) for k, e in engines.items()}
            assert out["int8"].route.tolist() == out["fp32"].route.tolist()
            mel = {}
            for k, encoded in out.items():
                with torch.no_grad():
                    wav = codec.decode(torch.from_numpy(encoded.tokens).long())
                mel[k] = float(mel_distance(wav[:, 0, : clip.numel()], clip[None])[0])
            if mel["int8"] - mel["fp32"] > INT8_MEL_TOLERANCE:
                worse.append(f"{mode} clip {i}: int8 {mel['int8']:.3f}, fp32 {mel['fp32']:.3f}")
    assert not worse, worse


def test_torch_export_program_matches_pytorch(exported, tmp_path):
    codec, _, _ = exported
    model = ExportableEncoder(codec).eval()
    path = export_torch(model, tmp_path / "encoder.pt2")
    program = torch.export.load(str(path)).module()
    segments, ctx = rows_of(3, 5, 320)
    threshold = torch.tensor(widest_gap(codec.predict_distances(segments)))
    lengths = torch.ones(5)
    with torch.no_grad():
        emb, tokens, predicted = program(segments, threshold, ctx, lengths)
        ref_emb, ref_tokens, ref_predicted = model(segments, threshold, ctx, lengths)
    torch.testing.assert_close(emb, ref_emb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(predicted, ref_predicted, atol=1e-5, rtol=1e-4)
    # the program ranks codewords as the ONNX graph does: ties may break differently
    assert first_token_ties(tokens, ref_tokens, ref_emb.transpose(1, 2), model.codebooks)[1] == 0


def test_export_cli_writes_one_encoder_or_a_folder_of_graphs(exported, tmp_path):
    codec, _, _ = exported
    AtomicCheckpointer(tmp_path / "save", {"codec": codec}).save_checkpoint()
    folder = package(tmp_path / "save", tmp_path / "packaged", DSL_YAML)  # without graphs
    assert not (folder / "encoder.onnx").exists()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_dsl.inference.export",
            str(folder),
            "--out",
            str(tmp_path / "cli.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_metadata(tmp_path / "cli.onnx")["segment_samples"] == 16000
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_dsl.inference.export", str(folder)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--out" in result.stderr


def test_encode_and_decode_run_without_pytorch(exported):
    _, _, folder = exported
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of PyTorch fails
        import numpy as np
        from speechbrain_dsl.inference.runtime import OnnxCodec
        codec = OnnxCodec.from_folder({str(folder)!r}, threads=1)
        wav = np.random.default_rng(0).normal(0, 0.1, (2, 40000)).astype(np.float32)
        out = codec.encode(wav, np.array([1.0, 0.5], np.float32))
        audio = codec.decode(out.tokens)
        print(out.tokens.shape, audio.shape, np.isfinite(audio).all())
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["(2,", "125,", "8)", "(2,", "40000)", "True"]
