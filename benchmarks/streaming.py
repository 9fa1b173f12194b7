"""Per-chunk latency and real-time factor of the StreamingEncoder, one CPU thread.

60 s of audio pushed in chunks of 20 ms, 100 ms and 1 s, in full, light and mixed
(threshold at the median prediction) mode. Work happens when a chunk completes a
1-s routing segment, so the table reports the latency of those pushes (median and
max) and the real-time factor (compute time / audio time) over the stream.

    python benchmarks/streaming.py [--json] [--seconds 60]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.streaming import StreamingEncoder

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "hparams" / "soundstream_dsl.yaml"))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with open(args.model) as f:
        codec = load_hyperpyyaml(f)["codec"].eval()
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(args.seconds * codec.sample_rate, generator=gen) * 0.05
    with torch.no_grad():
        codec.threshold = float(codec.predict_distances(wav[None]).median())
    rows = []
    for mode in ("full", "light", "mixed"):
        for chunk_ms in (20, 100, 1000):
            stream = StreamingEncoder(codec, mode=mode)
            size = codec.sample_rate * chunk_ms // 1000
            stream.push(wav[:size]), stream.reset()  # warm-up
            busy, total = [], 0.0
            for chunk in wav.split(size):
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
                {
                    "mode": mode,
                    "chunk_ms": chunk_ms,
                    "rtf": total / args.seconds,
                    "segment_push_ms_median": 1000 * statistics.median(busy),
                    "segment_push_ms_max": 1000 * max(busy),
                    "light_share": sum(stream.routes) / len(stream.routes),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"StreamingEncoder, 1 thread, {args.seconds} s of audio, 1-s routing segments")
    print(f"{'mode':<7}{'chunk':>7}{'RTF':>9}{'segment push ms (median / max)':>33}{'light':>7}")
    for r in rows:
        print(
            f"{r['mode']:<7}{r['chunk_ms']:>5}ms{r['rtf']:>9.4f}"
            f"{r['segment_push_ms_median']:>20.2f} / {r['segment_push_ms_max']:<10.2f}"
            f"{r['light_share']:>7.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
