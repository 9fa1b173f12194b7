#!/usr/bin/env python3
"""Keyword spotting probes on frozen DSL-codec embeddings: full vs light vs mixed (paper Fig. 5).

    python train.py hparams/probe.yaml --data_folder=/path/to/speech_commands_v0.02

The codec (``model_yaml`` + ``codec_checkpoint``; default: the packaged reference
model in ``pretrained/dsl-codec-16k``) is frozen. For every routing mode in
``modes`` its embeddings (or tokens, ``features: tokens``) are computed once and
cached, a fresh probe (Fig. 5a: conv blocks, pooling, linear) is trained on the
train split, the checkpoint with the best validation accuracy is tested, and the
modes are printed side by side: accuracy, per-class accuracy (table, bar chart),
confusion matrix (PNG), the light share per class and the encoder's MACs.

``gated_compression: True`` adds the paper's supervised special case: an
always-on KWS probe whose Gated Compression gate (trained on keyword vs
``_silence_``/``_unknown_`` labels) lets negatives exit before the rest of the
probe runs. It reports the early-exit share, the accuracy with and without the
gate (same weights) and the probe MACs saved. Everything goes to
``output_folder``: ``results.md``, ``results.json`` and the PNGs.
"""

import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from sklearn.metrics import confusion_matrix
from speechbrain.utils.distributed import run_on_main

from speechbrain_dsl.atomic import write_json, write_text
from speechbrain_dsl.data.audio import read_json
from speechbrain_dsl.evaluation import plots
from speechbrain_dsl.evaluation.efficiency import count_macs, mode_macs_per_second, part_costs
from speechbrain_dsl.lobes.probes import ConvProbe
from speechbrain_dsl.nnet.gated_compression import (
    GatedCompression,
    GatedCompressionLoss,
    GatedNetwork,
)
from speechbrain_dsl.probing.brain import (
    ProbeBrain,
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
    boolean,
    check_hparams_file,
    number,
    one_of,
    quiet_third_party_loggers,
    refuse_distributed_debug,
)

sys.path.append(str(Path(__file__).resolve().parents[1]))
from speech_commands_prepare import COMMANDS, prepare_speech_commands  # noqa: E402

SPLITS = ("train", "valid", "test")
NEGATIVE = "_negative_"  # the GC variant's one class for _silence_ and _unknown_


def kws_metrics(predictions, labels):
    """Accuracy, keyword accuracy, per-class accuracy and the confusion matrix."""
    y_pred = [p for p, _ in predictions.values()]
    y_true = [y for _, y in predictions.values()]
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    per_class = {
        label: float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None
        for i, label in enumerate(labels)
    }  # None: no test clip of that class
    keyword_rows = [i for i, label in enumerate(labels) if label in COMMANDS]
    keyword_hits = sum(matrix[i, i] for i in keyword_rows)
    return {
        "accuracy": float(matrix.trace() / max(1, matrix.sum())),
        "keyword_accuracy": float(keyword_hits / max(1, matrix[keyword_rows].sum())),
        "per_class": per_class,
        "confusion": matrix.tolist(),
        "test_utterances": int(matrix.sum()),
    }


def light_share_by_group(features, manifest):
    """Mean light share of the test clips of each group (keywords, _unknown_, _silence_)."""
    groups = {}
    for utt, entry in manifest.items():
        share = features[utt]["light_share"]
        if share is None:
            continue
        group = "keywords" if entry["label"] in COMMANDS else entry["label"]
        groups.setdefault(group, []).append(share)
    return {group: sum(v) / len(v) for group, v in sorted(groups.items())}


class GatedKWSBrain(ProbeBrain):
    """The GC variant: NLL over keywords + negative, plus the gate's BCE and L1 terms."""

    def compute_forward(self, batch, stage):
        """``(log-probs, gate logits, passed)``; in inference negatives exit early."""
        feats, lengths = batch.feats
        return self.modules.probe(feats.to(self.device), lengths.to(self.device))

    def compute_objectives(self, outputs, batch, stage):
        """Task NLL (on every sample in training) + Gated Compression loss."""
        log_probs, logits, passed = outputs
        labels = torch.as_tensor(batch.label, device=self.device)
        is_keyword = labels != self.hparams.negative_index
        gate_loss = self.hparams.gc_loss(self.modules.probe.last_masked, logits, is_keyword)
        if stage == sb.Stage.TRAIN:
            return torch.nn.functional.nll_loss(log_probs, labels) + gate_loss
        predicted = torch.where(
            passed, log_probs.argmax(-1), torch.full_like(labels, self.hparams.negative_index)
        )
        self.predictions.extend(zip(batch.id, predicted.tolist(), labels.tolist()))
        self.exits.extend(zip(batch.id, (~passed).tolist()))
        return gate_loss

    def on_stage_start(self, stage, epoch=None):
        """Evaluation stages start with no predictions or exits."""
        super().on_stage_start(stage, epoch)
        self.exits = []


def run_gated_compression(hp, features, manifests, folder, fingerprint):
    """Trains and scores the always-on GC keyword spotter on one mode's features."""
    labels = list(COMMANDS) + [NEGATIVE]
    negative = labels.index(NEGATIVE)
    targets = {
        s: {
            u: labels.index(e["label"]) if e["label"] in COMMANDS else negative
            for u, e in manifests[s].items()
        }
        for s in SPLITS
    }
    datasets = {s: feature_dataset(features[s], targets[s], "embedding") for s in SPLITS}
    emb_dim = next(iter(features["train"].values()))["emb"].shape[-1]

    def make_network():
        probe = ConvProbe(emb_dim, len(labels), **hp["probe_kwargs"])
        gate = GatedCompression(probe.front.block[0].out_channels, threshold=hp["gc_threshold"])
        return GatedNetwork(probe.front, gate, probe.back)

    negatives = sum(t == negative for t in targets["train"].values())
    positives = len(targets["train"]) - negatives
    # balanced gate: without it, mostly-negative data teaches the gate to exit keywords too
    pos_weight = negatives / max(1, positives) if hp["gc_balance"] else None
    gc_loss = GatedCompressionLoss(hp["gc_alpha"], hp["gc_beta"], pos_weight)
    key = run_key(
        fingerprint,
        "gated_compression",
        targets["train"],
        targets["valid"],
        {
            k: hp[k]
            for k in (
                "probe_kwargs",
                "number_of_epochs",
                "lr",
                "batch_size",
                "gc_threshold",
                "gc_alpha",
                "gc_beta",
                "gc_balance",
                "seed",
            )
        },
    )
    brain = train_probe(
        make_network,
        datasets["train"],
        datasets["valid"],
        datasets["test"],
        folder / "save",
        epochs=hp["number_of_epochs"],
        lr=hp["lr"],
        batch_size=hp["batch_size"],
        train_logger=hp["train_logger"],
        key=key,
        seed=hp["seed"],
        brain_class=GatedKWSBrain,
        hparams={"negative_index": negative, "gc_loss": gc_loss},
    )
    gated = kws_metrics(brain.test_predictions, labels)
    exits = dict(brain.exits)
    is_negative = {u: targets["test"][u] == negative for u in exits}
    network = brain.modules.probe

    # the same weights with the gate always open: the no-gate reference
    threshold = network.gate.threshold
    network.gate.threshold = 0.0
    brain.evaluate(
        datasets["test"],
        max_key="accuracy",
        progressbar=False,
        test_loader_kwargs={"batch_size": hp["batch_size"]},
    )
    open_gate = kws_metrics(brain.test_predictions, labels)
    open_exits = sum(dict(brain.exits).values())  # 0: with the gate open nothing exits

    # MACs executed by the probe on the test set, gate on vs off
    macs = {}
    network.eval()
    for name, value in (("gated", threshold), ("no_gate", 0.0)):
        network.gate.threshold = value
        total = 0
        for item in datasets["test"]:
            feats = item["feats"][None]
            total += count_macs(network, feats, torch.ones(1))
        macs[name] = total / len(datasets["test"])
    network.gate.threshold = threshold
    negatives = [u for u in exits if is_negative[u]]
    positives = [u for u in exits if not is_negative[u]]
    return {
        "labels": labels,
        "accuracy": gated["accuracy"],
        "accuracy_no_gate": open_gate["accuracy"],
        "keyword_accuracy": gated["keyword_accuracy"],
        "keyword_accuracy_no_gate": open_gate["keyword_accuracy"],
        "early_exit_share": sum(exits.values()) / max(1, len(exits)),
        "open_gate_exits": open_exits,
        "negatives_exited": sum(exits[u] for u in negatives) / max(1, len(negatives)),
        "keywords_exited": sum(exits[u] for u in positives) / max(1, len(positives)),
        "probe_macs_per_clip": macs["gated"],
        "probe_macs_per_clip_no_gate": macs["no_gate"],
        "probe_macs_saved": 1.0 - macs["gated"] / max(1.0, macs["no_gate"]),
        "confusion": gated["confusion"],
    }


HPARAM_RULES = {
    **PROBE_RULES,
    "task": one_of(12, 35, "12", "35"),
    "gated_compression": boolean(),
    "gc_threshold": number(low=0, high=1),
    "gc_alpha": number(low=0),
    "gc_beta": number(low=0),
    "gc_balance": boolean(),
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
    run_on_main(
        prepare_speech_commands,
        kwargs={
            "data_folder": hp["data_folder"],
            "save_folder": hp["manifest_folder"],
            "task": str(hp["task"]),
            "skip_prep": hp["skip_prep"],
        },
    )
    manifests = {
        s: read_json(Path(hp["manifest_folder"]) / f"{s}.json", "manifest", expect=dict)
        for s in SPLITS
    }
    labels = sorted({e["label"] for e in manifests["train"].values()})
    targets = {s: {u: labels.index(e["label"]) for u, e in manifests[s].items()} for s in SPLITS}

    # a codec recipe save folder: the checkpoint the run kept as best (its best_by)
    codec, checkpoint = load_frozen_codec(hp["model_yaml"], hp["codec_checkpoint"], hp["threshold"])
    cache = EmbeddingCache(hp["cache_folder"], codec, hp["encode_batch_size"], max_seconds=1.0)
    costs = part_costs(codec.encoder, codec.sample_rate) if codec.has_dsl else None
    make_probe = probe_factory(
        codec, len(labels), hp["features"], hp["probe_kwargs"], hp["token_probe"]
    )

    results, all_features = {}, {}
    for mode in hp["modes"]:
        features = {s: cache.features(s, manifests[s], mode) for s in SPLITS}
        all_features[mode] = features
        datasets = {s: feature_dataset(features[s], targets[s], hp["features"]) for s in SPLITS}
        key = run_key(
            cache.fingerprint,
            mode,
            hp["features"],
            labels,
            targets["train"],
            targets["valid"],
            {k: hp[k] for k in ("probe_kwargs", "number_of_epochs", "lr", "batch_size", "seed")},
        )
        brain = train_probe(
            make_probe,
            datasets["train"],
            datasets["valid"],
            datasets["test"],
            out / mode / "save",
            epochs=hp["number_of_epochs"],
            lr=hp["lr"],
            batch_size=hp["batch_size"],
            train_logger=hp["train_logger"],
            key=key,
            seed=hp["seed"],
        )
        metrics = kws_metrics(brain.test_predictions, labels)
        shares = light_share_by_group(features["test"], manifests["test"])
        share = (
            sum(f["light_share"] for f in features["test"].values()) / len(features["test"])
            if shares
            else None
        )
        metrics.update(
            light_share=share,
            light_share_by_group=shares,
            encoder_mmacs_per_second=None
            if costs is None
            else mode_macs_per_second(costs, mode, share) / 1e6,
        )
        plots.confusion_matrix(
            metrics["confusion"],
            labels,
            out / f"confusion_{mode}.png",
            title=f"Keyword spotting, {mode} embeddings",
        )
        results[mode] = metrics
        print(
            f"[{mode}] accuracy {metrics['accuracy']:.3f}"
            + ("" if share is None else f", light share {share:.2f}")
        )

    modes = list(hp["modes"])
    rows = {
        "accuracy": {m: results[m]["accuracy"] for m in modes},
        "keyword accuracy (10 words)": {m: results[m]["keyword_accuracy"] for m in modes},
        "light share (test clips)": {m: results[m]["light_share"] for m in modes},
        "encoder MMAC/s": {m: results[m]["encoder_mmacs_per_second"] for m in modes},
    }
    for group in ("keywords", "_unknown_", "_silence_"):
        rows[f"light share, {group}"] = {
            m: results[m]["light_share_by_group"].get(group) for m in modes
        }
    per_class = {label: {m: results[m]["per_class"][label] for m in modes} for label in labels}
    plots.per_class_bars(
        {m: [results[m]["per_class"][lab] or 0.0 for lab in labels] for m in modes},
        labels,
        out / "per_class_accuracy.png",
        "accuracy",
        "Per-class keyword accuracy by routing mode",
    )
    report = [
        "# Keyword spotting on frozen codec embeddings",
        "",
        f"Codec: `{checkpoint}` (threshold {codec.threshold:.4f} for mixed). "
        f"Task: {hp['task']} classes, features: {hp['features']}, "
        f"{results[modes[0]]['test_utterances']} test clips.",
        "",
        side_by_side(rows, modes),
        "",
        "## Per-class accuracy",
        "",
        side_by_side(per_class, modes),
        "",
        "![per-class](per_class_accuracy.png)",
        "",
        *[f"![confusion {m}](confusion_{m}.png)" for m in modes],
    ]
    if hp["gated_compression"]:
        gc_mode = hp["gc_mode"]
        if gc_mode not in all_features:
            raise ValueError(f"gc_mode {gc_mode!r} must be one of the probed modes {modes}")
        gc = run_gated_compression(
            hp,
            all_features[gc_mode],
            manifests,
            out / "gated_compression",
            f"{cache.fingerprint}/{gc_mode}",
        )
        plots.confusion_matrix(
            gc["confusion"],
            gc["labels"],
            out / "confusion_gc.png",
            title=f"Always-on KWS with a Gated Compression gate ({gc_mode})",
        )
        results["gated_compression"] = {**gc, "mode": gc_mode}
        report += [
            "",
            f"## Gated Compression (always-on KWS, {gc_mode} embeddings)",
            "",
            "Keywords vs one negative class (`_silence_` + `_unknown_`); the gate decides "
            "before the rest of the probe runs, and negatives exit there.",
            "",
            "| | with gate | gate always open |",
            "|---|---|---|",
            f"| accuracy (11 classes) | {gc['accuracy']:.3f} | {gc['accuracy_no_gate']:.3f} |",
            f"| keyword accuracy | {gc['keyword_accuracy']:.3f} | "
            f"{gc['keyword_accuracy_no_gate']:.3f} |",
            f"| probe MACs per clip (mask and gate included) | {gc['probe_macs_per_clip']:,.0f} | "
            f"{gc['probe_macs_per_clip_no_gate']:,.0f} |",
            "",
            f"Early exit: {gc['early_exit_share']:.1%} of test clips "
            f"({gc['negatives_exited']:.1%} of negatives, {gc['keywords_exited']:.1%} of "
            f"keywords); probe MACs saved: {gc['probe_macs_saved']:.1%}.",
            "",
            "![confusion GC](confusion_gc.png)",
        ]
    write_json(
        out / "results.json",
        {
            "labels": labels,
            "codec_checkpoint": str(checkpoint),
            "threshold": codec.threshold,
            "results": results,
        },
    )
    write_text(out / "results.md", "\n".join(report) + "\n")
    print("\n".join(report[4:5]))
    print(f"report: {out / 'results.md'} (cache: {cache.encoded} clips encoded this run)")


if __name__ == "__main__":
    main(sys.argv[1:])
