"""What running the encoder's tails in blocks buys on CPU, by block size.

The tails' first layers run at the sample rate: a batch of 16 six-second clips
holds ~50 MB per activation, far beyond a CPU's cache, and one call on it costs about
three times as much per second of audio as sixteen calls of one clip. The routing
planner therefore cuts rows at ``block_frames`` and the executor runs them a block at a
time (:func:`speechbrain_dsl.nnet.plan_runner.run_plan`). This benchmark times the PyTorch
encoder of a packaged DSL model (one thread; medians of ``--repeats`` round-robin
runs over the block sizes) on batch 1 and batch 16 of 6-s clips and on one 60-s clip,
in full mode and with a fixed random route sending ``--light`` of the segments light,
and checks that every block size gives the same features.

    python benchmarks/encoder_blocks.py [--model pretrained/dsl-codec-16k]
        [--blocks 0,150,300,600,1200,2400] [--repeats 5] [--json] [--out FILE]
        [--table FILE]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from encoder_ops import cpu_name  # this folder is on sys.path when a benchmark runs

from speechbrain_dsl.inference.interface import DSLCodecInterface

ROOT = Path(__file__).resolve().parents[1]
SHAPES = (("batch 1 x 6 s", 1, 6.0), ("batch 16 x 6 s", 16, 6.0), ("batch 1 x 60 s", 1, 60.0))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "dsl-codec-16k"))
    parser.add_argument("--blocks", default="0,150,300,600,1200,2400")
    parser.add_argument("--light", type=float, default=0.25, help="light share of mixed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None, help="also write the result (JSON) here")
    parser.add_argument("--table", default=None, help="print a result file's table and exit")
    return parser.parse_args(argv)


def speech(model: Path, rate: int, seconds: float, batch: int) -> torch.Tensor:
    """``[batch, 1, samples]``: the package's check clips, end to end and tiled."""
    clips = []
    for path in sorted((model / "check").glob("*input*.wav")) or sorted(
        (model / "check").glob("*.wav")
    ):
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        if sr == rate:
            clips.append(audio.mean(1))
    if not clips:
        raise FileNotFoundError(f"{model / 'check'}: no check clips at {rate} Hz to time on")
    joined = np.concatenate(clips)
    samples = int(seconds * rate)
    rows = [np.resize(np.roll(joined, 7919 * b), samples) for b in range(batch)]
    return torch.from_numpy(np.stack(rows))[:, None]


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print_table(json.loads(Path(args.table).read_text()))
        return None
    torch.set_num_threads(1)
    model = Path(args.model)
    codec = DSLCodecInterface.from_hparams(
        source=str(model), savedir=tempfile.mkdtemp(), engine="torch"
    ).codec.eval()
    encoder = codec.encoder
    if not hasattr(encoder, "dsl"):
        raise ValueError(f"--model {model}: not a DSL model (its encoder has no tails)")
    dsl = encoder.dsl
    blocks = [int(b) for b in args.blocks.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    for label, batch, seconds in SHAPES:
        wav = speech(model, codec.sample_rate, seconds, batch)
        frames = -(-wav.shape[-1] // encoder.hop)
        segments = -(-frames // dsl.segment_length(frames))
        route = torch.from_numpy(rng.random((batch, segments)) < args.light)
        for routing in ("full", "mixed"):
            kwargs = {"mode": "full"} if routing == "full" else {"route": route}
            times = {b: [] for b in blocks}
            outputs = {}
            with torch.inference_mode():
                for b in blocks:  # warm-up, and the outputs to compare
                    dsl.block_frames = b
                    outputs[b] = encoder(wav, **kwargs).features
                for _ in range(args.repeats):
                    for b in blocks:
                        dsl.block_frames = b
                        start = time.perf_counter()
                        encoder(wav, **kwargs)
                        times[b].append(time.perf_counter() - start)
            reference = outputs[blocks[0]]
            worst = max(float((outputs[b] - reference).abs().max()) for b in blocks)
            audio = batch * seconds
            first = statistics.median(times[blocks[0]])
            rows.append(
                {
                    "shape": label,
                    "routing": routing,
                    "max_abs_difference": worst,
                    "ms_per_audio_second": {
                        str(b): 1e3 * statistics.median(times[b]) / audio for b in blocks
                    },
                    "ratio_to_first": {str(b): statistics.median(times[b]) / first for b in blocks},
                }
            )
    result = {
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": 1,
        "repeats": args.repeats,
        "light_share_of_mixed": args.light,
        "blocks": blocks,
        "rows": rows,
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print_table(result)
    return result


def print_table(result):
    blocks = result["blocks"]
    print(
        f"{result['model']}: encoder ms per second of audio by block_frames "
        f"(0: one call), {result['cpu']}, torch {result['torch']}, 1 thread"
    )
    print("| shape | routing | " + " | ".join(str(b) for b in blocks) + " | max difference |")
    print("|---|---|" + "---|" * (len(blocks) + 1))
    for row in result["rows"]:
        cells = [
            f"{row['ms_per_audio_second'][str(b)]:.2f} ({row['ratio_to_first'][str(b)]:.2f}x)"
            for b in blocks
        ]
        print(
            f"| {row['shape']} | {row['routing']} | "
            + " | ".join(cells)
            + f" | {row['max_abs_difference']:.1e} |"
        )


if __name__ == "__main__":
    main()
