"""Does the switch predict what it is trained on? Predictions against the decode gap, per class.

A packaged DSL model encodes held-out utterances of each subset (``--utterances``
evenly spaced, cut to ``--seconds``) in the full and the light pass; the decode gap
(:class:`~speechbrain_dsl.nnet.decode_gap.DecodeGap`: per routing segment, how much
worse the light decode's log-mel error is than the full decode's) is what
``switch_target: decoded`` trains the switch on. Per subset the benchmark gives the
quantiles of the gap and of the switch's predictions over the valid segments and
their rank correlation (Spearman). A switch that has learnt the target predicts, per
class, quantiles near the gap's; one that cannot tell the classes apart predicts
about the same everywhere.

    python benchmarks/switch_fit.py --model DIR [--data data/corpus/LibriTTS]
        [--subsets test-clean,test-recorded,test-noise] [--out FILE] [--table FILE]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from batch_cost import machine, shown  # noqa: E402
from routing_unit import read_subset  # noqa: E402

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "campaign-dsl-fine"))
    parser.add_argument("--data", default=str(ROOT / "data" / "corpus" / "LibriTTS"))
    parser.add_argument("--subsets", default="test-clean,test-recorded,test-noise")
    parser.add_argument("--utterances", type=int, default=12, help="per subset")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", default=None, help="also write the result (JSON) here")
    parser.add_argument(
        "--table",
        metavar="JSON",
        default=None,
        help="print the table of a result file, run nothing",
    )
    return parser.parse_args(argv)


def measure(codec, wav, lengths, gap=None):
    """Valid segments' decode gap and prediction (numpy) for one padded batch.

    ``gap`` is the codec recipe's :class:`DecodeGap` (its YAML's defaults) if None.
    """
    import torch

    from speechbrain_dsl.nnet.decode_gap import DecodeGap

    dsl = codec.encoder.dsl
    if gap is None:
        gap = DecodeGap(
            codec.sample_rate, hop_length=codec.encoder.hop, segment_frames=dsl.segment_frames
        )
    with torch.no_grad():
        decoded = {
            mode: codec.decode(codec.encode(wav, lengths, mode=mode)[0], lengths)[
                ..., : wav.shape[-1]
            ]
            for mode in ("full", "light")
        }
        target = gap(wav, decoded["full"], decoded["light"], lengths)
        predicted = codec.predict_distances(wav, lengths)
    segments = target.shape[1]
    frames = predicted.shape[1] * dsl.segment_frames
    valid = dsl.valid_segments(lengths, frames, wav.shape[0], "cpu")[:, :segments]
    return target[valid].numpy(), predicted[:, :segments][valid].numpy()


def run(args):
    import torch
    from scipy.stats import spearmanr

    from speechbrain_dsl.training.checkpoints import load_codec

    torch.set_num_threads(1)
    codec = load_codec(None, Path(args.model)).eval()
    if not codec.has_dsl:
        raise SystemExit(f"--model: {args.model} has no DSL (no switch to check)")
    root = Path(args.data)
    rows = []
    for name in (s for s in args.subsets.split(",") if s):
        if not (root / name).is_dir():
            raise SystemExit(f"--data: {root} has no subset {name} (build the corpus: TRAINING.md)")
        wav, lengths = read_subset(root / name, args.utterances, args.seconds)
        target, predicted = measure(codec, wav, lengths)
        rows.append(
            dict(
                subset=name,
                segments=int(target.size),
                gap=np.quantile(target, QUANTILES).tolist(),
                predicted=np.quantile(predicted, QUANTILES).tolist(),
                spearman=float(spearmanr(predicted, target).statistic),
            )
        )
    return dict(
        model=shown(args.model),
        data=shown(root),
        utterances=args.utterances,
        seconds=args.seconds,
        quantiles=list(QUANTILES),
        cpu=machine(),
        rows=rows,
    )


def table(result) -> str:
    q = ", ".join(f"{v:g}" for v in result["quantiles"])
    lines = [
        f"{result['model']}: {result['utterances']} held-out utterances per subset cut to "
        f"{result['seconds']:g} s of {result['data']}; quantiles {q}; {result['cpu']}, 1 thread",
        "| subset | segments | decode gap (quantiles) | switch prediction (quantiles) | Spearman |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        gap = " / ".join(f"{v:.3f}" for v in row["gap"])
        predicted = " / ".join(f"{v:.3f}" for v in row["predicted"])
        lines.append(
            f"| {row['subset']} | {row['segments']} | {gap} | {predicted} | {row['spearman']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    result = run(args)
    if args.out:
        from speechbrain_dsl.atomic import atomic_path

        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
