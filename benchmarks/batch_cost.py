"""Does batching cost the DSL its savings? Mixed vs full encoding at several batch sizes.

A packaged DSL model encodes the same clips (utterances of held-out speakers joined
to ``--clip-seconds``, then cut to random lengths between 60% and 100% of it, so
batches carry SpeechBrain-style padding) at batch sizes 1, 8, 16 and 32, in three
routings:

- ``full``: the full tail everywhere (the baseline encoder's cost);
- ``mixed, nothing light``: the switch runs, every segment is routed full (the
  DSL's overhead when it saves nothing);
- ``mixed``: the model's calibrated threshold (or ``--threshold``).

For the torch engine it counts the encoder's executed MACs
(``torch.utils.flop_counter``) and times the encoder; for onnxruntime it times the
exported encoder graph (encoder and RVQ search: the graph holds both). Times are
medians of ``--repeats`` round-robin runs, one thread; every figure is a ratio to
the full pass of the same engine in the same process.

    python benchmarks/batch_cost.py [--model pretrained/dsl-codec-16k]
        [--data data/corpus/LibriTTS/test-recorded] [--json] [--out FILE]
"""

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
ROUTINGS = ("full", "mixed, nothing light", "mixed")


def shown(path) -> str:
    """``path`` relative to the repository when it is inside it (results name no checkout)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "dsl-codec-16k"))
    parser.add_argument(
        "--data",
        default=str(ROOT / "data" / "corpus" / "LibriTTS" / "test-recorded"),
        help="a folder of audio (searched recursively); files of one folder are joined",
    )
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--batches", default="1,8,16,32")
    parser.add_argument(
        "--segment-frames",
        type=int,
        default=None,
        help="routing unit in frames (the model's own by default)",
    )
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--engines", default="torch,onnxruntime")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--out", default=None, help="also write the rows (JSON) here")
    parser.add_argument(
        "--table",
        default=None,
        metavar="JSON",
        help="print the table of a result file written by --out, run nothing",
    )
    return parser.parse_args(argv)


def machine() -> str:
    """CPU model and core count, e.g. ``2-core Intel(R) Xeon(R) Processor``."""
    model = platform.processor() or "CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()}-core {model}"


def read_clips(folder: Path, count: int, seconds: float, seed: int):
    """``count`` clips of joined utterances (one folder each), cut to 60-100% of ``seconds``."""
    import torch
    import torchaudio.functional as AF

    if not folder.is_dir():
        raise SystemExit(
            f"--data: {folder} is not a folder (build the corpus first: see TRAINING.md)"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))
    if not files:
        raise SystemExit(f"--data: no audio files under {folder}")
    by_folder = {}
    for path in files:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = torch.from_numpy(audio.mean(1))
        if rate != 16000:
            audio = AF.resample(audio, rate, 16000)
        by_folder.setdefault(path.parent, []).append(audio.numpy())
    rng = random.Random(seed)
    target = int(seconds * 16000)
    clips, groups = [], list(by_folder.values())
    while len(clips) < count:
        for group in groups:
            joined = np.concatenate(group * (1 + target // sum(len(a) for a in group)))
            start = rng.randrange(0, max(1, len(joined) - target))
            clips.append(joined[start : start + int(target * rng.uniform(0.6, 1.0))])
            if len(clips) == count:
                break
    return clips


def batches_of(clips, size):
    """Padded ``[B, S]`` arrays and relative lengths, ``size`` clips each."""
    out = []
    for first in range(0, len(clips), size):
        group = clips[first : first + size]
        longest = max(len(c) for c in group)
        wavs = np.zeros((len(group), longest), np.float32)
        for i, c in enumerate(group):
            wavs[i, : len(c)] = c
        out.append((wavs, np.array([len(c) / longest for c in group], np.float32)))
    return out


def median_ms(fns, repeats):
    """Median wall time of each function in ms, timed round-robin after a warm-up."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]


def torch_rows(codec, batches, threshold, repeats):
    """MACs and wall time of the torch encoder per routing, summed over ``batches``."""
    import torch

    from speechbrain_dsl.evaluation.efficiency import executed_macs
    from speechbrain_dsl.nnet.routing import decide

    tensors = [(torch.from_numpy(w)[:, None], torch.from_numpy(n)) for w, n in batches]
    with torch.no_grad():
        predicted = [codec.predict_distances(w, n) for w, n in tensors]

    def call(routing, wav, lengths, pred):
        if routing == "full":
            return dict(mode="full")
        if routing == "mixed, nothing light":
            return dict(route=torch.zeros_like(pred, dtype=torch.bool))
        return dict(mode="mixed", threshold=threshold)

    def runner(routing):
        def run():
            with torch.no_grad():
                for (w, n), p in zip(tensors, predicted):
                    codec.encode_features(w, n, **call(routing, w, n, p))

        return run

    macs = {
        r: sum(
            executed_macs(codec, w, lengths=n, **call(r, w, n, p))
            for (w, n), p in zip(tensors, predicted)
        )
        for r in ROUTINGS
    }
    times = dict(zip(ROUTINGS, median_ms([runner(r) for r in ROUTINGS], repeats)))
    dsl = codec.encoder.dsl
    light = [
        decide(p, "mixed", threshold)[
            dsl.valid_segments(n, p.shape[1] * dsl.segment_frames, p.shape[0], "cpu")
        ]
        for (_, n), p in zip(tensors, predicted)
    ]
    return macs, times, float(torch.cat(light).float().mean())


def onnx_rows(runtime, batches, threshold, repeats):
    """Wall time of the onnxruntime encoder graph per routing, summed over ``batches``."""
    settings = {
        "full": ("full", None),
        "mixed, nothing light": ("mixed", -np.inf),
        "mixed": ("mixed", threshold),
    }

    def runner(routing):
        mode, limit = settings[routing]
        return lambda: [runtime.encode(w, n, mode=mode, threshold=limit) for w, n in batches]

    return dict(zip(ROUTINGS, median_ms([runner(r) for r in ROUTINGS], repeats)))


def run(args):
    import torch

    torch.set_num_threads(1)
    from speechbrain_dsl.inference.streaming import export_runtime
    from speechbrain_dsl.training.checkpoints import load_codec

    codec = load_codec(None, Path(args.model)).eval()
    if args.segment_frames is not None:
        codec.encoder.dsl.segment_frames = args.segment_frames
    threshold = codec.encoder.dsl.threshold if args.threshold is None else args.threshold
    clips = read_clips(Path(args.data), args.clips, args.clip_seconds, args.seed)
    engines = [e for e in args.engines.split(",") if e]
    runtime = export_runtime(codec) if "onnxruntime" in engines else None
    rows = []
    for size in (int(b) for b in args.batches.split(",")):
        batches = batches_of(clips, size)
        if "torch" in engines:
            macs, times, light = torch_rows(codec, batches, threshold, args.repeats)
            for r in ROUTINGS:
                rows.append(
                    dict(
                        engine="torch",
                        batch=size,
                        routing=r,
                        light_share=0.0 if r != "mixed" else light,
                        macs_ratio=macs[r] / macs["full"],
                        wall_ratio=times[r] / times["full"],
                        wall_ms=times[r],
                    )
                )
        if runtime is not None:
            times = onnx_rows(runtime, batches, threshold, args.repeats)
            for r in ROUTINGS:
                rows.append(
                    dict(
                        engine="onnxruntime",
                        batch=size,
                        routing=r,
                        wall_ratio=times[r] / times["full"],
                        wall_ms=times[r],
                    )
                )
    audio_s = sum(len(c) for c in clips) / 16000
    meta = dict(
        model=shown(args.model),
        data=shown(args.data),
        clips=len(clips),
        audio_seconds=round(audio_s, 1),
        threshold=threshold,
        segment_frames=codec.encoder.dsl.segment_frames,
        cpu=machine(),
        threads=1,
        command="python benchmarks/batch_cost.py " + " ".join(sys.argv[1:]),
    )
    return {"meta": meta, "rows": rows}


def table(result) -> str:
    m = result["meta"]
    lines = [
        f"{m['model']}: {m['clips']} clips ({m['audio_seconds']} s) of {m['data']}, "
        f"segments of {m['segment_frames']} frames, threshold {m['threshold']:.3f}; {m['cpu']}, 1 thread",
        "| engine | batch | routing | light share | MACs / full | wall / full |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        share = f"{r['light_share']:.1%}" if "light_share" in r else "-"
        macs = f"{r['macs_ratio']:.3f}" if "macs_ratio" in r else "-"
        lines.append(
            f"| {r['engine']} | {r['batch']} | {r['routing']} | {share} | {macs} | "
            f"{r['wall_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    result = run(args)
    if args.out:
        from speechbrain_dsl.atomic import write_text

        write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
