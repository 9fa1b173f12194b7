"""benchmarks/switch_fit.py: the switch's predictions against the decode gap, per class."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import ROOT, make_codec

from speechbrain_dsl.nnet.decode_gap import DecodeGap


def _bench():
    spec = importlib.util.spec_from_file_location("switch_fit", ROOT / "benchmarks/switch_fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_padded_items_give_their_own_segments_gap_and_prediction():
    """A padded batch yields, per item, what that item alone yields: padding adds no segments."""
    bench = _bench()
    torch.manual_seed(0)
    codec = make_codec().eval()
    hop, frames = codec.encoder.hop, codec.encoder.dsl.segment_frames
    wav = 0.1 * torch.randn(2, 1, 12 * frames * hop)
    wav[1, :, 5 * frames * hop :] = 0
    lengths = torch.tensor([1.0, 5 / 12])
    codec.train()(0.1 * torch.randn(2, 1, wav.shape[-1]), torch.ones(2))  # codebooks set up
    codec.eval()
    with torch.no_grad():  # a light tail of zeros decodes worse than the full one
        for p in codec.encoder.dsl.light_tail.parameters():
            p.zero_()
    # a tiny untrained codec's decodes differ by ~0.3%: a floor far down lets that count
    gap = DecodeGap(16000, hop_length=hop, segment_frames=frames, n_mels=8, floor_db=-120)
    target, predicted = bench.measure(codec, wav, lengths, gap)
    alone = [bench.measure(codec, wav[i : i + 1, :, : int(n * wav.shape[-1])], None, gap)
             for i, n in enumerate(lengths.tolist())]  # fmt: skip
    assert target.size == predicted.size == 12 + 5
    # the padded item's last segment differs by 4e-5 (float sums over the padding)
    np.testing.assert_allclose(predicted, np.concatenate([p for _, p in alone]), atol=2e-4)
    with torch.no_grad():
        full, light = (
            codec.decode(codec.encode(wav[:1], mode=m)[0])[..., : wav.shape[-1]]
            for m in ("full", "light")
        )
    np.testing.assert_allclose(target[:12], gap(wav[:1], full, light)[0].numpy(), atol=1e-5)
    assert float(np.abs(target).max()) > 0  # the two passes decode differently


def test_table_lists_each_subset_with_its_quantiles(tmp_path):
    bench = _bench()
    result = dict(
        model="m", data="d", utterances=2, seconds=6.0, quantiles=[0.5], cpu="CPU",
        rows=[dict(subset="test-noise", segments=3, gap=[0.06], predicted=[0.17], spearman=0.3)],
    )  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert "| test-noise | 3 | 0.060 | 0.170 | 0.300 |" in bench.table(result)
    with pytest.raises(ValueError, match="holds no checkpoint"):  # names the folder
        bench.main(["--model", str(tmp_path), "--data", str(tmp_path)])
