"""python -m speechbrain_dsl.tokenize: tokens of sig_to_tokens, DASB's files, resumable, sharded.

Short clips (0.4 to 2.5 s) cut from the shipped model's check clips, some written
at 24 kHz (resampled on the fly), encoded with the shipped DSL model.
"""

import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from speechbrain_dsl.inference.export import export_folder
from speechbrain_dsl.inference.interface import load_tokenizer
from speechbrain_dsl.inference.manifest import sha256_file, write_manifest
from speechbrain_dsl.tokenize import TokenizeConfig, read_corpus, tokenize_corpus
from speechbrain_dsl.tokenize.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "pretrained" / "dsl-codec-16k"
# (speaker, chapter, seconds, rate): LibriTTS's layout, two rates
CLIPS = [
    ("1495", "93723", 2.5, 24000),
    ("1495", "93723", 0.4, 16000),
    ("2342", "47861", 1.3, 16000),
    ("2342", "47861", 1.9, 24000),
    ("4154", "14504", 0.7, 24000),
    ("4154", "14504", 1.1, 16000),
]
FAST = dict(engine="torch", chunk_size=2, batch_seconds=3.0, loader_workers=0)


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A LibriTTS-like folder of short clips and its JSON manifest (``{data_root}`` paths)."""
    root = tmp_path_factory.mktemp("corpus") / "test-clean"
    sources = sorted((MODEL / "check").glob("*.wav"))
    manifest = {}
    for n, (spk, chap, seconds, rate) in enumerate(CLIPS):
        audio, source_rate = sf.read(sources[n % len(sources)], dtype="float32")
        start = int(0.5 * source_rate)
        clip = torch.from_numpy(audio[start : start + int(seconds * source_rate)])
        if rate != source_rate:
            clip = torchaudio.functional.resample(clip, source_rate, rate)
        uid = f"{spk}_{chap}_{n:06d}_000000"
        path = root / spk / chap / f"{uid}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, clip.numpy(), rate, subtype="PCM_16")
        manifest[uid] = {"wav": f"{{data_root}}/{path.relative_to(root).as_posix()}"}
    (root.parent / "test.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def run(corpus, out, **options) -> dict:
    config = dict(FAST, model=str(MODEL), data=str(corpus), out=str(out), id_from="stem")
    config.update(options)
    return tokenize_corpus(TokenizeConfig(**config))


def reference(tokenizer, path, num_codebooks=None) -> np.ndarray:
    """``sig_to_tokens`` of one file, read and resampled on its own."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torchaudio.functional.resample(torch.from_numpy(audio).mean(1), rate, 16000)
    return tokenizer.sig_to_tokens(wav[None], num_codebooks=num_codebooks)[0].numpy()


def files(corpus):
    return {p.stem: p for p in sorted(corpus.rglob("*.wav"))}


def scp_text(out, save_name="tokens"):
    """The scp with the output folder's absolute path taken out (it names the ark)."""
    text = (out / f"{save_name}.scp").read_text()
    return text.replace(str(out.absolute()), "OUT")


def same_output(a, b):
    assert (a / "tokens.ark").read_bytes() == (b / "tokens.ark").read_bytes()
    assert scp_text(a) == scp_text(b)


@pytest.fixture(scope="module")
def torch_tokenizer():
    return load_tokenizer(MODEL, engine="torch")


@pytest.fixture(scope="module")
def mixed_run(corpus, tmp_path_factory):
    """One finished run (torch engine, mixed, all codebooks): the reference of several tests."""
    out = tmp_path_factory.mktemp("mixed") / "tokens"
    run(corpus, out)
    return out


@pytest.mark.parametrize("num_codebooks", [2, 8])
@pytest.mark.parametrize("mode", ["full", "light", "mixed"])
def test_tokens_equal_sig_to_tokens_of_each_file(
    corpus, tmp_path, torch_tokenizer, mode, num_codebooks
):
    summary = run(corpus, tmp_path / "out", mode=mode, num_codebooks=num_codebooks)
    tokens = kaldiio.load_scp(str(tmp_path / "out" / "tokens.scp"))
    assert sorted(tokens) == sorted(files(corpus))
    with torch_tokenizer.routing(mode):
        for uid, path in files(corpus).items():
            expected = reference(torch_tokenizer, path, num_codebooks)
            assert tokens[uid].dtype == np.int64
            assert tokens[uid].shape == expected.shape == (expected.shape[0], num_codebooks)
            np.testing.assert_array_equal(tokens[uid], expected, err_msg=uid)
    assert summary["mode"] == mode and summary["num_codebooks"] == num_codebooks
    assert summary["light_share"] == {"full": 0.0, "light": 1.0}.get(mode, summary["light_share"])
    seconds = sum(sf.info(str(p)).duration for p in files(corpus).values())
    assert summary["audio_hours"] == pytest.approx(seconds / 3600, rel=1e-3)


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory):
    """The shipped model with its exported graphs, packaged (SHA256SUMS lists them)."""
    folder = tmp_path_factory.mktemp("onnx") / "dsl-codec-16k"
    folder.mkdir()
    for name in ("codec.ckpt", "hyperparams.yaml"):
        shutil.copy(MODEL / name, folder / name)
    codec = load_tokenizer(MODEL, engine="torch")
    weights = sha256_file(folder / "codec.ckpt")
    export_folder(codec, folder, weights)
    write_manifest(folder)
    return folder


def test_onnxruntime_is_the_default_and_equals_the_onnx_tokenizer(corpus, tmp_path, onnx_package):
    """With graphs in the package they are used; without, the same graph is exported once."""
    summary = run(corpus, tmp_path / "graphs", model=str(onnx_package), engine=None)
    assert summary["engine"] == "onnxruntime" and summary["mode"] == "mixed"
    tokenizer = load_tokenizer(onnx_package, engine="onnxruntime")
    tokens = kaldiio.load_scp(str(tmp_path / "graphs" / "tokens.scp"))
    for uid, path in files(corpus).items():
        np.testing.assert_array_equal(tokens[uid], reference(tokenizer, path), err_msg=uid)
    # the shipped package has no graphs: exported into the work folder, then removed
    assert not (MODEL / "encoder.onnx").exists()
    summary = run(corpus, tmp_path / "exported", engine=None)
    assert summary["engine"] == "onnxruntime"
    same_output(tmp_path / "graphs", tmp_path / "exported")
    assert not (tmp_path / "exported" / ".work").exists()


def test_output_is_what_dasb_tokens_loader_reads(corpus, mixed_run, torch_tokenizer):
    """DASB's TokensLoader: scp lines ``id path:offset``, ``kaldiio.load_mat`` each."""
    loader = {}
    for line in (mixed_run / "tokens.scp").read_text().splitlines():
        uid, where = line.strip().split(None, 1)
        loader[uid] = torch.from_numpy(kaldiio.load_mat(where)).long()
    assert list(loader) == sorted(files(corpus))  # sorted by id
    sequential = dict(kaldiio.load_ark(str(mixed_run / "tokens.ark")))
    assert list(sequential) == list(loader)
    for uid, path in files(corpus).items():
        expected = reference(torch_tokenizer, path)
        np.testing.assert_array_equal(loader[uid].numpy(), expected)
        np.testing.assert_array_equal(sequential[uid], expected)
    with open(mixed_run / "opt_extract.pkl", "rb") as f:  # DASB's _skip compares it
        assert pickle.load(f) == {
            "sample_rate": 16000,
            "save_folder": str(mixed_run),
            "dataset_length": len(CLIPS),
        }
    embeddings = np.load(mixed_run / "embeddings.npy")
    expected = torch_tokenizer.get_pretrained_embeddings().numpy()
    np.testing.assert_array_equal(embeddings, expected)
    summary = json.loads((mixed_run / "summary.json").read_text())
    sums = (MODEL / "SHA256SUMS").read_text()
    assert f"{summary['model_sha256']}  codec.ckpt" in sums
    assert summary["utterances"] == len(CLIPS) and summary["skipped"] == []
    assert summary["this_run"]["throughput_audio_hours_per_hour"] > 0
    assert summary["this_run"]["real_time_factor"] > 0
    assert not (mixed_run / ".work").exists()


def test_a_rerun_is_a_no_op(corpus, mixed_run):
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in mixed_run.iterdir()}
    summary = run(corpus, mixed_run)
    assert summary["nothing_to_do"]
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in mixed_run.iterdir()}
    assert after == before


def test_a_rerun_with_other_settings_is_refused(corpus, mixed_run):
    with pytest.raises(ValueError, match=r"other settings \(num_codebooks: 8 -> 2\)"):
        run(corpus, mixed_run, num_codebooks=2)


def test_a_killed_run_resumes_to_the_same_bytes(corpus, mixed_run, tmp_path):
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "speechbrain_dsl.tokenize",
        f"--model={MODEL}",
        f"--data={corpus}",
        f"--out={out}",
        "--id_from=stem",
        "--engine=torch",
        "--chunk_size=1",  # six chunks: a kill after the first leaves work to resume
        "--batch_seconds=3",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env(), start_new_session=True, stderr=subprocess.PIPE
    )
    records = out / ".work" / "chunks"
    deadline = time.monotonic() + 300
    while not list(records.glob("*.json")):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)  # the run and its reading worker
    process.wait()
    done = len(list(records.glob("*.json")))
    assert 1 <= done < len(CLIPS)
    assert not (out / "tokens.ark").exists()

    summary = run(corpus, out, chunk_size=1, loader_workers=1)
    encoded = summary["this_run"]["encoded_audio_hours"]
    assert 0 < encoded < summary["audio_hours"]  # the finished chunks were not encoded again
    reference_run = tmp_path / "whole"
    run(corpus, reference_run, chunk_size=1)
    same_output(out, reference_run)
    # chunks are cut the same way whatever the chunk size: same tokens as 2 per chunk
    assert (out / "tokens.ark").read_bytes() == (mixed_run / "tokens.ark").read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_torchrun_ranks_equal_one_process(corpus, mixed_run, tmp_path):
    out = tmp_path / "ddp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "-m",
            "speechbrain_dsl.tokenize",
            f"--model={MODEL}",
            f"--data={corpus}",
            f"--out={out}",
            "--id_from=stem",
            "--engine=torch",
            "--chunk_size=2",
            "--batch_seconds=3",
            "--loader_workers=1",  # a reading worker forked by each rank
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    same_output(out, mixed_run)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["this_run"]["processes"] == 2


def test_two_local_workers_equal_one_process(corpus, mixed_run, tmp_path):
    summary = run(corpus, tmp_path / "workers", workers=2)
    same_output(tmp_path / "workers", mixed_run)
    assert summary["this_run"]["processes"] == 2


def test_a_manifest_gives_the_folder_s_tokens(corpus, mixed_run, tmp_path):
    summary = run(corpus.parent / "test.json", tmp_path / "json", data_root=str(corpus))
    same_output(tmp_path / "json", mixed_run)
    assert summary["data"] == str(corpus.parent / "test.json")


def test_bad_files_are_named_or_skipped(corpus, tmp_path):
    missing = corpus / "9999" / "1" / "missing.wav"
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, "float32"), 16000)
    manifest = json.loads((corpus.parent / "test.json").read_text())
    manifest["missing"] = {"wav": "{data_root}/9999/1/missing.wav"}
    manifest["empty"] = {"wav": str(empty)}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as error:
        run(path, tmp_path / "refused", data_root=str(corpus))
    assert str(missing) in str(error.value) and str(empty) in str(error.value)
    assert "2 bad audio files" in str(error.value) and "--skip_bad_audio" in str(error.value)
    assert not (tmp_path / "refused" / "tokens.ark").exists()

    summary = run(path, tmp_path / "skipped", data_root=str(corpus), skip_bad_audio=True)
    assert summary["utterances"] == len(CLIPS) and summary["skipped_count"] == 2
    reasons = {s["id"]: s["reason"] for s in summary["skipped"]}
    assert reasons["empty"].startswith("empty audio file") and str(empty) in reasons["empty"]
    assert "unreadable" in reasons["missing"] and str(missing) in reasons["missing"]
    assert "missing" not in kaldiio.load_scp(str(tmp_path / "skipped" / "tokens.scp"))


def test_a_corrupt_manifest_is_named(tmp_path, capsys):
    broken = tmp_path / "train.json"
    broken.write_text('{"utt1": {"wav": "a.wav"}, ')
    argv = ["--model", str(MODEL), "--data", str(broken), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert f"manifest {broken} is not valid JSON" in message
    rows = tmp_path / "train.csv"
    rows.write_text("ID,duration,wav\nutt1,1.0,$data_root/a.wav\nutt2,1.0\n")
    with pytest.raises(ValueError, match=rf"manifest {re.escape(str(rows))}, line 3: expected 3"):
        read_corpus(rows, data_root="/data")
    with pytest.raises(ValueError, match=r"line 2 uses \$data_root: pass --data_root"):
        read_corpus(rows)
    with pytest.raises(ValueError, match=r"neither a 'wav' nor a 'path' field"):
        rows.write_text("ID,duration,audio\nutt1,1.0,a.wav\n")
        read_corpus(rows)


def test_csv_manifests_and_folder_ids(corpus, tmp_path):
    rows = tmp_path / "test.csv"
    paths = files(corpus)
    lines = [f"{uid},1.0,$data_root/{p.relative_to(corpus).as_posix()}" for uid, p in paths.items()]
    rows.write_text("ID,duration,wav\n" + "\n".join(reversed(lines)) + "\n")
    by_csv = read_corpus(rows, data_root=corpus)
    assert [(e.id, Path(e.path)) for e in by_csv] == list(paths.items())  # sorted by id
    first = read_corpus(corpus)[0]  # ids from the relative path
    assert first.id == "1495_93723_" + Path(first.path).stem
    for speaker in ("a", "b"):
        (tmp_path / speaker).mkdir()
        shutil.copy(first.path, tmp_path / speaker / "x.wav")
    assert [e.id for e in read_corpus(tmp_path)] == ["a_x", "b_x"]
    with pytest.raises(ValueError, match=r"a/x.wav and .*b/x.wav both get the id 'x'"):
        read_corpus(tmp_path, id_from="stem")


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU-only machine's refusal")
def test_cuda_without_a_gpu_is_a_clear_error(corpus, tmp_path):
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available on this machine"):
        run(corpus, tmp_path / "gpu", device="cuda")
