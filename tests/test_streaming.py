"""StreamingEncoder gives exactly the offline result for any chunking, in either engine."""

import numpy as np
import pytest
import torch
from conftest import ROOT
from deploy_helpers import first_token_ties, onnx_package, route_ties
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.runtime import OnnxCodec
from speechbrain_dsl.inference.streaming import StreamingEncoder
from speechbrain_dsl.training.checkpoints import load_codec


@pytest.fixture(scope="module")
def codec():
    with open(ROOT / "hparams" / "soundstream_dsl.yaml") as f:
        return load_hyperpyyaml(f)["codec"].eval()


def stream_in_random_chunks(stream, wav, seed):
    gen = torch.Generator().manual_seed(seed)
    parts, start = [], 0
    while start < wav.numel():
        size = int(torch.randint(1, 9000, (1,), generator=gen))
        parts.append(stream.push(wav[start : start + size]))
        start += size
    parts.append(stream.flush())
    return torch.cat(parts)


def speechy(seconds, seed):
    """Loud and quiet stretches, so a mid threshold gives mixed routes."""
    gen = torch.Generator().manual_seed(seed)
    wav = torch.randn(int(seconds * 16000), generator=gen) * 0.003
    for start in range(0, wav.numel() - 16000, 32000):
        wav[start : start + 16000] *= 100
    return wav


@pytest.mark.parametrize("mode", ["full", "light", "mixed"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_equals_offline_for_random_chunk_sizes(codec, mode, seed):
    wav = speechy(5.37, seed)  # 5 whole segments and a partial one
    with torch.no_grad():
        codec.mode = "mixed"
        predicted = codec.predict_distances(wav[None])
        # In the widest gap between predictions, so float noise cannot flip a route.
        values = predicted.flatten().sort().values
        k = int((values[1:] - values[:-1]).argmax())
        codec.threshold = float(values[k] + values[k + 1]) / 2
        codec.mode = mode
        offline, out = codec.encode_features(wav[None, None])
    stream = StreamingEncoder(codec)
    emb = stream_in_random_chunks(stream, wav, seed)
    assert emb.shape == offline[0].T.shape == (269, 64)  # ceil(85920 / 320)
    torch.testing.assert_close(emb, offline[0].T, atol=1e-5, rtol=1e-4)
    assert stream.routes == out.route[0].tolist()
    if mode == "mixed":
        assert 0 < sum(stream.routes) < len(stream.routes)


def test_streaming_tokens_are_the_offline_tokens(codec):
    wav = speechy(3.3, 4)
    with torch.no_grad():
        codec.mode = "mixed"
        codec.encode(wav[None])  # initialise the codebooks
        values = codec.predict_distances(wav[None]).flatten().sort().values
        k = int((values[1:] - values[:-1]).argmax())
        codec.threshold = float(values[k] + values[k + 1]) / 2
        encoded = codec.encode_with_routing(wav[None])
        tokens = encoded.tokens
    stream = StreamingEncoder(codec, engine="torch")
    parts = []
    for chunk in wav.split(5000):
        stream.push(chunk)
        parts.append(stream.last_tokens)
    stream.flush()
    parts.append(stream.last_tokens)
    streamed = torch.cat(parts)
    assert streamed.shape == tokens[0].shape == (165, 8)
    with torch.no_grad():
        emb = codec.embed(wav[None])
    assert first_token_ties(streamed, tokens[0], emb[0], codec.quantizer.codebooks)[1] == 0
    assert stream.routes == encoded.routing.route[0].tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = onnx_package(tmp_path_factory)
    return load_codec(None, folder / "codec.ckpt"), OnnxCodec.from_folder(folder, threads=1)


@pytest.mark.parametrize("mode", ["full", "mixed"])
def test_onnxruntime_streaming_equals_pytorch_offline(exported, mode):
    codec, runtime = exported
    wav = speechy(4.5, 7)
    with torch.no_grad():
        codec.mode = "mixed"
        values = codec.predict_distances(wav[None]).flatten().sort().values
        k = int((values[1:] - values[:-1]).argmax())
        codec.threshold = float(values[k] + values[k + 1]) / 2
        codec.mode = mode
        offline, out = codec.encode_features(wav[None, None])
    stream = StreamingEncoder(runtime, mode=mode, threshold=codec.threshold)
    assert stream.engine == "onnxruntime" and stream.codec is None
    emb = stream_in_random_chunks(stream, wav, 5)
    torch.testing.assert_close(emb, offline[0].T, atol=1e-4, rtol=1e-4)
    predicted = np.array(stream.predicted)
    assert route_ties(stream.routes, out.route[0].tolist(), predicted, codec.threshold)[1] == 0
    if mode == "mixed":
        assert 0 < sum(stream.routes) < len(stream.routes)


def test_streaming_engine_choice(exported, codec):
    _, runtime = exported
    assert StreamingEncoder(codec).engine == "torch"
    assert StreamingEncoder(runtime).engine == "onnxruntime"
    with pytest.raises(ValueError, match="engine: expected one of"):
        StreamingEncoder(codec, engine="tensorrt")
    with pytest.raises(ValueError, match="engine: an OnnxCodec runs in onnxruntime only"):
        StreamingEncoder(runtime, engine="torch")
    with pytest.raises(ValueError, match="codec: expected a DSLCodec"):
        StreamingEncoder("pretrained/dsl-codec-16k")


def test_streaming_rejects_what_it_cannot_do(codec):
    with pytest.raises(ValueError, match="NaN or inf"):
        StreamingEncoder(codec).push(torch.tensor([0.0, float("nan")]))
    codec.mode = "oracle"
    stream = StreamingEncoder(codec)
    with pytest.raises(ValueError, match="oracle"):
        stream.push(torch.zeros(16000))
    codec.mode = "mixed"
    stream.reset()
    assert stream.flush().shape == (0, 64)


def test_streaming_benchmark_reports_rtf_for_every_mode_and_chunk():
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "benchmarks/streaming.py", "--json", "--seconds", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    assert {(r["mode"], r["chunk_ms"]) for r in rows} == {
        (m, c) for m in ("full", "light", "mixed") for c in (20, 100, 1000)
    }
    assert all(0 < r["rtf"] < 1 for r in rows)
