"""The shipped DSL model routes and tokenizes alike in every engine, at its calibrated threshold.

The audio is the package's own held-out check clips (generated speech) with the
pauses a recording has between them: low room-tone-like noise and digital silence.
At the calibrated threshold the shipped model sends those pauses light and the
speech full, so every comparison below runs both tails.

Tolerance, from where the engines can differ: onnxruntime and PyTorch sum in other
orders, so predictions differ by float32 rounding, ~1e-6 of their size on speech.
The switch takes a segment's variance as E[x^2] - E[x]^2, which cancels where the
features are nearly constant (digital silence), and there the rounding reaches
1.6e-3 (measured on this audio; 2-core Intel Xeon). A route may therefore differ
only where a prediction lies within ``PREDICTION_TOLERANCE`` (3x that) of the
threshold, and a token only where its two nearest codewords tie.
"""

import glob

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT
from deploy_helpers import first_token_ties, route_ties

from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.inference.streaming import StreamingEncoder

PACKAGE = ROOT / "pretrained" / "dsl-codec-16k"
PREDICTION_TOLERANCE = 5e-3


def recording_with_pauses() -> torch.Tensor:
    """Three check clips separated by 3 s of -60 dBFS noise and 1 s of digital silence."""
    clips = [
        sf.read(p, dtype="float32")[0] for p in sorted(glob.glob(str(PACKAGE / "check/*.wav")))
    ]
    noise = (np.random.default_rng(0).standard_normal(48000) * 1e-3).astype("float32")
    silence = np.zeros(16000, "float32")
    parts = [noise, clips[0], noise, clips[1], silence, clips[2]]
    return torch.from_numpy(np.concatenate(parts))


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The shipped model in both engines (the encoder graph exported into a fresh cache)."""
    savedir = str(tmp_path_factory.mktemp("shipped"))
    load = DSLCodecInterface.from_hparams
    return {
        "torch": load(source=str(PACKAGE), savedir=savedir, engine="torch"),
        "onnxruntime": load(source=str(PACKAGE), savedir=savedir, engine="onnxruntime"),
    }


@pytest.fixture(scope="module")
def reference(engines):
    """PyTorch's mixed pass at the calibrated threshold: routes both ways."""
    wav = recording_with_pauses()
    with torch.no_grad():
        out = engines["torch"].encode_with_routing(wav[None], mode="mixed")
    route = out.routing.route[0].numpy()
    assert 0.2 < route.mean() < 0.6, route  # the pauses light, the speech full
    return wav, out


def test_onnxruntime_routes_and_tokens_equal_pytorch_on_the_shipped_model(engines, reference):
    wav, ref = reference
    out = engines["onnxruntime"].encode_with_routing(wav[None], mode="mixed")
    threshold = engines["torch"].codec.threshold
    predicted = np.asarray(out.routing.predicted[0])
    np.testing.assert_allclose(
        predicted, ref.routing.predicted[0].numpy(), atol=PREDICTION_TOLERANCE, rtol=0
    )
    differ, far = route_ties(
        out.routing.route[0], ref.routing.route[0], ref.routing.predicted[0], threshold,
        tolerance=PREDICTION_TOLERANCE,
    )  # fmt: skip
    assert far == 0, f"{differ} routes differ, {far} of them away from the threshold"
    if differ == 0:  # tokens equal where the routes are (all of them here)
        codec = engines["torch"].codec
        with torch.no_grad():
            emb = codec.embed(wav[None], mode="mixed")[0]
        tokens = torch.as_tensor(np.asarray(out.tokens))[0]
        assert first_token_ties(tokens, ref.tokens[0], emb, codec.vocabulary)[1] == 0


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_streaming_the_shipped_model_equals_offline(engines, reference, engine):
    wav, ref = reference
    stream = StreamingEncoder(engines[engine], engine=engine)
    assert stream.threshold == pytest.approx(engines["torch"].codec.threshold)
    gen = torch.Generator().manual_seed(3)
    tokens, start = [], 0
    while start < wav.numel():  # chunks from 20 ms to 0.7 s, cutting segments anywhere
        size = int(torch.randint(320, 11200, (1,), generator=gen))
        stream.push(wav[start : start + size])
        tokens.append(stream.last_tokens)
        start += size
    stream.flush()
    tokens = torch.cat(tokens + [stream.last_tokens])
    threshold = engines["torch"].codec.threshold
    differ, far = route_ties(
        stream.routes, ref.routing.route[0], ref.routing.predicted[0], threshold,
        tolerance=PREDICTION_TOLERANCE,
    )  # fmt: skip
    assert far == 0 and 0 < sum(stream.routes) < len(stream.routes)
    if differ == 0:
        codec = engines["torch"].codec
        with torch.no_grad():
            emb = codec.embed(wav[None], mode="mixed")[0]
        assert first_token_ties(tokens, ref.tokens[0], emb, codec.vocabulary)[1] == 0
