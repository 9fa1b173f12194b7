"""Corpus tokenization throughput: audio hours per core-hour, by engine, routing and workers.

Runs ``python -m speechbrain_dsl.tokenize`` on the same utterances once per case
(``--engines`` x ``--modes`` x ``--workers``), each into a fresh output folder
with ``--threads`` threads per process, and reads what the tool measured
(``summary.json``: the time from checking the audio headers to the last chunk
written, so loading the model is not counted). The onnxruntime cases use a
copy of the package with its exported graphs (exported once here, as
``python -m speechbrain_dsl.inference.package`` ships them), so no case pays
for an export. The tokens of every case are checked against the first case of
the same engine and mode (``--workers`` must not change a byte).

Columns: audio hours per wall hour, per core-hour (processes x threads x wall;
DataLoader reading workers not counted as cores), the real-time factor, the
light share, and the CPU seconds of the whole command (startup included).

    python benchmarks/tokenize_corpus.py [--model pretrained/dsl-codec-16k]
        [--data data/corpus/LibriTTS/test-clean] [--max-files N]
        [--engines torch,onnxruntime] [--modes full,mixed] [--workers 1,2]
        [--batch-seconds 60] [--chunk-size 16] [--threads 1] [--json] [--out FILE]
        [--table FILE]
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "dsl-codec-16k"))
    parser.add_argument(
        "--data",
        default=str(ROOT / "data" / "corpus" / "LibriTTS" / "test-clean"),
        help="a folder of audio (searched recursively) or a SpeechBrain manifest",
    )
    parser.add_argument("--data-root", default=None, help="--data_root of the tool, for a manifest")
    parser.add_argument(
        "--max-files", type=int, default=None, help="the first N files of a folder (all)"
    )
    parser.add_argument("--engines", default="torch,onnxruntime")
    parser.add_argument("--modes", default="full,mixed")
    parser.add_argument("--workers", default="1,2", help="process counts to compare")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=16,
        help="utterances per chunk: the unit shared among processes (the tool's default is 64)",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--loader-workers", type=int, default=1)
    parser.add_argument(
        "--table", default=None, help="print the table of a result file (JSON) and exit"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    return parser.parse_args(argv)


def machine() -> str:
    """CPU model and core count, e.g. ``2-core Intel(R) Xeon(R) Processor``."""
    model = platform.processor() or "CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()}-core {model}"


def subset(data: Path, max_files, scratch: Path) -> Path:
    """``data`` itself, or a folder of links to its first ``max_files`` audio files."""
    if max_files is None or not data.is_dir():
        return data
    from speechbrain_dsl.tokenize import read_corpus

    folder = scratch / "subset"
    folder.mkdir()
    for entry in read_corpus(data)[:max_files]:
        (folder / f"{entry.id}{Path(entry.path).suffix}").symlink_to(Path(entry.path).resolve())
    return folder


def with_graphs(model: Path, scratch: Path) -> Path:
    """A copy of the package with ``encoder.onnx`` and ``decoder.onnx`` (and its SHA256SUMS)."""
    import torch

    from speechbrain_dsl.inference.export import export_folder
    from speechbrain_dsl.inference.interface import load_tokenizer
    from speechbrain_dsl.inference.manifest import sha256_file, write_manifest

    torch.set_num_threads(1)
    folder = scratch / "model"
    folder.mkdir()
    for name in ("codec.ckpt", "hyperparams.yaml"):
        shutil.copy(model / name, folder / name)
    if all((model / name).is_file() for name in ("encoder.onnx", "decoder.onnx")):
        for name in ("encoder.onnx", "decoder.onnx"):
            shutil.copy(model / name, folder / name)
    else:
        codec = load_tokenizer(model, engine="torch")
        weights = sha256_file(folder / "codec.ckpt")
        export_folder(codec, folder, weights)
    write_manifest(folder)
    return folder


def run_case(args, model, data, out, engine, mode, workers) -> dict:
    """One run of the tool; its summary, with the CPU seconds of the command."""
    command = [
        sys.executable,
        "-m",
        "speechbrain_dsl.tokenize",
        f"--model={model}",
        f"--data={data}",
        f"--out={out}",
        f"--engine={engine}",
        f"--mode={mode}",
        f"--workers={workers}",
        f"--threads={args.threads}",
        f"--batch_seconds={args.batch_seconds}",
        f"--chunk_size={args.chunk_size}",
        f"--loader_workers={args.loader_workers}",
        "--no_progress",
    ]
    if args.data_root is not None:
        command.append(f"--data_root={args.data_root}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)),
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return summary


def run(args) -> dict:
    engines = [e for e in args.engines.split(",") if e]
    modes = [m for m in args.modes.split(",") if m]
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tokenize-bench-") as scratch:
        scratch = Path(scratch)
        data = subset(Path(args.data), args.max_files, scratch)
        models = {"torch": Path(args.model)}
        if "onnxruntime" in engines:
            models["onnxruntime"] = with_graphs(Path(args.model), scratch)
        for engine in engines:
            for mode in modes:
                first = None
                for workers in worker_counts:
                    out = scratch / f"{engine}-{mode}-{workers}"
                    s = run_case(args, models[engine], data, out, engine, mode, workers)
                    ark = (out / "tokens.ark").read_bytes()
                    first = ark if first is None else first
                    run_ = s["this_run"]
                    rows.append(
                        dict(
                            engine=engine,
                            mode=mode,
                            workers=workers,
                            threads=run_["threads_per_process"],
                            utterances=s["utterances"],
                            audio_hours=s["audio_hours"],
                            wall_seconds=run_["wall_seconds"],
                            audio_hours_per_hour=run_["throughput_audio_hours_per_hour"],
                            audio_hours_per_core_hour=run_["audio_hours_per_core_hour"],
                            real_time_factor=run_["real_time_factor"],
                            light_share=s["light_share"],
                            cpu_seconds=s["cpu_seconds"],
                            same_tokens_as_first=ark == first,
                        )
                    )
                    shutil.rmtree(out)
    meta = dict(
        model=shown(args.model),
        data=shown(args.data),
        max_files=args.max_files,
        batch_seconds=args.batch_seconds,
        chunk_size=args.chunk_size,
        loader_workers=args.loader_workers,
        cpu=machine(),
        command="python benchmarks/tokenize_corpus.py " + " ".join(sys.argv[1:]),
    )
    return {"meta": meta, "rows": rows}


def table(result) -> str:
    m = result["meta"]
    first = result["rows"][0] if result["rows"] else {}
    lines = [
        f"{m['model']} on {first.get('utterances', 0)} utterances "
        f"({first.get('audio_hours', 0) * 60:.1f} min) of {m['data']}; {m['cpu']}, "
        f"batches of {m['batch_seconds']:g} s, chunks of {m['chunk_size']} utterances, "
        f"{m['loader_workers']} reading worker(s) per process",
        "| engine | mode | processes x threads | light share | audio h / h | "
        "audio h / core-h | RTF | CPU s (whole command) | same tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        share = "-" if r["light_share"] is None else f"{r['light_share']:.1%}"
        lines.append(
            f"| {r['engine']} | {r['mode']} | {r['workers']} x {r['threads']} | {share} | "
            f"{r['audio_hours_per_hour']:.1f} | {r['audio_hours_per_core_hour']:.1f} | "
            f"{r['real_time_factor']:.4f} | {r['cpu_seconds']:.1f} | "
            f"{'yes' if r['same_tokens_as_first'] else 'NO'} |"
        )
    return "\n".join(lines)


def shown(path) -> str:
    """``path`` relative to the repository when it is inside it (results name no checkout)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    result = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0 if all(r["same_tokens_as_first"] for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
