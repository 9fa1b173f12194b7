#!/usr/bin/env python3
"""Small training sweeps behind the paper's Fig. 6 and Fig. 8.

- Fig. 6: activation sparsity of the mask output against training steps, for
  several compression weights alpha (Eq. 5).
- Fig. 8: switch placement (after the first conv, block 1, block 2) against the
  switch's prediction quality (Spearman and AUROC on held-out segments).

Each run trains the default DSL codec (mel + commitment + DSL loss) on espeak-ng
speech mixed with silence-like clips, from scratch, with the same seed and data.

    python sweep.py [--quick] [--out results/sweep]

``--quick`` (a few minutes on a 2-core CPU) is enough to see the trends' direction,
not their final values: the paper trains for ~1500 epochs.
"""

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.data.speech_clips import crops, speech_corpus
from speechbrain_dsl.data.synthetic import SILENCE_KINDS, silence_like
from speechbrain_dsl.evaluation import plots
from speechbrain_dsl.evaluation.efficiency import read_placements
from speechbrain_dsl.nnet.dsl import DSLLoss, activation_sparsity
from speechbrain_dsl.nnet.losses import MultiScaleMelLoss

ROOT = Path(__file__).resolve().parents[3]


def corpus(seed, sample_rate=16000):
    """Speech utterances and silence-like clips, split into train and held-out."""
    rng = random.Random(seed)
    speech = speech_corpus(48, sample_rate, rng)
    import numpy as np

    np_rng = np.random.default_rng(seed)
    quiet = [
        torch.from_numpy(
            silence_like(SILENCE_KINDS[i % len(SILENCE_KINDS)], 3.0, sample_rate, rng, np_rng)
        )
        for i in range(24)
    ]
    return (speech[:36] + quiet[:18]), (speech[36:], quiet[18:])


def train_run(overrides, alpha, steps, data, seed, log_every):
    """Trains one codec; returns its sparsity curve and held-out switch quality."""
    torch.manual_seed(seed)
    with open(ROOT / "hparams" / "soundstream_dsl.yaml") as f:
        codec = load_hyperpyyaml(f, overrides)["codec"]
    mel, dsl_loss = MultiScaleMelLoss(16000), DSLLoss(alpha=alpha, beta=1.0)
    opt = torch.optim.Adam(codec.parameters(), lr=1e-3, betas=(0.5, 0.9))
    gen = torch.Generator().manual_seed(seed)
    train, (held_speech, held_quiet) = data
    curve = []
    for step in range(1, steps + 1):
        wav = crops(train, 1.0, 16000, 8, gen)
        out = codec(wav)
        loss = mel(out.wav_hat, wav[:, None]) + out.commitment + dsl_loss(out.dsl)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 10.0)
        opt.step()
        if step % log_every == 0 or step == steps:
            curve.append((step, activation_sparsity(out.dsl.masked.detach())))
    codec.eval()
    held = torch.cat(
        [crops(held_speech, 1.0, 16000, 24, gen), crops(held_quiet, 1.0, 16000, 12, gen)]
    )
    with torch.no_grad():
        _, dsl = codec.encode_features(held[:, None], mode="oracle")
    predicted, true = dsl.predicted.flatten(), dsl.distance.flatten()
    easy = true <= true.median()  # segments the light path handles best
    return {
        "sparsity_curve": curve,
        "spearman": float(spearmanr(predicted, true).statistic),
        "auroc": float(roc_auc_score(easy.numpy(), -predicted.numpy())),
        "held_out_mae": float((predicted - true).abs().mean()),
    }


def main(argv=None):
    """Runs both sweeps and writes the figures and ``sweep.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on a CPU")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--alphas", type=float, nargs="+", default=[1e-5, 1e-3, 1e-1, 1.0])
    parser.add_argument("--out", default="results/sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--placements",
        default=str(ROOT / "hparams" / "dsl_placements.yaml"),
        help="YAML of the DSL placements compared in Fig. 8",
    )
    args = parser.parse_args(argv)
    steps = args.steps or (40 if args.quick else 600)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = corpus(args.seed)
    log_every = max(1, steps // 10)
    start = time.time()

    sparsity = {}
    for alpha in args.alphas:
        run = train_run({}, alpha, steps, data, args.seed, log_every)
        sparsity[alpha] = run["sparsity_curve"]
        print(
            f"[fig6] alpha={alpha:g}: sparsity {run['sparsity_curve'][-1][1]:.1%} "
            f"after {steps} steps ({time.time() - start:.0f} s)",
            flush=True,
        )
    placement = {}
    for split, overrides in read_placements(args.placements).items():
        run = train_run(overrides, 1e-4, steps, data, args.seed, log_every)
        placement[split] = {k: run[k] for k in ("spearman", "auroc", "held_out_mae")}
        print(
            f"[fig8] split after {split}: Spearman {run['spearman']:.3f}, AUROC "
            f"{run['auroc']:.3f} ({time.time() - start:.0f} s)",
            flush=True,
        )

    fig6 = plots.sparsity_curves(
        {f"alpha={a:g}": ([s for s, _ in c], [v for _, v in c]) for a, c in sparsity.items()},
        out / "fig6_sparsity_vs_alpha.png",
    )
    fig8 = plots.quality_bars(
        {
            ("first conv" if s == 0 else f"block {s}"): {
                "Spearman": r["spearman"],
                "AUROC": r["auroc"],
            }
            for s, r in placement.items()
        },
        "switch prediction quality",
        out / "fig8_switch_placement.png",
        title="Switch placement vs prediction quality (Fig. 8)",
    )
    write_json(
        out / "sweep.json",
        {
            "steps": steps,
            "sparsity": {str(a): c for a, c in sparsity.items()},
            "placement": {str(s): r for s, r in placement.items()},
        },
    )
    print(f"wrote {fig6}, {fig8} and {out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
