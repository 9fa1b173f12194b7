"""Scores a packaged codec on held-out subsets of a LibriTTS-layout corpus.

    python -m tools.score_package pretrained/campaign-baseline \
        --corpus data/corpus/LibriTTS --subsets test-clean test-recorded [--max 60] [--json]

Each utterance (mixed to mono, resampled to the codec's rate, cut to ``--seconds``)
is encoded and decoded one at a time in the given routing ``--mode``; the table gives
per subset the mean and median ViSQOL (speech mode, lattice model) and the mean
log-mel distance. ``--max`` takes that many utterances evenly spaced over the sorted
file list, so the same command picks the same utterances.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from speechbrain_dsl.evaluation.metrics import mel_distance, visqol
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.probing.embedding_cache import read_clip


def evenly_spaced(items, count):
    """``count`` items spread over ``items`` (all of them when there are fewer).

    Example
    -------
    >>> evenly_spaced(list(range(10)), 3)
    [0, 3, 6]
    """
    step = max(1, len(items) // count) if count else 1
    return items[::step][:count] if count else items


@torch.no_grad()
def score(codec, wavs, seconds=8.0, mode=None):
    """Mean / median ViSQOL and mean mel distance of ``codec`` on the files ``wavs``."""
    rate = codec.sample_rate
    scores, mels = [], []
    for wav in wavs:
        clip = read_clip(wav, rate)[: int(seconds * rate)]
        tokens, _ = codec.encode(clip[None], mode=mode)
        decoded = codec.decode(tokens)[0, :, : clip.shape[-1]]
        mels.append(float(mel_distance(decoded, clip[None])[0]))
        value = float(visqol(decoded, clip[None])[0])
        if value == value:  # NaN for a silent reference
            scores.append(value)
    return {
        "utterances": len(wavs),
        "visqol_mean": statistics.mean(scores) if scores else float("nan"),
        "visqol_median": statistics.median(scores) if scores else float("nan"),
        "mel": statistics.mean(mels) if mels else float("nan"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.score_package", description=__doc__)
    parser.add_argument("package", help="a packaged codec folder")
    parser.add_argument("--corpus", required=True, help="the LibriTTS-layout folder")
    parser.add_argument("--subsets", nargs="+", default=["test-clean"])
    parser.add_argument("--max", type=int, default=60, help="utterances per subset (0: all)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mode", default=None, help="full, light or mixed (default: the codec's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(args.package)
    codec = DSLCodecInterface.from_hparams(
        source=str(folder), savedir=str(folder), engine="torch"
    ).codec.eval()
    rows = {}
    for subset in args.subsets:
        wavs = sorted(str(p) for p in (Path(args.corpus) / subset).glob("*/*/*.wav"))
        if not wavs:
            sys.exit(f"--subsets: {Path(args.corpus) / subset} holds no <spk>/<chap>/*.wav")
        rows[subset] = score(codec, evenly_spaced(wavs, args.max), args.seconds, args.mode)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'subset':<16}{'utterances':>11}{'ViSQOL':>8}{'median':>8}{'mel':>8}")
    for subset, r in rows.items():
        print(
            f"{subset:<16}{r['utterances']:>11}{r['visqol_mean']:>8.2f}"
            f"{r['visqol_median']:>8.2f}{r['mel']:>8.3f}"
        )


if __name__ == "__main__":
    main()
