#!/usr/bin/env python3
"""Keyword spotting on discrete audio tokens, DASB style: the tokenizer is chosen in YAML.

    python train.py hparams/tokens_dsl.yaml --data_folder=/path/to/speech_commands_v0.02 \
        --tokenizer_source=/path/to/packaged/dsl-codec

The recipe only uses the tokenizer interface SpeechBrain's codec wrappers share:
``encode(wavs, lengths) -> (tokens [B, T, K], emb)``, ``num_codebooks``,
``vocab_size``, ``sample_rate`` and (optionally) ``get_pretrained_embeddings``.
Swapping the tokenizer (ours with or without DSL, or SpeechBrain's Encodec / DAC
wrappers where their weights are available) is a change of the ``tokenizer`` entry
in the YAML. The tokenizer is frozen; a ``TokenClassifier`` is trained on the
12-class task (10 words, _silence_, _unknown_).
"""

import json
import os
import sys
from pathlib import Path

import soundfile as sf
import speechbrain as sb
import torch
import torchaudio
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

sys.path.append(str(Path(__file__).resolve().parents[1]))
from speech_commands_prepare import prepare_speech_commands  # noqa: E402


class TokenKWSBrain(sb.Brain):
    """Frozen tokenizer -> tokens -> TokenClassifier."""

    def compute_forward(self, batch, stage):
        wav, lens = batch.sig
        wav, lens = wav.to(self.device), lens.to(self.device)
        with torch.no_grad():
            tokens, _ = self.hparams.tokenizer.encode(wav, lens)
        return self.modules.probe(tokens, lens)

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
            self.hparams.train_logger.log_stats({"Epoch loaded": self.hparams.epoch_counter.current},
                                                test_stats=stats)
            if if_main_process():
                path = Path(self.hparams.output_folder) / "test_metrics.json"
                path.with_suffix(".tmp").write_text(json.dumps(stats, indent=2))
                os.replace(path.with_suffix(".tmp"), path)


def dataio_prepare(hparams):
    """Datasets reading 1-s clips (or _silence_ slices) at the tokenizer's rate."""
    rate = hparams["tokenizer"].sample_rate
    label_encoder = sb.dataio.encoder.CategoricalEncoder()

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def audio(wav, start, stop):
        samples, sr = sf.read(wav, start=start, stop=None if stop < 0 else stop,
                              dtype="float32", always_2d=True)
        samples = torch.from_numpy(samples).mean(1)
        if sr != rate:
            samples = torchaudio.functional.resample(samples, sr, rate)
        return samples[:rate]

    @sb.utils.data_pipeline.takes("label")
    @sb.utils.data_pipeline.provides("label", "label_encoded")
    def label(name):
        yield name
        yield label_encoder.encode_label_torch(name)

    datasets = {}
    for split in ("train", "valid", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            Path(hparams["manifest_folder"]) / f"{split}.json",
            dynamic_items=[audio, label], output_keys=["id", "sig", "label_encoded"])
    label_encoder.load_or_create(Path(hparams["save_folder"]) / "labels.txt",
                                 from_didatasets=[datasets["train"]], output_key="label")
    return datasets


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    torch.set_num_threads(hparams["cpu_threads"])
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    run_on_main(prepare_speech_commands, kwargs={
        "data_folder": hparams["data_folder"], "save_folder": hparams["manifest_folder"],
        "task": "12"})
    datasets = dataio_prepare(hparams)
    brain = TokenKWSBrain(modules=hparams["modules"], opt_class=hparams["opt_class"],
                          hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    loader = {"batch_size": hparams["batch_size"]}
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs={**loader, "shuffle": True}, valid_loader_kwargs=loader)
    brain.evaluate(datasets["test"], max_key="accuracy", test_loader_kwargs=loader)


if __name__ == "__main__":
    main(sys.argv[1:])
