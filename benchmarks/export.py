"""onnxruntime vs PyTorch latency of the exported mixed-mode encoder, one CPU thread.

60 one-second segments (silence-like and noisy rows) at forced light shares via the
threshold input: everything full, the median prediction (about half light) and
everything light. Median of repeats, both runtimes timed round-robin.

    python benchmarks/export.py [--json] [--repeats 15]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.export import ExportableEncoder, export_onnx

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "hparams" / "soundstream_dsl.yaml"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with open(args.model) as f:
        codec = load_hyperpyyaml(f)["codec"].eval()
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(60, 1, 16000, generator=gen) * 0.3
    wav[::2] *= 0.01
    with torch.no_grad():
        codec.encode(wav[:, 0])  # initialise the codebooks
        model = ExportableEncoder(codec).eval()
        median = float(codec.predict_distances(wav[:, 0]).median())
        path = export_onnx(model, Path(tempfile.mkdtemp()) / "encoder.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options)
    rows = []
    for name, threshold in (("all full", -1e9), ("median", median), ("all light", 1e9)):
        feed = {
            "segments": wav.numpy(),
            "threshold": np.array(threshold, np.float32),
            "context": np.zeros((60, 1, 0), np.float32),
            "lengths": np.ones(60, np.float32),
        }
        thr = torch.tensor(threshold)
        runs = {
            "pytorch": lambda thr=thr: model(wav, thr),
            "onnxruntime": lambda feed=feed: session.run(None, feed),
        }
        times = {k: [] for k in runs}
        with torch.no_grad():
            for fn in runs.values():
                fn()
            for _ in range(args.repeats):
                for k, fn in runs.items():
                    start = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - start)
            light = float((model(wav, thr)[2] < thr).float().mean())
        pt, ort = (1000 * statistics.median(times[k]) for k in ("pytorch", "onnxruntime"))
        rows.append(
            {
                "routing": name,
                "light_share": light,
                "pytorch_ms": pt,
                "onnxruntime_ms": ort,
                "ratio": ort / pt,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"Exported encoder + tokens, 60 x 1 s, 1 thread, median of {args.repeats}")
    print(f"{'routing':<11}{'light':>7}{'PyTorch ms':>12}{'ORT ms':>9}{'ORT/PyTorch':>13}")
    for r in rows:
        print(
            f"{r['routing']:<11}{r['light_share']:>7.0%}{r['pytorch_ms']:>12.1f}"
            f"{r['onnxruntime_ms']:>9.1f}{r['ratio']:>13.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
