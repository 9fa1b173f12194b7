"""StreamingEncoder gives exactly the offline result for any chunking."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.package import ROOT
from speechbrain_dsl.streaming import StreamingEncoder


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

    result = subprocess.run([sys.executable, "benchmarks/streaming.py", "--json", "--seconds", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    assert {(r["mode"], r["chunk_ms"]) for r in rows} == {
        (m, c) for m in ("full", "light", "mixed") for c in (20, 100, 1000)}
    assert all(0 < r["rtf"] < 1 for r in rows)
