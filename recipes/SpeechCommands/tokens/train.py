#!/usr/bin/env python3
"""Keyword spotting on discrete audio tokens, written the way DASB recipes are.

    python train.py hparams/tokens_dsl.yaml --data_folder=/path/to/speech_commands_v0.02 \
        --tokenizer_source=../../../pretrained/dsl-codec-16k

1. Extraction, once: every clip becomes tokens through the tokenizer's
   ``sig_to_tokens(wavs, lens, num_codebooks=K)`` and is saved under
   ``tokens_folder`` (``<split>.pt``: utterance id -> ``[T, K]``), together with
   ``get_pretrained_embeddings(vocab_size, K, device=...)`` (``embeddings.pt``).
   A later run reads them back unless the tokenizer (its weights and settings),
   ``K`` or the audio changed (``extraction.json`` holds the key).
2. Training: a ``TokenClassifier`` on the saved tokens of the ``K`` codebooks,
   built with the saved codebook vectors as its embedding table
   (``pretrained``: ``K * vocab_size`` rows, codebook-major); 12 classes (10
   words, _silence_, _unknown_).

The recipe knows the tokenizer only through DASB's contract (``sample_rate``,
``sig_to_tokens``, ``get_pretrained_embeddings``), so the codec is swapped by
changing the ``tokenizer`` lines of the YAML, for any tokenizer with that
contract (ours, DASB's Encodec / DAC / SpeechTokenizer wrappers):
``hparams/tokens_baseline.yaml`` is ``hparams/tokens_dsl.yaml`` with the
``tokenizer_source`` and ``tokenizer_mode`` lines set for the baseline codec.

Before anything is built or prepared, every hyperparameter is checked against
``HPARAM_RULES`` (a ``ValueError`` names each bad ``key=value``); manifests are
read with :func:`~speechbrain_dsl.training.recipe_utils.check_manifest` (a broken one is
named) and third-party loggers are kept out of ``log.txt``.
"""

import hashlib
import logging
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_dsl.atomic import atomic_path, write_json
from speechbrain_dsl.data.audio import read_json
from speechbrain_dsl.probing.embedding_cache import audio_key, codec_fingerprint, read_clip
from speechbrain_dsl.training.recipe_utils import (
    boolean,
    check_hparams_file,
    check_manifest,
    integer,
    number,
    one_of,
    quiet_third_party_loggers,
    refuse_distributed_debug,
    text,
)

sys.path.append(str(Path(__file__).resolve().parents[1]))
from speech_commands_prepare import SPLITS, prepare_speech_commands  # noqa: E402

logger = logging.getLogger(__name__)
#: Fields the recipe reads from each manifest entry.
MANIFEST_FIELDS = ("wav", "start", "stop", "label")
#: What each hyperparameter must be (keys a YAML does not use are skipped: a YAML
#: with another tokenizer may have no tokenizer_source / tokenizer_mode).
HPARAM_RULES = {
    "seed": integer(),
    "cpu_threads": integer(low=1),
    "num_codebooks": integer(low=1),
    "vocab_size": integer(low=1),
    "extract_batch_size": integer(low=1),
    "tokenizer_source": text(),
    "tokenizer_mode": one_of("full", "light", "mixed"),
    "number_of_epochs": integer(low=1),
    "batch_size": integer(low=1),
    "lr": number(above=0),
    "emb_dim": integer(low=1),
    "pretrain_embeddings": boolean(),
    "n_classes": integer(low=2),
}


class TokenKWSBrain(sb.Brain):
    """Saved tokens -> TokenClassifier."""

    def compute_forward(self, batch, stage):
        tokens, lens = batch.tokens
        return self.modules.model(tokens.to(self.device), lens.to(self.device))

    def compute_objectives(self, log_probs, batch, stage):
        labels = batch.label_encoded.data.to(self.device).flatten()
        if stage != sb.Stage.TRAIN:
            predicted = log_probs.argmax(-1)
            self.correct += int((predicted == labels).sum())
            self.total += labels.numel()
        return torch.nn.functional.nll_loss(log_probs, labels)

    def on_stage_start(self, stage, epoch=None):
        self.correct = self.total = 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {"loss": stage_loss, "accuracy": self.correct / max(1, self.total)}
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats({"epoch": epoch}, {"loss": self.train_loss}, stats)
            self.checkpointer.save_and_keep_only(meta=stats, max_keys=["accuracy"])
        else:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            if if_main_process():
                write_json(Path(self.hparams.output_folder) / "test_metrics.json", stats)


def extraction_key(tokenizer, manifests, num_codebooks, vocab_size):
    """What the saved tokens depend on: the tokenizer, its settings, K and the audio."""
    digest = hashlib.sha256()
    settings = {
        name: getattr(tokenizer, name, None)
        for name in ("mode", "threshold", "num_codebooks", "sample_rate")
    }
    digest.update(
        f"{type(tokenizer).__qualname__}|{settings}|{num_codebooks}|{vocab_size}".encode()
    )
    digest.update(codec_fingerprint(tokenizer).encode())
    for split in SPLITS:
        entries = check_manifest(manifests[split], MANIFEST_FIELDS)
        for utt in sorted(entries):
            digest.update(f"{split}|{utt}|{audio_key(entries[utt])}".encode())
    return digest.hexdigest()[:16]


def _saved_key(meta):
    """The key of the saved extraction, or None (none, or a record that does not parse)."""
    if not meta.is_file():
        return None
    try:
        return read_json(meta, "extraction record", expect=dict).get("key")
    except ValueError as err:
        logger.warning(f"{err}; extracting the tokens again")
        return None


def extract_tokens(tokenizer, manifests, folder, num_codebooks, vocab_size, batch_size, device):
    """Tokens of every clip (``sig_to_tokens``) and the codebook vectors, saved once.

    Returns
    -------
    tokens : dict
        ``{split: {utterance id: LongTensor [T, K]}}``.
    embeddings : torch.Tensor
        ``[K * vocab_size, D]``, from ``get_pretrained_embeddings``.
    """
    folder = Path(folder)
    key = extraction_key(tokenizer, manifests, num_codebooks, vocab_size)
    meta = folder / "extraction.json"
    if _saved_key(meta) == key:
        return (
            {split: torch.load(folder / f"{split}.pt") for split in SPLITS},
            torch.load(folder / "embeddings.pt"),
        )
    rate = tokenizer.sample_rate
    tokens = {}
    for split in SPLITS:
        entries = check_manifest(manifests[split], MANIFEST_FIELDS)
        ids = sorted(entries)
        tokens[split] = {}
        for first in range(0, len(ids), batch_size):
            batch = ids[first : first + batch_size]
            clips = [
                read_clip(entries[u]["wav"], rate, entries[u]["start"], entries[u]["stop"])[:rate]
                for u in batch
            ]
            sizes = torch.tensor([len(clip) for clip in clips])
            wavs = torch.zeros(len(batch), int(sizes.max()))
            for row, clip in enumerate(clips):
                wavs[row, : len(clip)] = clip
            lens = sizes / sizes.max()
            batch_tokens = tokenizer.sig_to_tokens(
                wavs.to(device), lens.to(device), num_codebooks=num_codebooks
            ).cpu()
            for utt, utt_tokens in zip(batch, sb.utils.data_utils.undo_padding(batch_tokens, lens)):
                tokens[split][utt] = torch.as_tensor(utt_tokens, dtype=torch.long)
        with atomic_path(folder / f"{split}.pt", suffix=".pt") as tmp:
            torch.save(tokens[split], tmp)
    embeddings = tokenizer.get_pretrained_embeddings(vocab_size, num_codebooks, device=device).cpu()
    with atomic_path(folder / "embeddings.pt", suffix=".pt") as tmp:
        torch.save(embeddings, tmp)
    write_json(
        meta,
        {"key": key, "num_codebooks": num_codebooks, "vocab_size": vocab_size, "sample_rate": rate},
    )
    return tokens, embeddings


def make_model(model_class, embeddings=None):
    """The YAML's ``TokenClassifier`` (``model_class``), built with ``pretrained=embeddings``.

    ``TokenClassifier`` checks that the vectors fit its table and copies them
    (same layout); a mismatch names the YAML keys that fix it.
    """
    try:
        return model_class(pretrained=embeddings)
    except ValueError as err:
        raise ValueError(
            f"{err}: set emb_dim to the tokenizer's vector size, or pretrain_embeddings: False"
        ) from None


def dataio_prepare(hparams, manifests, tokens):
    """Datasets of saved tokens (``[T, K]`` per utterance) and encoded labels."""
    label_encoder = sb.dataio.encoder.CategoricalEncoder()

    @sb.utils.data_pipeline.takes("label")
    @sb.utils.data_pipeline.provides("label", "label_encoded")
    def label(name):
        yield name
        yield label_encoder.encode_label_torch(name)

    datasets = {}
    for split in SPLITS:

        @sb.utils.data_pipeline.takes("id")
        @sb.utils.data_pipeline.provides("tokens")
        def token_pipeline(utt, table=tokens[split]):
            return table[utt]

        datasets[split] = sb.dataio.dataset.DynamicItemDataset(
            check_manifest(manifests[split], MANIFEST_FIELDS),
            dynamic_items=[token_pipeline, label],
            output_keys=["id", "tokens", "label_encoded"],
        )
    label_encoder.load_or_create(
        Path(hparams["save_folder"]) / "labels.txt",
        from_didatasets=[datasets["train"]],
        output_key="label",
    )
    return datasets


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    refuse_distributed_debug(run_opts)
    check_hparams_file(hparams_file, overrides, HPARAM_RULES)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    torch.set_num_threads(hparams["cpu_threads"])
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    quiet_third_party_loggers()
    manifests = prepare_speech_commands(
        hparams["data_folder"], hparams["manifest_folder"], task="12", skip_prep=True
    )
    run_on_main(
        prepare_speech_commands,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["manifest_folder"],
            "task": "12",
        },
    )
    # The model joins once the embeddings are extracted (fit() moves, wraps and recovers it).
    brain = TokenKWSBrain(
        modules={},
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    tokenizer = hparams["tokenizer"].to(brain.device)
    extract = dict(
        tokenizer=tokenizer,
        manifests=manifests,
        folder=hparams["tokens_folder"],
        num_codebooks=hparams["num_codebooks"],
        vocab_size=hparams["vocab_size"],
        batch_size=hparams["extract_batch_size"],
        device=brain.device,
    )
    run_on_main(extract_tokens, kwargs=extract)
    tokens, embeddings = extract_tokens(**extract)  # reads back what the main process saved
    model = make_model(hparams["model"], embeddings if hparams["pretrain_embeddings"] else None)
    brain.modules["model"] = model.to(brain.device)
    brain.checkpointer.add_recoverable("model", model)  # a checkpoint's weights win over them
    datasets = dataio_prepare(hparams, manifests, tokens)
    loader = {"batch_size": hparams["batch_size"]}
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs={**loader, "shuffle": True},
        valid_loader_kwargs=loader,
    )
    brain.evaluate(datasets["test"], max_key="accuracy", test_loader_kwargs=loader)


if __name__ == "__main__":
    main(sys.argv[1:])
