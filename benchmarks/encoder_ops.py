"""Where the exported encoder spends its time, per ONNX op type, and what the ELU form buys.

Exports the encoder graph of a packaged model twice, with onnxruntime's ``Elu`` kernel
and with the graph-friendly form ``max(x, exp(min(x, 0)) - 1)``
(:func:`speechbrain_dsl.nnet.activations.elu`, what the package exports), runs both on
the same rows of audio (the package's check clips cut into routing segments; one thread; all rows
full, half of them light at the median prediction, all light; medians of ``--repeats`` round-robin runs), and reports each graph's time per op type from
onnxruntime's profiler and the wall time per second of audio. Tokens of the two
graphs are compared (they can differ only at codeword near-ties).

    python benchmarks/encoder_ops.py [--model pretrained/dsl-codec-16k] [--rows 16]
        [--repeats 7] [--json] [--out FILE] [--table FILE]
"""

import argparse
import collections
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import soundfile as sf
import torch

from speechbrain_dsl.inference.graphs import ExportableEncoder, export_onnx, metadata
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.nnet.activations import kernel_elu

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "dsl-codec-16k"))
    parser.add_argument("--rows", type=int, default=16, help="routing segments per call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None, help="also write the result (JSON) here")
    parser.add_argument(
        "--table", default=None, help="print the table of a result file (JSON) and exit"
    )
    return parser.parse_args(argv)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def session(path, profile=False):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = profile
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_shares(path, feed):
    """Share of kernel time per op type over a few profiled runs."""
    profiled = session(path, profile=True)
    for _ in range(3):
        profiled.run(None, feed)
    trace = Path(profiled.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    times = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    total = sum(times.values())
    return {op: t / total for op, t in times.most_common()}


def speech_rows(model, sample_rate, rows, segment, context):
    """``[rows, 1, context + segment]`` of the package's check clips, joined and cut
    into routing segments with the audio before each as context (noise if none)."""
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((model / "check").glob("*.wav"))]
    audio = np.concatenate([np.zeros(context, np.float32)] + clips) if clips else None
    if audio is None or len(audio) < context + rows * segment:
        audio = np.random.default_rng(0).standard_normal(context + rows * segment) * 0.05
    starts = [context + i * segment for i in range(rows)]
    return np.stack([audio[s - context : s + segment] for s in starts])[:, None].astype(np.float32)


def print_table(result):
    """The markdown table of a result (what the docs include)."""
    meta = result["meta"]
    print(
        f"{meta['model']}: {meta['rows']} rows of {meta['segment_samples']} samples of its "
        f"check clips; {meta['cpu']}, {meta['threads']} thread, onnxruntime {meta['onnxruntime']}"
    )
    print("| routing | ELU form | ms per audio second | ELU ops' share | tokens equal |")
    print("|---|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['routing']} | {r['elu']} | {r['ms_per_audio_second']:.2f} | "
            f"{100 * r['elu_share']:.1f}% | {100 * r['token_agreement']:.2f}% |"
        )


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print_table(json.loads(Path(args.table).read_text()))
        return None
    codec = DSLCodecInterface.from_hparams(
        source=args.model, savedir=tempfile.mkdtemp(), engine="torch"
    ).codec.eval()
    model = ExportableEncoder(codec).eval()
    info = metadata(codec, "encoder")
    folder = Path(tempfile.mkdtemp())
    with torch.no_grad():
        with kernel_elu():
            kernel = export_onnx(model, folder / "elu_kernel.onnx", info)
        friendly = export_onnx(model, folder / "elu_graph_friendly.onnx", info)
    seg, ctx = model.segment_samples, model.context_samples
    audio = speech_rows(Path(args.model), codec.sample_rate, args.rows, seg, ctx)
    feeds = {}
    probe = {
        "segments": audio[..., ctx:],
        "threshold": np.array(-np.inf, np.float32),
        "context": np.ascontiguousarray(audio[..., :ctx]),
        "lengths": np.ones(args.rows, np.float32),
    }
    if model.reads_levels:
        probe["levels"] = np.zeros(args.rows, np.float32)
    predicted = session(friendly).run(None, probe)[2]
    middle = float(np.median(predicted))  # half the rows light: both tails run
    for routing, threshold in (("full", -np.inf), ("mixed", middle), ("light", np.inf)):
        feed = {
            "segments": audio[..., ctx:],
            "threshold": np.array(threshold, np.float32),
            "context": np.ascontiguousarray(audio[..., :ctx]),
            "lengths": np.ones(args.rows, np.float32),
        }
        if model.reads_levels:
            feed["levels"] = np.zeros(args.rows, np.float32)
        feeds[routing] = feed
    graphs = {"Elu kernel": kernel, "max(x, exp(min(x, 0)) - 1)": friendly}
    sessions = {name: session(path) for name, path in graphs.items()}
    seconds = args.rows * seg / codec.sample_rate
    rows = []
    for routing, feed in feeds.items():
        outputs = {name: s.run(None, feed) for name, s in sessions.items()}
        times = {name: [] for name in sessions}
        for _ in range(args.repeats):  # round robin: drifting load hits both alike
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, feed)
                times[name].append(time.perf_counter() - start)
        tokens = [o[1] for o in outputs.values()]
        for name in sessions:
            shares = op_shares(graphs[name], feed)
            rows.append(
                {
                    "routing": routing,
                    "elu": name,
                    "ms_per_audio_second": 1000 * statistics.median(times[name]) / seconds,
                    "elu_share": shares.get("Elu", 0.0)
                    + sum(shares.get(op, 0.0) for op in ("Exp", "Min", "Max")),
                    "top_ops": dict(list(shares.items())[:6]),
                    "token_agreement": float((tokens[0] == tokens[1]).mean()),
                }
            )
    result = {
        "meta": {
            "model": str(Path(args.model).resolve().relative_to(ROOT))
            if Path(args.model).resolve().is_relative_to(ROOT)
            else args.model,
            "rows": args.rows,
            "segment_samples": seg,
            "cpu": cpu_name(),
            "threads": 1,
            "onnxruntime": onnxruntime.__version__,
            "command": "python benchmarks/encoder_ops.py " + " ".join(argv or sys.argv[1:]),
        },
        "rows": rows,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
        return result
    print_table(result)
    return result


if __name__ == "__main__":
    main()
