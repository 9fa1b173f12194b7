"""Training and scoring probes on cached frozen-codec features (shared by the probe recipes).

A probe run is: cached features (:mod:`speechbrain_dsl.probing.embedding_cache`) ->
:class:`ProbeBrain` trains a fresh probe (a :class:`~speechbrain_dsl.lobes.probes.ConvProbe`
on embeddings, or a :class:`~speechbrain_dsl.lobes.probes.TokenClassifier` on
tokens), keeps the checkpoint with the best validation accuracy (when there is a
validation set) and predicts the test set. :func:`side_by_side` lays the results of
the routing modes next to each other.
"""

import hashlib
import json
import shutil
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.seed import seed_everything

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.inference.loading import find_codec_checkpoint, load_codec
from speechbrain_dsl.lobes.probes import ConvProbe
from speechbrain_dsl.training.checkpoints import AtomicCheckpointer

FEATURES = ("embedding", "tokens")


def feature_dataset(features, labels, kind="embedding"):
    """A ``DynamicItemDataset`` of cached features: output keys ``id``, ``feats``, ``label``.

    Arguments
    ---------
    features : dict
        ``{id: {"emb": [T, D], "tokens": [T, K], ...}}`` from the embedding cache.
    labels : dict
        ``{id: int}`` class index per id (ids missing here are left out).
    kind : str
        ``"embedding"`` (continuous encoder output) or ``"tokens"``.

    Example
    -------
    >>> feats = {"a": {"emb": torch.zeros(4, 2), "tokens": torch.zeros(4, 3, dtype=torch.int16)}}
    >>> item = feature_dataset(feats, {"a": 1}, "tokens")[0]
    >>> item["feats"].shape, item["feats"].dtype, item["label"]
    (torch.Size([4, 3]), torch.int64, 1)
    """
    if kind not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {kind!r}")
    data = {}
    for utt, label in labels.items():
        item = features[utt]
        feats = item["emb"].float() if kind == "embedding" else item["tokens"].long()
        data[utt] = {"feats": feats, "label": int(label)}
    dataset = DynamicItemDataset(data)
    dataset.set_output_keys(["id", "feats", "label"])
    return dataset


def load_frozen_codec(model_yaml, codec_checkpoint, threshold=None, min_key=None, max_key=None):
    """The codec a probe reads (eval mode) and the ``codec.ckpt`` it was loaded from.

    ``codec_checkpoint`` is a packaged folder, a recipe save folder, a CKPT+ folder or
    a ``codec.ckpt``; in a save folder ``min_key`` / ``max_key`` name the metric the
    best checkpoint has (see :func:`~speechbrain_dsl.training.checkpoints.find_codec_checkpoint`).
    ``threshold`` (if not None) replaces the calibrated one.
    """
    checkpoint = find_codec_checkpoint(codec_checkpoint, min_key=min_key, max_key=max_key)
    codec = load_codec(model_yaml, checkpoint)
    if threshold is not None:
        codec.threshold = threshold
    return codec, checkpoint


def probe_factory(codec, n_classes, features, probe_kwargs, token_probe):
    """A function building a fresh probe for ``codec``'s features.

    ``features`` "embedding" gives a :class:`ConvProbe` (``probe_kwargs``);
    "tokens" calls ``token_probe(num_codebooks, vocab_size, n_classes)``.
    """
    n_codebooks, vocab, emb_dim = codec.vocabulary.shape
    if features == "tokens":
        return lambda: token_probe(num_codebooks=n_codebooks, vocab_size=vocab, n_classes=n_classes)
    return lambda: ConvProbe(emb_dim, n_classes, **probe_kwargs)


class ProbeBrain(sb.Brain):
    """Trains ``modules.probe`` on cached features with NLL; records test predictions."""

    def compute_forward(self, batch, stage):
        """Log-probabilities ``[B, n_classes]`` of the padded feature batch."""
        feats, lengths = batch.feats
        return self.modules.probe(feats.to(self.device), lengths.to(self.device))

    def compute_objectives(self, log_probs, batch, stage):
        """NLL; evaluation stages also collect predictions."""
        labels = torch.as_tensor(batch.label, device=self.device)
        if stage != sb.Stage.TRAIN:
            self.predictions.extend(zip(batch.id, log_probs.argmax(-1).tolist(), labels.tolist()))
        return torch.nn.functional.nll_loss(log_probs, labels)

    def on_stage_start(self, stage, epoch=None):
        """Evaluation stages start with no predictions."""
        self.predictions = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs and checkpoints on validation; keeps test predictions."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        correct = sum(p == y for _, p, y in self.predictions)
        stats = {"loss": stage_loss, "accuracy": correct / max(1, len(self.predictions))}
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats({"epoch": epoch}, {"loss": self.train_loss}, stats)
            self.checkpointer.save_and_keep_only(meta=stats, max_keys=["accuracy"])
        else:
            self.test_predictions = {utt: (p, y) for utt, p, y in self.predictions}


def run_key(*parts):
    """A short hash of everything that defines a probe run (JSON-serialisable parts).

    Example
    -------
    >>> run_key("mixed", {"lr": 0.1}) == run_key("mixed", {"lr": 0.1}) != run_key("full", {"lr": 0.1})
    True
    """
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_probe(
    make_probe,
    train_set,
    valid_set,
    test_set,
    folder,
    *,
    epochs,
    lr,
    batch_size,
    train_logger,
    key,
    seed=0,
    device="cpu",
    brain_class=ProbeBrain,
    hparams=None,
):
    """Trains a fresh probe; returns the brain, whose ``test_predictions`` are
    ``{id: (predicted, true)}`` on ``test_set``.

    With a ``valid_set`` the checkpoint of best validation accuracy is tested; without
    one, the last epoch. Checkpoints go to ``folder``: an interrupted run with the
    same ``key`` (see :func:`run_key`: codec, features, data split, settings)
    resumes, a finished one is reused, and a folder holding a run with another key
    is cleared first, so a probe is never scored on features it was not trained for.
    The probe is initialised from ``seed``, so every mode and fold starts alike
    whatever ran before it. ``brain_class`` and extra ``hparams`` let a recipe
    change the objective.
    """
    folder = Path(folder)
    key_file = folder / "RUN_KEY"
    if folder.exists() and (not key_file.is_file() or key_file.read_text().strip() != key):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(key_file, key)
    seed_everything(seed)
    probe = make_probe()
    counter = EpochCounter(epochs)
    checkpointer = AtomicCheckpointer(folder, {"probe": probe, "counter": counter})
    brain = brain_class(
        modules={"probe": probe},
        opt_class=lambda params: torch.optim.Adam(params, lr=lr),
        hparams={"train_logger": train_logger, **(hparams or {})},
        run_opts={"device": device, "noprogressbar": True},
        checkpointer=checkpointer,
    )
    loader = {"batch_size": batch_size}
    brain.fit(
        counter,
        train_set,
        valid_set,
        train_loader_kwargs={**loader, "shuffle": True},
        valid_loader_kwargs=loader,
    )
    if valid_set is None:  # no validation: the final weights are the model
        checkpointer.save_and_keep_only(meta={"accuracy": 0.0}, num_to_keep=1)
    brain.evaluate(
        test_set,
        max_key="accuracy" if valid_set is not None else None,
        test_loader_kwargs=loader,
        progressbar=False,
    )
    return brain


def side_by_side(rows, modes, digits=3):
    """A markdown table: one row per metric, one column per mode.

    Example
    -------
    >>> print(side_by_side({"accuracy": {"full": 0.9, "mixed": 0.91}}, ["full", "mixed"]))
    | metric | full | mixed |
    |---|---|---|
    | accuracy | 0.900 | 0.910 |
    """
    lines = ["| metric | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for name, values in rows.items():
        cells = []
        for mode in modes:
            value = values.get(mode)
            cells.append(
                "-"
                if value is None
                else f"{value:.{digits}f}"
                if isinstance(value, float)
                else str(value)
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
