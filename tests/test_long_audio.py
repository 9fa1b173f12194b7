"""Long inputs in pieces: the tokens of whole-input encoding, memory that does not grow."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from conftest import ROOT, make_codec
from deploy_helpers import first_token_ties, onnx_package, speechy, widest_gap

from speechbrain_dsl.inference.export import ExportableEncoder, metadata, torch_row_encoder
from speechbrain_dsl.inference.interface import DSLCodecInterface, read_blocks
from speechbrain_dsl.inference.runtime import Geometry, encode_in_pieces


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return onnx_package(tmp_path_factory)


def load(folder, engine):
    return DSLCodecInterface.from_hparams(source=str(folder), savedir=str(folder), engine=engine)


def test_pieces_with_context_longer_than_a_segment_equal_whole_encoding():
    # tiny codec: 3-frame segments (48 samples) and 8 frames of context, so rows
    # carry 0, 1, 2 or more segments of past audio depending on where they start
    codec = make_codec().eval()
    wavs = torch.randn(3, 1000) * 0.1
    wavs[:, 300:600] *= 0.01
    codec.encode(wavs)  # initialise the codebooks
    lengths = torch.tensor([1.0, 0.61, 0.3])
    codec.threshold = widest_gap(codec.predict_distances(wavs)[0])
    with torch.no_grad():
        encoded = codec.encode_with_routing(wavs, lengths)
    tokens, reference = encoded.tokens, encoded.routing
    geometry = Geometry.from_metadata(metadata(codec, "encoder"))
    assert geometry.context_samples == 128 > geometry.segment_samples == 48
    rows = torch_row_encoder(ExportableEncoder(codec))
    for piece_segments in (1, 2, 7, 100):
        out = encode_in_pieces(
            rows, geometry, wavs.numpy(), lengths.numpy(), codec.threshold, piece_segments
        )
        assert np.array_equal(out.tokens, tokens.numpy())  # eager rows rank as the RVQ does
        valid = reference.segment_mask.numpy()
        assert np.array_equal(out.segment_mask, valid)
        assert np.array_equal(out.route[valid], reference.route.numpy()[valid])
        assert 0 < out.route[valid].sum() < valid.sum()


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_encode_batch_in_pieces_equals_one_call(folder, engine):
    model = load(folder, engine)
    wavs = torch.stack([speechy(7.4, 21), speechy(7.4, 22)])
    lengths = torch.tensor([1.0, 0.55])
    model.mode, model.threshold = "mixed", widest_gap(model.codec.predict_distances(wavs)[0])
    whole = model.encode_with_routing(wavs, lengths)
    model.piece_seconds = 2.0  # 4 pieces
    cut = model.encode_with_routing(wavs, lengths)
    pieces, stats, whole_stats, whole = cut.tokens, cut.routing, whole.routing, whole.tokens
    with torch.no_grad():
        emb = model.codec.embed(wavs, lengths)
    assert pieces.shape == whole.shape == (2, 370, 8)
    assert first_token_ties(pieces, whole, emb, model.codec.quantizer.codebooks)[1] == 0
    valid = whole_stats.segment_mask
    assert torch.equal(stats.segment_mask, valid)
    assert torch.equal(stats.route[valid], whole_stats.route[valid])
    assert 0 < stats.light_share < 1


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_encode_file_reads_resamples_and_encodes_in_blocks(folder, tmp_path, engine, capfd):
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.1, (int(22050 * 5.3), 2)).astype(np.float32)
    audio[22050:44100] *= 0.01
    sf.write(tmp_path / "clip.wav", audio, 22050, subtype="FLOAT")
    model = load(folder, engine)
    model.threshold = widest_gap(
        model.codec.predict_distances(
            torchaudio.functional.resample(torch.from_numpy(audio.mean(1)), 22050, 16000)[None]
        )[0]
    )
    model.piece_seconds = 1.0
    with model.routing() as calls:
        tokens = model.encode_file(tmp_path / "clip.wav", progress=True)
    assert "piece" in capfd.readouterr().err  # the tqdm bar
    (stats,) = calls
    whole = torchaudio.functional.resample(torch.from_numpy(audio).mean(1), 22050, 16000)[None]
    model.piece_seconds = 60.0
    encoded = model.encode_with_routing(whole)
    want = encoded.tokens
    assert tokens.shape == want.shape == (1, 265, 8)
    with torch.no_grad():
        emb = model.codec.embed(whole)
    assert first_token_ties(tokens, want, emb, model.codec.quantizer.codebooks)[1] == 0
    assert torch.equal(stats.route, encoded.routing.route)


def test_read_blocks_concatenate_to_the_whole_resampled_file():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, (44100 * 3 + 1234, 2)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, 44100, format="WAV", subtype="FLOAT")
    whole = torchaudio.functional.resample(torch.from_numpy(audio).mean(1), 44100, 16000).numpy()
    for block_seconds in (0.37, 1.0, 10.0):
        buffer.seek(0)
        with sf.SoundFile(buffer) as reader:
            blocks = list(read_blocks(reader, 16000, block_seconds))
        assert len(blocks) == int(np.ceil((44100 * 3 + 1234) / (441 * round(block_seconds * 100))))
        np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    buffer.seek(0)
    with sf.SoundFile(buffer) as reader:  # at the codec's rate: plain blocks
        assert sum(len(b) for b in read_blocks(reader, 44100, 1.0)) == len(audio)


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, soundfile as sf
    def hwm():  # peak RSS of this program (ru_maxrss would include the forked parent's)
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    path, minutes, entry, folder = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:  # written a minute at a time
        for m in range(int(minutes)):
            x = rng.normal(0, 0.05, 960000).astype(np.float32)
            x[:480000] *= 0.05
            f.write(x)
    del x
    if entry == "runtime":
        from speechbrain_dsl.inference.runtime import OnnxCodec
        codec = OnnxCodec.from_folder(folder, threads=1, decoder=False)
        before = hwm()
        frames = codec.encode_file(path).tokens.shape[1]
    else:
        import torch
        torch.set_num_threads(1)
        from speechbrain_dsl.inference.interface import DSLCodecInterface
        model = DSLCodecInterface.from_hparams(source=folder, savedir=folder, engine=entry)
        before = hwm()
        frames = model.encode_file(path).shape[1]
    print(json.dumps({"frames": frames, "before_mib": before, "peak_mib": hwm(),
                      "torch": "torch" in sys.modules}))
""")


def peak(tmp_path, folder, entry, minutes):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_SCRIPT,
            str(tmp_path / f"{entry}-{minutes}.wav"),
            str(minutes),
            entry,
            str(folder),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["frames"] == minutes * 3000
    return info


def test_long_files_encode_in_memory_that_does_not_grow_with_their_length(folder, tmp_path):
    # Whole-input encoding holds the audio and every activation of it: 5 minutes
    # peaked at 3 GiB. In pieces, 20 minutes cost what 2 minutes cost.
    short, long = peak(tmp_path, folder, "runtime", 2), peak(tmp_path, folder, "runtime", 20)
    assert not long["torch"]  # numpy and onnxruntime only
    assert long["peak_mib"] < 1024, (short, long)
    assert long["peak_mib"] - short["peak_mib"] < 40, (short, long)  # 20 min of audio: 73 MiB
    # the interface (PyTorch loaded, ~1 GiB before any audio): pieces add little
    interface = peak(tmp_path, folder, "onnxruntime", 5)
    assert interface["peak_mib"] - interface["before_mib"] < 300, interface
