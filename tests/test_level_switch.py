"""A switch that reads relative levels: the same routes at every gain, on every engine."""

import numpy as np
import torch
from conftest import load_hparams
from deploy_helpers import widest_gap

from speechbrain_dsl.inference.export import ExportableEncoder, metadata, torch_row_encoder
from speechbrain_dsl.inference.rows import Geometry, SegmentStream, encode_in_pieces
from speechbrain_dsl.inference.rows import segment_levels as numpy_levels
from speechbrain_dsl.nnet.segments import segment_levels
from speechbrain_dsl.training.retrofit import SWITCH_INPUT_WEIGHT, init_codec_from

SEGMENT = 8 * 320  # 160-ms routing segments at 16 kHz


def read_speech(seconds=4.0, seed=0):
    """Bursts with pauses 30 dB down in between: quiet audio that matters less."""
    gen = torch.Generator().manual_seed(seed)
    wav = torch.randn(int(seconds * 16000), generator=gen) * 0.1
    for start in range(0, wav.numel(), 12000):
        wav[start + 8000 : start + 12000] *= 0.03
    return wav


def level_codec(seed=0):
    """The default DSL model at 160 ms whose switch reads levels, strongly."""
    torch.manual_seed(seed)
    codec = load_hparams(segment_frames=8, switch_level_input=True)["codec"].eval()
    with torch.no_grad():  # make the level column matter as much as the features
        codec.encoder.dsl.switch.mlp[0].weight[:, -1] = torch.linspace(-8, 8, 32)
    return codec


def test_levels_do_not_change_with_gain_and_mark_the_pauses():
    wav = read_speech()[None, None]
    levels = segment_levels(wav, SEGMENT)
    for gain in (0.1, 0.3, 3.0):  # speech from -30 to 0 dBFS; pauses far above the floor
        torch.testing.assert_close(segment_levels(gain * wav, SEGMENT), levels, atol=2e-3, rtol=0)
    # numpy twin (engines) agrees with the model's
    valid = np.array([wav.shape[-1]])
    np.testing.assert_allclose(numpy_levels(wav[:, 0].numpy(), SEGMENT, valid), levels, atol=1e-5)
    # segment 8 (samples 20480-23040) lies inside a pause 30 dB down: ~ -3 x 10 dB
    assert -3.2 < float(levels[0, 8]) < -2.6
    assert float(levels[0, :3].abs().max()) < 0.2  # bursts at the running level


def test_padding_counts_neither_as_audio_nor_as_level():
    wav = read_speech()[None, None]
    padded = torch.cat([wav, torch.zeros(1, 1, 3 * SEGMENT)], -1)
    lengths = torch.tensor([wav.shape[-1] / padded.shape[-1]])
    own = segment_levels(wav, SEGMENT)
    with_padding = segment_levels(padded, SEGMENT, lengths)
    torch.testing.assert_close(with_padding[:, : own.shape[1]], own, atol=1e-5, rtol=0)


def test_the_level_reaches_the_switch_prediction():
    codec = level_codec()
    wav = read_speech()[None]
    with torch.no_grad():
        predicted = codec.predict_distances(wav)
        codec.encoder.dsl.switch.mlp[0].weight[:, -1] = 0  # the level column unplugged
        blind = codec.predict_distances(wav)
    assert (predicted - blind)[0, 8] > 0.1  # in the pause, far more than float noise


def test_rows_stream_and_onnxruntime_use_the_same_levels_as_the_model(tmp_path):
    from speechbrain_dsl.inference.graphs import export_onnx
    from speechbrain_dsl.inference.runtime import OnnxCodec

    codec = level_codec()
    wavs = torch.stack([read_speech(4.0, 0), read_speech(4.0, 1) * 0.05])
    wavs[1, 40000:] = 0  # padded item
    lengths = torch.tensor([1.0, 40000 / wavs.shape[-1]])
    codec.encode(wavs)  # initialise the codebooks
    with torch.no_grad():
        reference = codec.encode_with_routing(wavs, lengths).routing
    valid = reference.segment_mask.numpy()
    codec.threshold = widest_gap(reference.predicted[reference.segment_mask])
    with torch.no_grad():
        reference = codec.encode_with_routing(wavs, lengths).routing
    assert 0 < reference.route[reference.segment_mask].sum() < valid.sum()
    model = ExportableEncoder(codec).eval()
    geometry = Geometry.from_metadata(metadata(codec, "encoder"))
    path = export_onnx(model, tmp_path / "encoder.onnx", metadata(codec, "encoder"))
    session = OnnxCodec(path)
    assert session.reads_levels
    for rows in (torch_row_encoder(model), session.encode_rows):
        out = encode_in_pieces(
            rows, geometry, wavs.numpy(), lengths.numpy(), codec.threshold, piece_segments=7
        )
        # rows see float-different pause features; the steep level weights above
        # amplify that to 3.4e-4 relative at most (measured)
        np.testing.assert_allclose(
            out.predicted[valid], reference.predicted.numpy()[valid], atol=1e-4, rtol=1e-3
        )
        assert np.array_equal(out.route[valid], reference.route.numpy()[valid])
    # a stream carries its energy from chunk to chunk
    stream = SegmentStream(torch_row_encoder(model), geometry, codec.threshold)
    first = wavs[0].numpy()
    for start in range(0, first.size, 5000):
        stream.push(first[start : start + 5000])
    stream.flush()
    np.testing.assert_allclose(
        stream.predicted, reference.predicted[0].numpy(), atol=1e-4, rtol=1e-3
    )
    assert stream.routes == reference.route[0].tolist()


def test_init_from_a_switch_without_levels_keeps_its_predictions(tmp_path):
    torch.manual_seed(0)
    old = load_hparams(segment_frames=8)["codec"].eval()
    torch.save(old.state_dict(), tmp_path / "codec.ckpt")
    new = load_hparams(segment_frames=8, switch_level_input=True)["codec"].eval()
    init_codec_from(new, tmp_path)
    weight = new.state_dict()[SWITCH_INPUT_WEIGHT]
    assert weight.shape[1] == old.state_dict()[SWITCH_INPUT_WEIGHT].shape[1] + 1
    wav = read_speech()[None]
    with torch.no_grad():
        torch.testing.assert_close(new.predict_distances(wav), old.predict_distances(wav))
