#!/usr/bin/env python3
"""Speaker-count probes on frozen DSL-codec embeddings: full vs light vs mixed (paper Fig. 5b).

    python train.py hparams/probe.yaml --data_folder=/path/to/LibriCount

LibriCount has one set, so every routing mode is scored by k-fold cross-validation:
a fresh probe per fold trains on the other folds and predicts its own, and every
mixture is predicted exactly once. Counting is classification over 0..``max_count``
speakers. Reported per mode, side by side: accuracy and mean absolute error overall
and per true count, the light share per count, the encoder's MACs, a confusion
matrix PNG per mode and a per-count accuracy chart. Features are encoded once per
mode and cached. Output: ``results.md``, ``results.json`` and PNGs in
``output_folder``.
"""

import sys
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from sklearn.metrics import confusion_matrix
from speechbrain.utils.distributed import run_on_main

from speechbrain_dsl.atomic import write_json, write_text
from speechbrain_dsl.data.audio import read_json
from speechbrain_dsl.evaluation import plots
from speechbrain_dsl.evaluation.efficiency import mode_macs_per_second, part_costs
from speechbrain_dsl.probing.brain import (
    feature_dataset,
    load_frozen_codec,
    probe_factory,
    run_key,
    side_by_side,
    train_probe,
)
from speechbrain_dsl.probing.embedding_cache import EmbeddingCache
from speechbrain_dsl.training.recipe_utils import (
    PROBE_RULES,
    check_hparams_file,
    integer,
    number,
    quiet_third_party_loggers,
    refuse_distributed_debug,
)

sys.path.append(str(Path(__file__).resolve().parents[1]))
from libricount_prepare import prepare_libricount  # noqa: E402


def count_metrics(predictions, max_count):
    """Accuracy and MAE, overall and per true count, and the confusion matrix."""
    y_pred = np.array([p for p, _ in predictions.values()])
    y_true = np.array([y for _, y in predictions.values()])
    per_count = {}
    for k in sorted(set(y_true.tolist())):
        chosen = y_true == k
        per_count[k] = {
            "accuracy": float((y_pred[chosen] == k).mean()),
            "mae": float(np.abs(y_pred[chosen] - k).mean()),
            "mixtures": int(chosen.sum()),
        }
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "mae": float(np.abs(y_pred - y_true).mean()),
        "per_count": per_count,
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(max_count + 1))).tolist(),
    }


HPARAM_RULES = {
    **PROBE_RULES,
    "folds": integer(low=2),
    "max_count": integer(low=1),
    "clip_seconds": number(above=0),
}


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    refuse_distributed_debug(run_opts)
    check_hparams_file(hparams_file, overrides, HPARAM_RULES)
    with open(hparams_file) as fin:
        hp = load_hyperpyyaml(fin, overrides)
    torch.set_num_threads(hp["cpu_threads"])
    sb.create_experiment_directory(hp["output_folder"], hparams_file, overrides)
    quiet_third_party_loggers()
    out = Path(hp["output_folder"])
    manifest_file = Path(hp["manifest_folder"]) / "libricount.json"
    run_on_main(
        prepare_libricount,
        kwargs={
            "data_folder": hp["data_folder"],
            "save_json": manifest_file,
            "folds": hp["folds"],
            "seed": hp["seed"],
            "skip_prep": hp["skip_prep"],
        },
    )
    manifest = read_json(manifest_file, "manifest", expect=dict)
    too_many = sorted({e["count"] for e in manifest.values() if e["count"] > hp["max_count"]})
    if too_many:
        raise ValueError(f"{manifest_file}: counts {too_many} exceed max_count={hp['max_count']}")

    # a codec recipe save folder: the checkpoint the run kept as best (its best_by)
    codec, checkpoint = load_frozen_codec(hp["model_yaml"], hp["codec_checkpoint"], hp["threshold"])
    cache = EmbeddingCache(
        hp["cache_folder"], codec, hp["encode_batch_size"], max_seconds=hp["clip_seconds"]
    )
    costs = part_costs(codec.encoder, codec.sample_rate) if codec.has_dsl else None
    n_classes = hp["max_count"] + 1
    make_probe = probe_factory(
        codec, n_classes, hp["features"], hp["probe_kwargs"], hp["token_probe"]
    )

    results = {}
    for mode in hp["modes"]:
        features = cache.features("all", manifest, mode)
        predictions = {}
        for fold in range(hp["folds"]):
            train = {u: e["count"] for u, e in manifest.items() if e["fold"] != fold}
            test = {u: e["count"] for u, e in manifest.items() if e["fold"] == fold}
            key = run_key(
                cache.fingerprint,
                mode,
                hp["features"],
                n_classes,
                train,
                {
                    k: hp[k]
                    for k in ("probe_kwargs", "number_of_epochs", "lr", "batch_size", "seed")
                },
            )
            brain = train_probe(
                make_probe,
                feature_dataset(features, train, hp["features"]),
                None,
                feature_dataset(features, test, hp["features"]),
                out / mode / f"fold{fold}",
                epochs=hp["number_of_epochs"],
                lr=hp["lr"],
                batch_size=hp["batch_size"],
                train_logger=hp["train_logger"],
                key=key,
                seed=hp["seed"] + fold,
            )
            predictions.update(brain.test_predictions)
        metrics = count_metrics(predictions, hp["max_count"])
        shares = [f["light_share"] for f in features.values()]
        share = None if shares[0] is None else float(np.mean(shares))
        metrics["light_share"] = share
        metrics["light_share_by_count"] = (
            None
            if share is None
            else {
                k: float(
                    np.mean(
                        [features[u]["light_share"] for u, e in manifest.items() if e["count"] == k]
                    )
                )
                for k in metrics["per_count"]
            }
        )
        metrics["encoder_mmacs_per_second"] = (
            None if costs is None else mode_macs_per_second(costs, mode, share) / 1e6
        )
        plots.confusion_matrix(
            metrics["confusion"],
            [str(k) for k in range(n_classes)],
            out / f"confusion_{mode}.png",
            title=f"Speaker count, {mode} embeddings",
        )
        results[mode] = metrics
        print(
            f"[{mode}] accuracy {metrics['accuracy']:.3f}, MAE {metrics['mae']:.3f}"
            + ("" if share is None else f", light share {share:.2f}")
        )

    modes = list(hp["modes"])
    counts = list(results[modes[0]]["per_count"])
    rows = {
        "accuracy": {m: results[m]["accuracy"] for m in modes},
        "MAE (speakers)": {m: results[m]["mae"] for m in modes},
        "light share": {m: results[m]["light_share"] for m in modes},
        "encoder MMAC/s": {m: results[m]["encoder_mmacs_per_second"] for m in modes},
    }
    per_count = {}
    for k in counts:
        per_count[f"{k} speakers: accuracy"] = {
            m: results[m]["per_count"][k]["accuracy"] for m in modes
        }
        per_count[f"{k} speakers: MAE"] = {m: results[m]["per_count"][k]["mae"] for m in modes}
        if results[modes[-1]]["light_share_by_count"] is not None:
            per_count[f"{k} speakers: light share"] = {
                m: (results[m]["light_share_by_count"] or {}).get(k) for m in modes
            }
    plots.per_class_bars(
        {m: [results[m]["per_count"][k]["accuracy"] for k in counts] for m in modes},
        [str(k) for k in counts],
        out / "per_count_accuracy.png",
        "accuracy",
        "Speaker-count accuracy per true count",
    )
    report = [
        "# Speaker counting on frozen codec embeddings",
        "",
        f"Codec: `{checkpoint}` (threshold {codec.threshold:.4f} for mixed). "
        f"{len(manifest)} mixtures, {hp['folds']}-fold cross-validation (every mixture "
        f"predicted once), features: {hp['features']}.",
        "",
        side_by_side(rows, modes),
        "",
        "## Per true count",
        "",
        side_by_side(per_count, modes),
        "",
        "![per-count accuracy](per_count_accuracy.png)",
        "",
        *[f"![confusion {m}](confusion_{m}.png)" for m in modes],
    ]
    write_json(
        out / "results.json",
        {"codec_checkpoint": str(checkpoint), "threshold": codec.threshold, "results": results},
    )
    write_text(out / "results.md", "\n".join(report) + "\n")
    print(report[4])
    print(f"report: {out / 'results.md'} (cache: {cache.encoded} mixtures encoded this run)")


if __name__ == "__main__":
    main(sys.argv[1:])
