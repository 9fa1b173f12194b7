"""Deployment costs of a trained DSL codec: engines, int8, decoding, long files, streaming.

One process, one thread (``OMP_NUM_THREADS=1``, one onnxruntime thread), the
reference model ``pretrained/dsl-codec-16k`` exported to a temporary folder
(``encoder.onnx``, ``encoder.int8.onnx`` calibrated on ``--calibration`` audio,
``decoder.onnx``). Held-out speech (``--eval``, resampled to 16 kHz) gives:

- encode RTF of 60 s of speech (``--seconds``; one call of ``encode_batch``)
  for torch fp32, onnxruntime fp32 and onnxruntime int8, each all full, mixed
  (threshold at the median prediction: 50% light) and all light, timed
  round-robin (median of ``--repeats``);
- decode RTF of the mixed tokens (``decode_batch``), torch and onnxruntime;
- streaming (``StreamingEncoder``, 100-ms chunks): RTF and the compute time of
  the pushes that complete a segment (p50, p99);
- engine agreement and int8 against fp32 on the held-out utterances at the
  calibrated threshold: segments whose route changes, tokens that change, and
  the mel distance of the decoded audio (int8 to fp32, and each to the input);
- model file sizes;
- a long file (``--long-minutes``, 60) encoded by ``encode_file`` in a fresh
  process each (peak RSS: ``VmHWM``): the torch-free runtime
  (``OnnxCodec``), the interface with onnxruntime and with torch, and for
  contrast 5 minutes given to PyTorch in one call; the long file's first minute
  of tokens is compared with encoding that minute whole.

    python benchmarks/deploy.py [--json] [--repeats 5] [--seconds 60] [--long-minutes 60]

``--json`` prints a list of rows, each with ``stage`` (``encode``, ``decode``,
``stream``, ``long_file``), ``engine`` (``torch``, ``onnxruntime``),
``precision`` (``fp32``, ``int8``), ``mode`` (``full``, ``mixed``, ``light``) and
``rtf``, plus the stage's own measures.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus" / "LibriTTS"
ENGINES = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
MODES = ("full", "mixed", "light")


def machine() -> str:
    """CPU model and core count, e.g. ``2-core AMD EPYC``."""
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {model}"


def prepare(model: Path, out: Path, calibration: Path) -> Path:
    """A packaged copy of ``model`` with its three ONNX graphs (reused when up to date)."""
    from speechbrain_dsl.inference.export import (
        ONNX_FILES,
        export_folder,
        read_audio_folder,
        read_metadata,
    )
    from speechbrain_dsl.training.checkpoints import load_codec, sha256_file, write_manifest

    out.mkdir(parents=True, exist_ok=True)
    for name in ("codec.ckpt", "hyperparams.yaml"):
        if (out / name).resolve() != (model / name).resolve():
            shutil.copyfile(model / name, out / name)
    sha = sha256_file(out / "codec.ckpt")
    if all((out / n).is_file() for n in ONNX_FILES) and all(
        read_metadata(out / n).get("weights_sha256") == sha for n in ONNX_FILES
    ):
        print(f"reusing the graphs in {out}", file=sys.stderr)
    else:
        start = time.perf_counter()
        codec = load_codec(None, out / "codec.ckpt")
        export_folder(codec, out, sha, read_audio_folder(calibration, codec.sample_rate, 300.0))
        print(f"exported {out} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    write_manifest(out, ["codec.ckpt", "hyperparams.yaml", *ONNX_FILES])
    return out


def held_out(folders, seconds: float):
    """Held-out utterances (16 kHz numpy arrays) from ``folders``, up to ``seconds`` each."""
    from speechbrain_dsl.inference.export import read_audio_folder

    clips = []
    for folder in folders:
        clips += list(read_audio_folder(folder, 16000, seconds))
    return clips


def interface(folder: Path, engine: str, precision: str):
    from speechbrain_dsl.inference.interface import DSLCodecInterface

    return DSLCodecInterface.from_hparams(
        source=str(folder), savedir=str(folder), engine=engine, onnx_precision=precision
    )


def timed(fn, repeats_times):
    start = time.perf_counter()
    out = fn()
    repeats_times.append(time.perf_counter() - start)
    return out


def bench_encode_decode(models, speech, repeats: int):
    """Encode (9 cases) and decode (2 cases) timings, round-robin."""
    import torch

    seconds = speech.shape[-1] / 16000
    reference = models[("torch", "fp32")]
    with torch.no_grad():
        predicted = reference.codec.predict_distances(speech)
    median = float(predicted.median())
    settings = {"full": ("full", median), "mixed": ("mixed", median), "light": ("light", median)}
    cases = [(e, p, m) for e, p in ENGINES for m in MODES]

    def run(case):
        engine, precision, mode = case
        mode, threshold = settings[mode]
        return models[(engine, precision)].encode_with_routing(
            speech, mode=mode, threshold=threshold
        )

    times = {case: [] for case in cases}
    light = {case: run(case).routing.light_share for case in cases}  # warm-up, light shares
    for _ in range(repeats):
        for case in cases:
            timed(lambda case=case: run(case), times[case])
    rows = [
        dict(
            stage="encode",
            engine=e,
            precision=p,
            mode=m,
            rtf=statistics.median(times[(e, p, m)]) / seconds,
            ms=1000 * statistics.median(times[(e, p, m)]),
            light_share=light[(e, p, m)],
        )
        for e, p, m in cases
    ]
    tokens = run(("torch", "fp32", "mixed")).tokens
    decoders = {"torch": models[("torch", "fp32")], "onnxruntime": models[("onnxruntime", "fp32")]}
    dtimes = {k: [] for k in decoders}
    for model in decoders.values():
        model.decode_batch(tokens)
    for _ in range(repeats):
        for k, model in decoders.items():
            timed(lambda model=model: model.decode_batch(tokens), dtimes[k])
    rows += [
        dict(
            stage="decode",
            engine=k,
            precision="fp32",
            mode="mixed",
            rtf=statistics.median(v) / seconds,
            ms=1000 * statistics.median(v),
        )
        for k, v in dtimes.items()
    ]
    return rows, median


def bench_stream(models, speech, threshold: float, chunk_ms: int = 100):
    """Streaming RTF and per-segment push latency (p50, p99) per engine and mode."""

    from speechbrain_dsl.inference.streaming import StreamingEncoder

    size = 16 * chunk_ms
    chunks = speech[0].split(size)
    rows = []
    for engine, precision in ENGINES:
        for mode in MODES:
            stream = StreamingEncoder(
                models[(engine, precision)],
                engine=engine,
                mode=mode,
                threshold=threshold,
                precision=precision,
            )
            stream.push(speech[0, :16000])
            stream.reset()
            busy, total = [], 0.0
            for chunk in chunks:
                start = time.perf_counter()
                frames = stream.push(chunk)
                elapsed = time.perf_counter() - start
                total += elapsed
                if frames.shape[0]:
                    busy.append(elapsed)
            start = time.perf_counter()
            stream.flush()
            total += time.perf_counter() - start
            rows.append(
                dict(
                    stage="stream",
                    engine=engine,
                    precision=precision,
                    mode=mode,
                    rtf=total / (speech.shape[-1] / 16000),
                    chunk_ms=chunk_ms,
                    p50_ms=1000 * float(np.percentile(busy, 50)),
                    p99_ms=1000 * float(np.percentile(busy, 99)),
                    light_share=sum(stream.routes) / len(stream.routes),
                )
            )
    return rows


def accuracy(models, clips, threshold: float):
    """Engine agreement (torch vs ORT fp32) and int8 vs fp32 on held-out utterances."""
    import torch

    from speechbrain_dsl.evaluation.metrics import mel_distance, visqol
    from speechbrain_dsl.inference.runtime import Encoded, agreement

    runs = {}
    for key in ENGINES:
        model = models[key]
        runs[key] = []
        for clip in clips:
            out = model.encode_with_routing(
                torch.from_numpy(clip)[None], mode="mixed", threshold=threshold
            )
            routing = out.routing
            runs[key].append(
                Encoded(
                    out.tokens.numpy(),
                    None,
                    routing.predicted.detach().numpy(),
                    routing.route.numpy(),
                    routing.segment_mask.numpy(),
                )
            )
    fp32, int8 = ("onnxruntime", "fp32"), ("onnxruntime", "int8")
    engines = agreement(runs[("torch", "fp32")], runs[fp32])
    pairs = list(zip(runs[("torch", "fp32")], runs[fp32]))
    engines["max_prediction_difference"] = max(
        float(np.abs(a.predicted - b.predicted).max()) for a, b in pairs
    )
    # where a route differs: both predictions (they straddle the threshold)
    engines["route_changes_at"] = [
        (float(a.predicted[i]), float(b.predicted[i]))
        for a, b in pairs
        for i in zip(*np.nonzero(a.route != b.route))
    ]
    quantized = agreement(runs[fp32], runs[int8])
    decoder = models[fp32]
    audio = {
        key: [
            decoder.decode_batch(torch.from_numpy(e.tokens))[0, : len(c)]
            for e, c in zip(runs[key], clips)
        ]
        for key in (fp32, int8)
    }
    originals = [torch.from_numpy(c) for c in clips]

    def mel(a, b):
        return float(torch.stack([mel_distance(x[None], y[None])[0] for x, y in zip(a, b)]).mean())

    def heard(a):  # what a listener gets: log-mel is thrown by faint noise in silent pauses
        return float(np.nanmean([float(visqol(x[None], y[None])[0]) for x, y in zip(a, originals)]))

    quantized.update(
        visqol_fp32_to_input=heard(audio[fp32]),
        visqol_int8_to_input=heard(audio[int8]),
        mel_int8_to_fp32=mel(audio[int8], audio[fp32]),
        mel_fp32_to_input=mel(audio[fp32], originals),
        mel_int8_to_input=mel(audio[int8], originals),
        threshold=threshold,
        clips=len(clips),
        light_share=float(np.mean(np.concatenate([e.route.ravel() for e in runs[fp32]]))),
    )
    return engines, quantized


def write_long_file(path: Path, clips, minutes: float) -> Path:
    """``minutes`` of held-out speech (the clips repeated) as 16-bit PCM at 16 kHz."""
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16") as f:
        written = 0
        while written < total:
            for clip in clips:
                part = clip[: total - written]
                f.write(part)
                written += len(part)
                if written >= total:
                    break
    return path


def measure_long(args) -> int:
    """(child process) Encodes one long file and prints its costs as JSON."""

    def rss():  # peak RSS of this program in MiB (ru_maxrss would count the forked parent)
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024

    if args.engine == "runtime":  # numpy + onnxruntime only
        from speechbrain_dsl.inference.runtime import OnnxCodec

        codec = OnnxCodec.from_folder(args.folder, threads=1, decoder=False)
        loaded = rss()
        start = time.perf_counter()
        tokens = codec.encode_file(args.file).tokens[0]
    else:
        import torch

        torch.set_num_threads(1)
        model = interface(Path(args.folder), args.engine, "fp32")
        loaded = rss()
        start = time.perf_counter()
        if args.whole:  # the whole file in one call (what encoding did before pieces)
            model.piece_seconds = 1e9
            audio, _ = sf.read(args.file, dtype="float32")
            tokens = model.encode_batch(torch.from_numpy(audio)[None])[0].numpy()
        else:
            tokens = model.encode_file(args.file)[0].numpy()
    elapsed = time.perf_counter() - start
    if args.tokens_out:
        np.save(args.tokens_out, tokens[:3000])
    print(
        json.dumps(
            dict(
                seconds=elapsed,
                loaded_rss_mib=loaded,
                peak_rss_mib=rss(),
                torch_imported="torch" in sys.modules,
                frames=int(tokens.shape[0]),
            )
        )
    )
    return 0


def bench_long(folder: Path, clips, minutes: float, tmp: Path):
    """Long-file encodes in fresh processes: peak RSS, RTF, first-minute exactness."""
    import torch

    long_file = write_long_file(tmp / "long.wav", clips, minutes)
    short_file = write_long_file(tmp / "five.wav", clips, min(5.0, minutes))
    cases = [
        ("runtime", "onnxruntime", long_file, False),
        ("onnxruntime", "onnxruntime", long_file, False),
        ("torch", "torch", long_file, False),
        ("torch", "torch", short_file, True),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows = []
    for entry, engine, path, whole in cases:
        tokens_out = tmp / f"tokens-{entry}-{whole}.npy"
        command = [
            sys.executable,
            __file__,
            "--measure-long",
            "--folder",
            str(folder),
            "--engine",
            entry,
            "--file",
            str(path),
            "--tokens-out",
            str(tokens_out),
        ]
        result = subprocess.run(
            command + (["--whole"] if whole else []), capture_output=True, text=True, env=env
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        info = json.loads(result.stdout.strip().splitlines()[-1])
        seconds = sf.info(str(path)).duration
        rows.append(
            dict(
                stage="long_file",
                engine=engine,
                precision="fp32",
                mode="mixed",
                rtf=info["seconds"] / seconds,
                minutes=seconds / 60,
                entry={"runtime": "OnnxCodec.encode_file (no PyTorch)"}.get(
                    entry, "interface " + ("encode_batch, one call" if whole else "encode_file")
                ),
                loaded_rss_mib=info["loaded_rss_mib"],
                peak_rss_mib=info["peak_rss_mib"],
                torch_imported=info["torch_imported"],
                tokens_file=str(tokens_out),
            )
        )
    # the long file's first minute of tokens against that minute encoded whole
    model = interface(folder, "torch", "fp32")
    minute, _ = sf.read(str(long_file), dtype="float32", frames=60 * 16000)
    whole = model.encode_batch(torch.from_numpy(minute)[None])[0].numpy()
    for row in rows:
        first = np.load(row.pop("tokens_file"))[: whole.shape[0]]
        row["first_minute_tokens_equal_whole"] = float((first == whole).mean())
    return rows


def report(rows, engines, int8, sizes, args, load):
    print(
        f"Deployment benchmark: {machine()}, one thread (OMP_NUM_THREADS=1, onnxruntime "
        f"1 thread), model {args.model}, all ratios from this one run; 1-min load average "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end (other work shares the cores)\n"
    )
    enc = {(r["engine"], r["precision"], r["mode"]): r for r in rows if r["stage"] == "encode"}
    base = enc[("torch", "fp32", "full")]["ms"]
    print(
        f"Encode, {args.seconds:g} s of held-out speech in one call (median of "
        f"{args.repeats}, round-robin)"
    )
    print(
        f"{'engine':<13}{'precision':<10}{'mode':<7}{'light':>6}{'ms':>8}{'RTF':>9}"
        f"{'speed-up vs torch full':>24}"
    )
    for (e, p, m), r in enc.items():
        print(
            f"{e:<13}{p:<10}{m:<7}{r['light_share']:>6.0%}{r['ms']:>8.0f}{r['rtf']:>9.4f}"
            f"{base / r['ms']:>23.2f}x"
        )
    print(f"\nDecode, the {args.seconds:g} s of mixed tokens")
    for r in rows:
        if r["stage"] == "decode":
            print(
                f"{r['engine']:<13}{r['precision']:<10}{'':<7}{'':>6}{r['ms']:>8.0f}"
                f"{r['rtf']:>9.4f}"
            )
    print("\nStreaming, 100-ms chunks: RTF and compute per completed segment")
    print(
        f"{'engine':<13}{'precision':<10}{'mode':<7}{'light':>6}{'RTF':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}"
    )
    for r in rows:
        if r["stage"] == "stream":
            print(
                f"{r['engine']:<13}{r['precision']:<10}{r['mode']:<7}{r['light_share']:>6.0%}"
                f"{r['rtf']:>9.4f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            )
    print(
        f"\nAgreement on {engines['segments']} held-out segments at the calibrated threshold "
        f"(mixed)"
    )
    print(
        f"  largest prediction difference torch vs onnxruntime: "
        f"{engines['max_prediction_difference']:.1e}; routes that differ: "
        + (
            ", ".join(
                f"torch {a:.4f} / onnxruntime {b:.4f}" for a, b in engines["route_changes_at"]
            )
            or "none"
        )
        + f" (threshold {int8['threshold']:.4f})"
    )
    for name, m in (
        ("torch fp32 vs onnxruntime fp32", engines),
        ("onnxruntime int8 vs fp32", int8),
    ):
        print(
            f"  {name}: routes {m['route_changes']} changed ({m['route_agreement']:.2%} agree), "
            f"tokens {m['token_changes']} of {m['tokens']} changed "
            f"({m['token_agreement']:.2%} agree; {m['frames_changed']:.1%} of frames, "
            f"first codebook {m['first_codebook_changes']:.1%})"
        )
    print(
        f"  decoded mel distance: int8 to fp32 {int8['mel_int8_to_fp32']:.3f}; to the input: "
        f"fp32 {int8['mel_fp32_to_input']:.3f}, int8 {int8['mel_int8_to_input']:.3f}"
    )
    print(
        f"  decoded ViSQOL against the input ({int8['clips']} utterances): "
        f"fp32 {int8['visqol_fp32_to_input']:.2f}, int8 {int8['visqol_int8_to_input']:.2f}"
    )
    print("\nModel files: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    long_rows = [r for r in rows if r["stage"] == "long_file"]
    if long_rows:
        print(
            "\nLong file, encode_file in a fresh process (peak RSS includes the process: "
            "importing PyTorch alone is ~0.65 GiB here)"
        )
        print(
            f"{'entry':<42}{'min':>5}{'RTF':>9}{'loaded MiB':>12}{'peak MiB':>10}"
            f"{'1st min = whole':>17}"
        )
        for r in long_rows:
            print(
                f"{r['entry'] + ' (' + r['engine'] + ')':<42}{r['minutes']:>5.0f}{r['rtf']:>9.4f}"
                f"{r['loaded_rss_mib']:>12.0f}{r['peak_rss_mib']:>10.0f}"
                f"{r['first_minute_tokens_equal_whole']:>16.2%}"
            )
    print("\nTargets")
    speedup = base / enc[("onnxruntime", "int8", "mixed")]["ms"]
    stream_full = next(
        r["rtf"]
        for r in rows
        if r["stage"] == "stream"
        and r["engine"] == "onnxruntime"
        and r["precision"] == "fp32"
        and r["mode"] == "full"
    )
    checks = [
        ("ORT int8 mixed >= 4x faster than torch fp32 full", f"{speedup:.2f}x", speedup >= 4),
        ("streaming full pass RTF <= 0.005 (ORT fp32)", f"{stream_full:.4f}", stream_full <= 0.005),
        (
            "int8 routes agree with fp32 on >= 98% of segments",
            f"{int8['route_agreement']:.2%}",
            int8["route_agreement"] >= 0.98,
        ),
    ]
    hour = [r for r in long_rows if r["minutes"] >= 59]
    for r in hour:
        checks.append(
            (
                f"one hour under 1 GiB peak RSS: {r['entry']} ({r['engine']})",
                f"{r['peak_rss_mib']:.0f} MiB",
                r["peak_rss_mib"] < 1024,
            )
        )
    for name, value, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")


def main(argv=None):

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "dsl-codec-16k"))
    parser.add_argument(
        "--calibration",
        default=str(CORPUS / "dev-clean"),
        help="held-out audio for the int8 calibration",
    )
    parser.add_argument(
        "--eval",
        nargs="+",
        default=[str(CORPUS / "test-clean"), str(CORPUS / "test-recorded")],
        help="held-out audio for timing and accuracy",
    )
    parser.add_argument(
        "--eval-seconds",
        type=float,
        default=150.0,
        help="seconds of each --eval folder for the accuracy comparison",
    )
    parser.add_argument("--out", help="folder for the exported graphs (reused when up to date)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="length of the speech the encode, decode and stream cases time",
    )
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=60.0,
        help="length of the long file (0 skips the long-file runs)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure-long", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--tokens-out", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_long:
        return measure_long(args)  # before importing PyTorch: one entry runs without it
    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    for folder in [args.calibration, *args.eval]:
        if not Path(folder).is_dir():
            parser.error(
                f"no audio folder {folder} (make the corpus with python -m "
                f"speechbrain_dsl.data.synthetic libritts, or point --calibration / "
                f"--eval at held-out audio)"
            )
    with tempfile.TemporaryDirectory(prefix="dsl-deploy-") as tmp:
        tmp = Path(tmp)
        folder = prepare(
            Path(args.model), Path(args.out) if args.out else tmp / "model", Path(args.calibration)
        )
        clips = held_out(args.eval, args.eval_seconds)
        speech = torch.from_numpy(np.concatenate(clips))[None, : round(args.seconds * 16000)]
        if speech.shape[-1] < round(args.seconds * 16000):
            parser.error(f"--eval holds less than {args.seconds:g} s of audio")
        models = {key: interface(folder, *key) for key in ENGINES}
        rows, median = bench_encode_decode(models, speech, args.repeats)
        rows += bench_stream(models, speech, median)
        calibrated = models[("torch", "fp32")].codec.encoder.dsl.threshold
        engines, int8 = accuracy(models, clips, calibrated)
        for row in rows:
            if row["stage"] in ("encode", "stream") and row["precision"] == "int8":
                row["vs_fp32"] = int8
            if (
                row["stage"] in ("encode", "stream")
                and row["engine"] == "onnxruntime"
                and row["precision"] == "fp32"
            ):
                row["vs_torch"] = engines
        sizes = {
            name: (folder / name).stat().st_size
            for name in ("codec.ckpt", "encoder.onnx", "encoder.int8.onnx", "decoder.onnx")
        }
        for row in rows:
            if row["stage"] == "encode":
                row["model_bytes"] = sizes[
                    "encoder.int8.onnx"
                    if row["precision"] == "int8"
                    else "codec.ckpt"
                    if row["engine"] == "torch"
                    else "encoder.onnx"
                ]
            elif row["stage"] == "decode":
                row["model_bytes"] = sizes[
                    "codec.ckpt" if row["engine"] == "torch" else "decoder.onnx"
                ]
        del models
        if args.long_minutes > 0:
            rows += bench_long(folder, clips, args.long_minutes, tmp)
    load = (load_before, os.getloadavg()[0])
    for row in rows:
        row["load_average"] = list(load)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    report(rows, engines, int8, sizes, args, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
