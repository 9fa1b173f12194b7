"""A switch that reads how a segment's energy moves: speech is modulated, stationary noise is not."""

import numpy as np
import pytest
import torch
from conftest import load_hparams
from deploy_helpers import widest_gap

from speechbrain_dsl.inference.export import ExportableEncoder, metadata, torch_row_encoder
from speechbrain_dsl.inference.rows import Geometry, encode_in_pieces
from speechbrain_dsl.nnet.switch import SegmentStatsHead
from speechbrain_dsl.training.retrofit import SWITCH_INPUT_WEIGHT, init_codec_from

SEGMENT = 8 * 320  # 160-ms routing segments at 16 kHz


def modulated_and_stationary(seconds=2.0, seed=0):
    """Noise switched on and off every 40 ms, and steady noise of the same energy."""
    gen = torch.Generator().manual_seed(seed)
    samples = int(seconds * 16000)
    steady = torch.randn(samples, generator=gen) * 0.1
    bursts = torch.randn(samples, generator=gen) * 0.1
    gate = (torch.arange(samples) // 640) % 2 == 0
    bursts = torch.where(gate, bursts * 2**0.5, bursts * 0.01)
    return bursts, steady


def modulation(head, x, lengths=None):
    """The head's modulation inputs ``[batch, channels, segments]`` (its last inputs)."""
    seen = {}
    hook = head.mlp.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    head(x, SEGMENT, lengths)
    hook.remove()
    return seen["x"][..., -x.shape[1] :].transpose(1, 2)


def test_modulation_tells_bursts_from_steady_noise_and_ignores_the_level():
    head = SegmentStatsHead(1, sub_blocks=4)
    bursts, steady = modulated_and_stationary()
    x = torch.stack([bursts, steady])[:, None]
    m = modulation(head, x)
    assert float(m[0].min()) > 1.5 and float(m[1].max()) < 0.15  # ln-energy std, 4 parts
    torch.testing.assert_close(modulation(head, 20 * x), m, atol=1e-4, rtol=0)


def test_padding_is_left_out_of_the_modulation_and_of_the_segment_stats():
    head = SegmentStatsHead(2, sub_blocks=4)
    bursts, steady = modulated_and_stationary()
    x = torch.stack([bursts, steady])[None, :, :16000]  # two channels
    cut = 16000 - 1000  # the last segment ends inside its third part
    padded = torch.cat([x[..., :cut], torch.zeros(1, 2, 1000)], -1)
    lengths = torch.tensor([cut / 16000])
    own = head(x[..., :cut], SEGMENT)
    segments = own.shape[1]  # the padded input has one more, wholly padded
    torch.testing.assert_close(head(padded, SEGMENT, lengths)[:, :segments], own, atol=1e-5, rtol=0)
    mod_padded, mod_own = modulation(head, padded, lengths), modulation(head, x[..., :cut])
    mod_padded = mod_padded[..., :segments]
    torch.testing.assert_close(mod_padded, mod_own, atol=1e-5, rtol=0)


def test_segment_stats_with_sub_blocks_equal_those_without():
    """The segment's mean and spread are the same whether read in parts or whole."""
    torch.manual_seed(1)
    x, lengths = torch.randn(3, 4, 9000), torch.tensor([1.0, 0.6, 0.3])
    plain, parts = SegmentStatsHead(4), SegmentStatsHead(4, sub_blocks=4)
    with torch.no_grad():
        parts.mlp[0].weight.zero_()
        parts.mlp[0].weight[:, :8] = plain.mlp[0].weight
        parts.mlp[0].bias.copy_(plain.mlp[0].bias)
        parts.mlp[2].load_state_dict(plain.mlp[2].state_dict())
    torch.testing.assert_close(parts(x, 640, lengths), plain(x, 640, lengths), atol=1e-5, rtol=0)


def test_a_segment_that_does_not_split_into_the_parts_is_refused():
    with pytest.raises(ValueError, match=r"segments of 30 steps do not split into sub_blocks=4"):
        SegmentStatsHead(2, sub_blocks=4)(torch.randn(1, 2, 60), 30)


def test_init_from_a_switch_without_modulation_keeps_its_predictions(tmp_path):
    torch.manual_seed(0)
    old = load_hparams(segment_frames=8, switch_level_input=True)["codec"].eval()
    torch.save(old.state_dict(), tmp_path / "codec.ckpt")
    new = load_hparams(segment_frames=8, switch_level_input=True, switch_sub_blocks=4)
    new = new["codec"].eval()
    init_codec_from(new, tmp_path)
    weight = new.state_dict()[SWITCH_INPUT_WEIGHT]
    assert weight.shape[1] == old.state_dict()[SWITCH_INPUT_WEIGHT].shape[1] + 8
    wav = torch.stack(modulated_and_stationary())
    with torch.no_grad():
        torch.testing.assert_close(new.predict_distances(wav), old.predict_distances(wav))
        new.encoder.dsl.switch.mlp[0].weight[:, -8:] = 1.0  # the new inputs, plugged in
        assert not torch.allclose(new.predict_distances(wav), old.predict_distances(wav))


def test_rows_and_onnxruntime_read_the_same_modulation_as_the_model(tmp_path):
    from speechbrain_dsl.inference.graphs import export_onnx
    from speechbrain_dsl.inference.runtime import OnnxCodec

    torch.manual_seed(0)
    codec = load_hparams(segment_frames=8, switch_sub_blocks=4)["codec"].eval()
    with torch.no_grad():  # make the modulation inputs matter
        codec.encoder.dsl.switch.mlp[0].weight[:, -8:] = torch.linspace(-4, 4, 32)[:, None]
    bursts, steady = modulated_and_stationary(4.0)
    wavs = torch.stack([bursts + 0.3 * steady, steady])
    wavs[1, 40000:] = 0  # padded item
    lengths = torch.tensor([1.0, 40000 / wavs.shape[-1]])
    codec.encode(wavs)  # initialise the codebooks
    with torch.no_grad():
        reference = codec.encode_with_routing(wavs, lengths).routing
    codec.threshold = widest_gap(reference.predicted[reference.segment_mask])
    with torch.no_grad():
        reference = codec.encode_with_routing(wavs, lengths).routing
    valid = reference.segment_mask.numpy()
    assert 0 < reference.route[reference.segment_mask].sum() < valid.sum()
    model = ExportableEncoder(codec).eval()
    geometry = Geometry.from_metadata(metadata(codec, "encoder"))
    path = export_onnx(model, tmp_path / "encoder.onnx", metadata(codec, "encoder"))
    for rows in (torch_row_encoder(model), OnnxCodec(path).encode_rows):
        out = encode_in_pieces(
            rows, geometry, wavs.numpy(), lengths.numpy(), codec.threshold, piece_segments=7
        )
        np.testing.assert_allclose(
            out.predicted[valid], reference.predicted.numpy()[valid], atol=1e-4, rtol=1e-3
        )
        assert np.array_equal(out.route[valid], reference.route.numpy()[valid])


def test_init_from_refuses_a_modulation_switch_whose_inputs_a_level_would_shift(tmp_path):
    """Old inputs must be a prefix of the new ones: a level column comes before the
    modulation's, so zero-padding at the end would feed old weights the wrong inputs."""
    torch.manual_seed(0)
    old = load_hparams(segment_frames=8, switch_sub_blocks=4)["codec"].eval()
    torch.save(old.state_dict(), tmp_path / "codec.ckpt")
    new = load_hparams(segment_frames=8, switch_level_input=True, switch_sub_blocks=4)
    with pytest.raises(ValueError, match=r"switch\.mlp\.0\.weight: shape \(32, 24\)"):
        init_codec_from(new["codec"], tmp_path)
