#!/usr/bin/env python3
"""Recipe: train a SoundStream codec (with or without a Dynamic Switch Layer) on LibriTTS.

    python train.py hparams/codec_dsl.yaml --data_folder=/path/to/LibriTTS
    python train.py hparams/codec_baseline.yaml --data_folder=/path/to/LibriTTS

Several processes on CPU:

    torchrun --nproc_per_node=2 train.py hparams/codec_dsl.yaml \
        --distributed_backend=gloo --data_folder=...

Generator loss: multi-scale mel + hinge adversarial + feature matching (after
``adversarial_start_step``) + RVQ commitment + the DSL loss (Eq. 5). The
discriminators have their own optimizer. Each validation stage first calibrates
the switch threshold on the validation set (:func:`~speechbrain_dsl.evaluation.calibration.calibrate`:
the ``target_light_share`` quantile of the switch's predictions, or the
``calibration_max_mel_drop`` budget), so every checkpoint carries the threshold
it was validated with; with ``calibration_max_visqol_drop``, the checkpoint to be
tested is calibrated once more on ViSQOL and saved with its threshold. The test
stage evaluates the best checkpoint (lowest ``checkpoint_key``: the full-pass mel
distance, or for a retrofit the light pass's, which is what fine-tuning
improves) in full, light and mixed mode.

Before anything is built or prepared, every hyperparameter is checked against
``HPARAM_RULES`` (a ``ValueError`` names each bad ``key=value`` and what was
expected); the crop lengths are checked against the codec's hop and the losses'
FFT windows once the YAML is loaded, and a batch size that leaves an epoch
without optimizer steps is refused once the manifests exist, before training.
With ``step_log_file`` set, every optimizer step appends ``<step> <loss>`` to
that file (one file per process), e.g. to compare a resumed run with one that
never stopped.
"""

import contextlib
import logging
import math
import random
import sys
from pathlib import Path

import soundfile as sf
import speechbrain as sb
import torch
import torchaudio
from hyperpyyaml import load_hyperpyyaml
from scipy.stats import spearmanr
from speechbrain.utils.distributed import get_rank, if_main_process, run_on_main

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.evaluation.calibration import LightShare, MelBudget, VisqolBudget, calibrate
from speechbrain_dsl.evaluation.metrics import level_errors_db, mel_distance, si_snr, visqol
from speechbrain_dsl.nnet.dsl import activation_sparsity
from speechbrain_dsl.nnet.segments import length_mask
from speechbrain_dsl.training.checkpoints import update_checkpoint
from speechbrain_dsl.training.recipe_utils import (
    RunningMeans,
    boolean,
    check_hparams_file,
    check_manifest,
    integer,
    list_of,
    number,
    one_of,
    optional,
    quiet_third_party_loggers,
    refuse_distributed_debug,
    text,
    weights,
)
from speechbrain_dsl.training.retrofit import init_codec_from
from speechbrain_dsl.training.weight_average import RECOVERABLE, WeightAverage

logger = logging.getLogger(__name__)
sys.path.append(str(Path(__file__).resolve().parents[1]))
from libritts_prepare import find_libritts_root, prepare_libritts  # noqa: E402

LOSS_TERMS = (
    "mel",
    "stft",
    "level",
    "commitment",
    "adversarial",
    "feature",
    "dsl_compression",
    "dsl_switch",
    "dsl_light",
    "light_mel",
    "light_stft",
)
EVAL_MODES = ("full", "light", "mixed")
#: The codec state-dict entry that holds the DSL layer's ``threshold``.
THRESHOLD_KEY = "encoder.dsl.calibrated_threshold"
#: Validation metrics (lower is better) that can pick the best checkpoint.
CHECKPOINT_KEYS = ("mel_full", "mel_light", "mel_mixed")
#: What each hyperparameter must be (keys a YAML does not use are skipped).
HPARAM_RULES = {
    "seed": integer(),
    "train_subsets": list_of(text()),
    "valid_subsets": list_of(text()),
    "test_subsets": list_of(text()),
    "skip_prep": boolean(),
    "skip_bad_audio": boolean(),
    "train_subset_shares": weights(None, number(above=0)),
    "sample_rate": integer(low=1),
    "train_crop_seconds": number(above=0),
    "valid_max_seconds": number(above=0),
    "batch_size": integer(low=1),
    "valid_batch_size": integer(low=1),
    "num_workers": integer(low=0),
    "number_of_epochs": integer(low=1),
    "lr_generator": number(above=0),
    "lr_discriminator": number(above=0),
    "lr_switch_scale": number(above=0),
    "adam_betas": list_of(number(low=0, below=1)),
    "lr_decay_per_step": number(above=0, high=1),
    "max_grad_norm": number(above=0),
    "weight_average_decay": optional(number(above=0, below=1)),
    "adversarial_start_step": integer(low=0),
    "retrofit_distill_steps": integer(low=0),
    "init_from": optional(text()),
    "init_widen": boolean(),
    "augment_speech": boolean(),
    "ckpt_interval_minutes": number(low=0),
    "keep_checkpoints": integer(low=0),
    "valid_every_epochs": integer(low=1),
    "cpu_threads": integer(low=1),
    "mel_bands": integer(low=1),
    "loss_weights": weights(LOSS_TERMS, number(low=0)),
    "target_light_share": number(above=0, below=1),
    "calibration_max_mel_drop": optional(number(above=0)),
    "calibration_max_visqol_drop": optional(number(above=0)),
    "calibration_visqol_steps": integer(low=0),
    "valid_visqol": boolean(),
    "valid_visqol_max_utterances": optional(integer(low=1)),
    "test_visqol_max_utterances": optional(integer(low=1)),
    "level_check_dbfs": list_of(number(high=0)),
    "eval_modes": list_of(text(), EVAL_MODES),
    "use_tensorboard": boolean(),
    "segment_frames": integer(low=1),
    "light_channels": integer(low=1),
    "threshold": number(),
    "step_log_file": optional(text()),
    "checkpoint_key": one_of(*CHECKPOINT_KEYS),
    "switch_target": one_of("latent", "decoded"),
    "switch_sub_blocks": integer(low=1),
}


class CodecBrain(sb.Brain):
    """Trains codec and discriminator with separate optimizers.

    Every generator term is weighted by one ``loss_weights`` dict from the YAML;
    :class:`~speechbrain_dsl.nnet.losses.GANLoss` hides the real/fake plumbing.
    With ``retrofit_distill_steps > 0`` the first steps train only the DSL (mask,
    switch and light tail) against the frozen encoder, running encoder forwards
    only (retrofit stage a); later steps fine-tune everything end to end (stage b).

    The per-term means of an epoch (``term_means``, the logged ``train`` stats) are
    a checkpoint recoverable: a run resumed from an intra-epoch checkpoint logs
    the same epoch means as one that never stopped; under DDP they are the means
    over all processes.

    With ``weight_average_decay`` set, an exponential moving average of the
    codec's weights (:class:`~speechbrain_dsl.training.weight_average.WeightAverage`)
    follows training; validation, calibration and test run on it, so checkpoints
    are ranked, and packaged, by the averaged model.

    Arguments
    ---------
    *args, **kwargs
        As for ``sb.Brain``.
    train_sampler : torch.utils.data.Sampler, optional
        The sampler passed in ``train_loader_kwargs``: SpeechBrain calls
        ``set_epoch`` only on samplers it made (or wraps for DDP).
    calibration_loader : iterable, optional
        Batches with ``sig`` and ``wav`` (the validation set) that the switch is
        calibrated on; required for a codec with a DSL.
    eval_sizes : dict, optional
        ``{sb.Stage.VALID: utterances, sb.Stage.TEST: utterances}``: ViSQOL scores
        at most ``valid_visqol_max_utterances`` / ``test_visqol_max_utterances``
        evenly spaced ones (a stage without a size scores every one).
    """

    def __init__(
        self, *args, train_sampler=None, calibration_loader=None, eval_sizes=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        if train_sampler is not None:
            self.train_sampler = train_sampler
        self.calibration_loader = calibration_loader
        self.eval_sizes = dict(eval_sizes or {})
        self.term_means = RunningMeans()
        decay = getattr(self.hparams, "weight_average_decay", None)
        self.weight_average = None if decay is None else WeightAverage(self.codec, decay)
        if self.checkpointer is not None:  # optional: older checkpoints lack them
            self.checkpointer.add_recoverable("train_terms", self.term_means, optional_load=True)
            if self.weight_average is not None:
                self.checkpointer.add_recoverable(
                    RECOVERABLE, self.weight_average, optional_load=True
                )
        # validation and test run on the averaged weights: entered in on_stage_start,
        # closed in on_stage_end (the live weights back before anything is saved)
        self.evaluated_weights = contextlib.ExitStack()
        self._distilling = None

    @property
    def checkpoint_key(self):
        """The validation metric that ranks checkpoints (kept, tested, packaged)."""
        return getattr(self.hparams, "checkpoint_key", "mel_full")

    @property
    def codec(self):
        """The codec without its DDP wrapper."""
        codec = self.modules.codec
        return codec.module if hasattr(codec, "module") else codec

    def init_optimizers(self):
        """One optimizer and LR scheduler each for the generator and discriminator."""
        if self.grad_accumulation_factor != 1:
            raise ValueError("this recipe does not support grad_accumulation_factor != 1")
        self.optimizer_g = self.hparams.opt_class_generator(self._generator_param_groups())
        self.optimizer_d = self.hparams.opt_class_discriminator(
            self.modules.discriminator.parameters()
        )
        self.scheduler_g = self.hparams.sched_class(self.optimizer_g)
        self.scheduler_d = self.hparams.sched_class(self.optimizer_d)
        self.optimizers_dict = {"generator": self.optimizer_g, "discriminator": self.optimizer_d}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer_g", self.optimizer_g)
            self.checkpointer.add_recoverable("optimizer_d", self.optimizer_d)
            self.checkpointer.add_recoverable("scheduler_g", self.scheduler_g)
            self.checkpointer.add_recoverable("scheduler_d", self.scheduler_d)

    def _generator_param_groups(self):
        """The codec's parameters; the switch's in a group of its own if it learns faster.

        ``lr_switch_scale`` multiplies the switch's learning rate: a switch given a
        new target (``switch_target: decoded`` on a trained model) regresses it
        at the rate of an already converged codec otherwise. At 1 (the default)
        there is one group, as in checkpoints written before the option existed.
        """
        scale = getattr(self.hparams, "lr_switch_scale", 1.0)
        named = list(self.modules.codec.named_parameters())
        if scale == 1.0:
            return [p for _, p in named]
        switch = [p for n, p in named if ".switch." in f".{n}"]
        if not switch:
            raise ValueError(f"lr_switch_scale={scale}: the codec has no switch to scale")
        rest = [p for n, p in named if ".switch." not in f".{n}"]
        lr = self.hparams.lr_generator * scale
        return [{"params": rest}, {"params": switch, "lr": lr}]

    def _fit_valid(self, valid_set, epoch, enable):
        """Validates every ``valid_every_epochs`` epochs and after the last one.

        Validation takes ~30% of a CPU run's wall time (ViSQOL, level checks, every
        mode). An epoch without it still logs its training terms and saves an
        end-of-epoch checkpoint, so a killed run resumes where it stopped; that
        checkpoint holds no metric and is kept by recency only.
        """
        every = self.hparams.valid_every_epochs
        if valid_set is None or epoch % every == 0 or epoch >= self.hparams.epoch_counter.limit:
            return super()._fit_valid(valid_set, epoch, enable)
        stats_meta = {
            "epoch": epoch,
            "optimizer_step": self.optimizer_step,
            "lr_g": self.optimizer_g.param_groups[0]["lr"],
        }
        self.hparams.train_logger.log_stats(stats_meta=stats_meta, train_stats=self.train_stats)
        self.checkpointer.save_and_keep_only(
            meta={"epoch": epoch},
            min_keys=[self.checkpoint_key],
            num_to_keep=self.hparams.keep_checkpoints,
        )

    def fit_batch(self, batch):
        """One training step: DSL distillation (retrofit stage a) or codec + GAN."""
        wav, lens = batch.sig
        wav, lens = wav.to(self.device)[:, None], lens.to(self.device)
        if getattr(self.hparams, "augment_speech", False):
            wav, lens = self.hparams.rooms_and_noise(wav, lens)
        if self.hparams.gain is not None:
            wav = self.hparams.gain(wav, lens)
        distilling = self.optimizer_step < self.hparams.retrofit_distill_steps
        self._freeze_all_but_dsl(distilling)
        if distilling:
            terms = self.distillation_losses(wav, lens)
        else:
            terms = self.codec_step(wav, lens)
        self._step(self.optimizer_g, self.scheduler_g, terms["loss"], self.modules.codec)
        self.scaler.update()
        if self.weight_average is not None:
            self.weight_average.update()
        self.optimizer_step += 1
        loss = terms["loss"].detach().cpu()
        replaced = getattr(self.codec.quantizer, "replaced_codes", None)
        self.add_terms(terms, None if distilling else replaced)
        self._log_step(loss)
        return loss

    def add_terms(self, terms, replaced_codes=None):
        """Adds one step's terms (and ``codes_replaced``) to the epoch means, all or none.

        A step whose ``loss`` is not finite (tolerated up to ``nonfinite_patience``;
        its update is skipped) adds nothing, like SpeechBrain's stage loss: its
        other terms are often NaN too, and one NaN would make a term's epoch mean
        NaN. The counts stay equal across terms, so every mean is over the same steps.
        """
        if not torch.isfinite(terms["loss"].detach()):
            return
        for key in ("loss", *(k for k in terms if k != "loss")):
            value = terms[key]
            self.term_means.add(key, value.detach() if torch.is_tensor(value) else value)
        if replaced_codes is not None:
            self.term_means.add("codes_replaced", replaced_codes)

    def _log_step(self, loss):
        """Appends ``<optimizer_step> <loss>`` (exact: ``repr``) to ``step_log_file``.

        Rank ``r > 0`` writes ``<stem>.rank<r><suffix>``. A resumed run appends
        too: the steps between the last checkpoint and the kill appear twice.
        """
        path = getattr(self.hparams, "step_log_file", None)
        if not path:
            return
        path, rank = Path(path), get_rank() or 0
        if rank:
            path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{self.optimizer_step} {float(loss)!r}\n")

    def codec_step(self, wav, lens):
        """Discriminator step (once adversarial training is on), then generator terms."""
        with self.training_ctx:
            out = self.modules.codec(wav, lens)
        wav_hat = out.wav_hat[..., : wav.shape[-1]].float()
        adversarial = self.optimizer_step >= self.hparams.adversarial_start_step
        loss_d = None
        if adversarial:
            with self.training_ctx:
                loss_d = self.hparams.gan_loss.discriminator_loss(
                    wav_hat, wav, self.modules.discriminator
                )
            self._step(self.optimizer_d, self.scheduler_d, loss_d, self.modules.discriminator)
        terms = self.generator_losses(out, wav, wav_hat, lens, adversarial)
        if loss_d is not None:
            terms["loss_d"] = loss_d.detach()
        return terms

    def generator_losses(self, out, wav, wav_hat, lens, adversarial):
        """Generator terms and ``loss``, their sum weighted by ``loss_weights``."""
        terms = {
            "mel": self.modules.mel_loss(wav_hat, wav),
            "stft": self.modules.stft_loss(wav_hat, wav),
            "level": self.modules.level_loss(wav_hat, wav),
            "commitment": out.commitment,
        }
        if adversarial:
            with self.training_ctx:
                terms["adversarial"], terms["feature"] = self.hparams.gan_loss.generator_loss(
                    wav_hat, wav
                )
        if out.dsl is not None:
            light_terms, decoded = self.light_pass_terms(out.dsl.light_features, wav)
            target = None
            if self.switch_target == "decoded":
                # the full tail decoded as the light one is, with every codebook: the
                # training pass's wav_hat drops a random number of them
                full = self.decode_frozen(out.dsl.features.detach(), wav, grad=False)
                target = self.hparams.decode_gap(wav, full, decoded, lens)
            terms.update(self._dsl_terms(out.dsl, lens, target))
            terms.update(light_terms)
        terms["loss"] = self._weighted_sum(terms)
        return terms

    @property
    def switch_target(self):
        """``latent`` (Eq. 3: the tails' feature distance) or ``decoded`` (the decode gap)."""
        target = getattr(self.hparams, "switch_target", "latent")
        if target == "decoded" and getattr(self.hparams, "decode_gap", None) is None:
            raise ValueError(
                "switch_target: decoded needs a `decode_gap` in the YAML "
                "(DecodeGap, as in hparams/codec_dsl_retrofit.yaml)"
            )
        return target

    def light_pass_terms(self, light, wav):
        """``light_mel`` and ``light_stft``, the codec's losses on the light tail's decode,
        and that decode (``None`` when nothing needs it).

        The terms only when ``loss_weights`` gives them a weight. Eq. 4 alone distils
        the light tail's features towards the full tail's; these terms also teach the
        decoder to decode the light tail's features, and pass the reconstruction's
        gradient to the light tail. The light features are quantized with the
        codebooks frozen (no EMA update, no dead-code reset), straight through. With
        ``switch_target: decoded`` the decode is made (without a gradient if no
        term is weighted) for the switch's target.
        """
        weights = self.hparams.loss_weights
        weighted = weights.get("light_mel", 0) or weights.get("light_stft", 0)
        if not weighted and self.switch_target != "decoded":
            return {}, None
        decoded = self.decode_frozen(light, wav, grad=bool(weighted))
        if not weighted:
            return {}, decoded
        return {
            "light_mel": self.modules.mel_loss(decoded, wav),
            "light_stft": self.modules.stft_loss(decoded, wav),
        }, decoded

    def decode_frozen(self, features, wav, grad):
        """Decodes encoder ``features`` ``[B, D, T]`` quantized with every codebook, frozen
        (no EMA update, no dead-code reset, no quantizer dropout), straight through;
        cut to ``wav``'s length. ``grad``: keep the graph (else no gradient at all)."""
        codec = self.codec
        features = features.transpose(1, 2)
        quantizer_was_training = codec.quantizer.training
        codec.quantizer.eval()
        with torch.no_grad():
            quantized, _, _ = codec.quantizer(features)
        codec.quantizer.train(quantizer_was_training)
        quantized = features + (quantized - features).detach()
        with self.training_ctx, torch.set_grad_enabled(grad):
            decoded = codec.from_network(codec.decoder(quantized.transpose(1, 2)))
        return decoded[..., : wav.shape[-1]].float()

    def distillation_losses(self, wav, lens):
        """Retrofit stage a: the DSL's terms (Eqs. 2-4) from encoder forwards only."""
        with self.training_ctx:
            _, dsl = self.codec.encode_features(wav, lens)
        terms = self._dsl_terms(dsl, lens)
        terms["loss"] = self._weighted_sum(terms)
        return terms

    def _dsl_terms(self, dsl, lens, switch_target=None):
        parts = self.hparams.dsl_loss(dsl, lens, switch_target)
        return {f"dsl_{k}": v for k, v in parts.items() if k != "loss"}

    def _weighted_sum(self, terms):
        weights = self.hparams.loss_weights
        return sum(weights[k] * v for k, v in terms.items() if weights.get(k, 0) != 0)

    def _freeze_all_but_dsl(self, distilling):
        """Stage a trains mask, switch and light tail only; stage b trains everything."""
        if self._distilling == distilling:
            return
        self._distilling = distilling
        codec = self.codec
        codec.requires_grad_(not distilling)
        if distilling:
            dsl = codec.encoder.dsl
            for part in (dsl.mask, dsl.switch, dsl.light_tail):
                part.requires_grad_(True)

    def _step(self, optimizer, scheduler, loss, module):
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # always: under DDP every rank must join
        if not torch.isfinite(loss):
            self.check_loss_isfinite(loss)  # counts, and raises once patience is spent
            optimizer.zero_grad(set_to_none=True)
            return
        self.scaler.unscale_(optimizer)
        if self.skip_nonfinite_grads:
            self.check_gradients()
        torch.nn.utils.clip_grad_norm_(module.parameters(), self.max_grad_norm)
        self.scaler.step(optimizer)
        scheduler.step()

    # --- validation and test -------------------------------------------------
    def on_stage_start(self, stage, epoch=None):
        """Resets metric accumulators; calibrates the switch before validation.

        Validation and test run on the averaged weights (``weight_average_decay``);
        :meth:`on_stage_end` puts the live ones back before anything is saved.
        """
        self.stats = {"mel_loss": []}
        if stage != sb.Stage.TRAIN and self.weight_average is not None:
            self.evaluated_weights.enter_context(self.weight_average.applied())
        # ViSQOL on an evenly spaced subset (the sets are sorted by duration).
        cap = (
            self.hparams.valid_visqol_max_utterances
            if stage == sb.Stage.VALID
            else self.hparams.test_visqol_max_utterances
        )
        self.visqol_every = visqol_stride(self.eval_sizes.get(stage, 1), cap)
        self.position = 0
        subsets = {
            sb.Stage.VALID: self.hparams.valid_subsets,
            sb.Stage.TEST: self.hparams.test_subsets,
        }.get(stage, [])
        self.several_subsets = len(subsets) > 1
        if stage == sb.Stage.VALID and self.codec.has_dsl:
            self.calibrate_switch(self.calibration_policy())

    def calibration_policy(self, max_visqol_drop=None):
        """The YAML's calibration policy (see :mod:`speechbrain_dsl.evaluation.calibration`).

        ``calibration_max_mel_drop`` (a mean segment mel budget) if set, else the
        ``target_light_share`` quantile of the predictions. With ``max_visqol_drop``,
        that share is then halved (``calibration_visqol_steps`` times at most)
        while the mixed pass loses more ViSQOL on a validation subset, scored on
        the evenly spaced ``valid_visqol_max_utterances`` that validation scores.
        """
        max_mel_drop = getattr(self.hparams, "calibration_max_mel_drop", None)
        if max_mel_drop is None:
            policy = LightShare(self.hparams.target_light_share)
        else:
            policy = MelBudget(max_mel_drop)
        if max_visqol_drop is None:
            return policy
        every = visqol_stride(
            self.eval_sizes.get(sb.Stage.VALID, 1), self.hparams.valid_visqol_max_utterances
        )
        steps = getattr(self.hparams, "calibration_visqol_steps", 4)
        return VisqolBudget(max_visqol_drop, policy, steps=steps, every=every)

    def calibrate_switch(self, policy):
        """Sets the switch threshold calibrated on ``calibration_loader``; returns the
        :class:`~speechbrain_dsl.evaluation.calibration.Calibration`."""
        if self.calibration_loader is None:
            raise ValueError(
                "calibration_loader: expected the batches to calibrate the switch on "
                "(CodecBrain(..., calibration_loader=...)), got None"
            )
        batches = (
            (batch.sig[0].to(self.device), batch.sig[1].to(self.device), subsets_of(batch))
            for batch in self.calibration_loader
        )
        calibration = calibrate(self.codec, batches, policy)
        self.codec.encoder.dsl.threshold = calibration.threshold
        return calibration

    def calibrate_best_on_visqol(self):
        """Calibrates the checkpoint about to be tested on ViSQOL, and saves the threshold.

        The policy is :meth:`calibration_policy` with ``calibration_max_visqol_drop``.
        The threshold goes into that checkpoint's weights (a buffer of the codec)
        and ``CKPT.yaml`` records the budget, share and drops, so the test stage
        and a package of the checkpoint route alike. Done once per budget: a
        rerun finds the budget recorded and leaves the checkpoint as it is.
        """
        max_drop = self.hparams.calibration_max_visqol_drop
        best = self.checkpointer.find_checkpoint(min_key=self.checkpoint_key)
        if best.meta.get("visqol_budget") == max_drop:
            logger.info("%s: already calibrated for a ViSQOL drop of %s", best.path, max_drop)
            return
        self.checkpointer.load_checkpoint(best)
        averaged = self.weight_average
        with averaged.applied() if averaged is not None else contextlib.nullcontext():
            self.codec.eval()
            calibration = self.calibrate_switch(self.calibration_policy(max_drop))
        threshold, share, tried = calibration.threshold, calibration.share, calibration.tried
        update_checkpoint(
            best.path,
            meta={
                "visqol_budget": max_drop,
                "visqol_calibrated_share": share,
                "visqol_calibration_drops": {round(s, 6): round(d, 4) for s, d in tried.items()},
                "threshold": threshold,
            },
            tensors={"codec": {THRESHOLD_KEY: torch.tensor(threshold)}},
        )
        logger.info(
            "calibrated %s on ViSQOL (budget %s): threshold %.4f, light share %.1f%% "
            "(tried share: worst subset drop %s)",
            best.path,
            max_drop,
            threshold,
            100 * share,
            {f"{s:.3f}": f"{d:.3f}" for s, d in tried.items()},
        )

    @torch.no_grad()
    def evaluate_batch(self, batch, stage):
        """Decodes in every evaluation mode and accumulates quality metrics."""
        codec = self.codec
        codec.eval()
        wav, lens = batch.sig
        wav, lens = wav.to(self.device), lens.to(self.device)
        subsets = subsets_of(batch)
        positions = torch.arange(self.position, self.position + wav.shape[0])
        self.position += wav.shape[0]
        picked = (positions % self.visqol_every == 0).nonzero().flatten()
        use_visqol = self.hparams.valid_visqol and picked.numel() > 0
        decodes = {}
        for mode in self.hparams.eval_modes:
            encoded = codec.encode_with_routing(wav, lens, mode=mode)
            tokens = encoded.tokens
            wav_hat = codec.decode(tokens, lens)[..., : wav.shape[-1]].squeeze(1)
            decodes[mode] = wav_hat
            mel = mel_distance(wav_hat, wav, lens)
            self._add(f"mel_{mode}", mel)
            self._add(f"sisnr_{mode}", si_snr(wav_hat, wav, lens))
            if use_visqol:
                scores = visqol(wav_hat[picked], wav[picked], lens[picked])
                self._add(f"visqol_{mode}", scores)
            if self.several_subsets:  # e.g. generated vs recorded speech, side by side
                for i, subset in enumerate(subsets):
                    self._add(f"mel_{mode}@{subset}", mel[i])
                    if use_visqol and i in picked:
                        self._add(f"visqol_{mode}@{subset}", scores[picked.tolist().index(i)])
            if mode == "full":
                lsd = mel_distance(wav_hat, wav, lens, n_mels=None)
                self._add("lsd_full", lsd)
                self.stats["mel_loss"].append(float(self.modules.mel_loss(wav_hat, wav)))
                if use_visqol:  # per-utterance pairs: does each distance track ViSQOL?
                    self._add("pair_visqol", scores)
                    self._add("pair_mel", mel[picked])
                    self._add("pair_lsd", lsd[picked])
                    self._add("level_error_db", self.level_errors(wav[picked], lens[picked]))
            if mode == "mixed":
                routing = encoded.routing
                self._add("light_share", routing.route[routing.segment_mask].float())
                if self.several_subsets:  # one threshold, each class's share
                    for i, subset in enumerate(subsets):
                        route = routing.route[i][routing.segment_mask[i]].float()
                        self._add(f"light_share@{subset}", route)
        if codec.has_dsl:
            _, out = codec.encode_features(wav[:, None], lens, mode="oracle")
            steps = length_mask(lens, out.masked.shape[-1], wav.device, wav.shape[0])
            self._add(
                "sparsity", torch.tensor([activation_sparsity(out.masked.transpose(1, 2)[steps])])
            )
            self._add("predicted", out.predicted[out.segment_mask])
            self._add("true_distance", out.distance[out.segment_mask])
            gap = getattr(self.hparams, "decode_gap", None)
            if gap is not None and {"full", "light"} <= decodes.keys():
                # what the switch regresses under switch_target: decoded
                target = gap(wav, decodes["full"], decodes["light"], lens)
                segments = min(target.shape[1], out.segment_mask.shape[1])
                valid = out.segment_mask[:, :segments]
                self._add("pair_switch_predicted", out.predicted[:, :segments][valid])
                self._add("pair_switch_decode_gap", target[:, :segments][valid])
        return torch.tensor(self.stats["mel_loss"][-1])

    def level_errors(self, wav, lens):
        """|output level - input level| in dB, for ``wav`` set to each ``level_check_dbfs``."""
        return level_errors_db(self.codec, wav, lens, self.hparams.level_check_dbfs)

    def _add(self, key, values):
        self.stats.setdefault(key, []).extend(values.flatten().tolist())

    def summarize(self):
        """Means of the accumulated metrics, plus the switch's rank correlation."""
        summary = {}
        for key, values in self.stats.items():
            values = [v for v in values if v == v]  # drop NaN (silent references)
            if values and key not in ("predicted", "true_distance") and not key.startswith("pair_"):
                summary[key] = sum(values) / len(values)
        pairs = [v == v for v in self.stats.get("pair_visqol", [])]
        if sum(pairs) > 2:
            for name in ("mel", "lsd"):
                # Distances fall as ViSQOL rises: report -rho so 1 means "tracks ViSQOL".
                x = [v for v, ok in zip(self.stats[f"pair_{name}"], pairs) if ok]
                y = [v for v, ok in zip(self.stats["pair_visqol"], pairs) if ok]
                summary[f"visqol_spearman_{name}"] = -float(spearmanr(x, y).statistic)
        if len(self.stats.get("predicted", [])) > 2:
            summary["switch_spearman"] = float(
                spearmanr(self.stats["predicted"], self.stats["true_distance"]).statistic
            )
        if len(self.stats.get("pair_switch_decode_gap", [])) > 2:
            # the switch against the decode gap (its target under switch_target: decoded)
            summary["switch_spearman_decoded"] = float(
                spearmanr(
                    self.stats["pair_switch_predicted"], self.stats["pair_switch_decode_gap"]
                ).statistic
            )
        if self.codec.has_dsl:
            summary["threshold"] = self.codec.threshold
        return summary

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs metrics, saves checkpoints (VALID) and writes test metrics (TEST)."""
        if stage == sb.Stage.TRAIN:
            means = self.term_means.means()  # over all processes (a collective under DDP)
            self.train_stats = {"loss": means.pop("loss", stage_loss), **means}
            self.term_means.reset()
            return
        summary = self.summarize()
        self.evaluated_weights.close()  # live weights back before saving
        if stage == sb.Stage.VALID:
            stats_meta = {
                "epoch": epoch,
                "optimizer_step": self.optimizer_step,
                "lr_g": self.optimizer_g.param_groups[0]["lr"],
            }
            self.hparams.train_logger.log_stats(
                stats_meta=stats_meta, train_stats=self.train_stats, valid_stats=summary
            )
            if getattr(self.hparams, "tensorboard_logger", None) is not None and if_main_process():
                self.hparams.tensorboard_logger.log_stats(
                    stats_meta=stats_meta, train_stats=self.train_stats, valid_stats=summary
                )
            # Every pass's mel and ViSQOL ride along so a package can be chosen by
            # any of them (--min-key mel_light, --max-key visqol_full): the log-mel
            # distance is thrown by decoded noise in digitally silent pauses
            ranked = [f"{m}_{mode}" for m in ("mel", "visqol") for mode in EVAL_MODES]
            meta = {k: summary[k] for k in ranked + ["light_share"] if k in summary}
            meta["epoch"] = epoch
            self.checkpointer.save_and_keep_only(
                meta=meta,
                min_keys=[self.checkpoint_key],
                num_to_keep=self.hparams.keep_checkpoints,
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=summary,
            )
            if if_main_process():
                write_json(self.hparams.test_metrics_file, summary)


def subsets_of(batch):
    """The LibriTTS subset of each utterance of a batch (``<subset>/<spk>/<chap>/<wav>``)."""
    return [Path(path).parts[-4] for path in batch.wav]


def visqol_stride(size, cap):
    """Score every ``stride``-th of ``size`` utterances so at most ``cap`` are (None: all).

    Validation and the ViSQOL calibration score the same evenly spaced ones.

    Example
    -------
    >>> visqol_stride(293, 60), visqol_stride(293, None), visqol_stride(10, 60)
    (5, 1, 1)
    """
    return max(1, math.ceil(size / cap)) if cap else 1


def dataio_prepare(hparams, root):
    """Train/valid/test DynamicItemDatasets reading ``sig`` at the model's rate."""
    target_sr = hparams["sample_rate"]
    resamplers = {}

    def resample(audio, sr):
        if sr != target_sr:
            if sr not in resamplers:
                resamplers[sr] = torchaudio.transforms.Resample(sr, target_sr)
            audio = resamplers[sr](audio)
        return audio

    crop = int(hparams["train_crop_seconds"] * target_sr)

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def train_audio(wav):
        # A random crop; shorter utterances stay short, so PaddedBatch gives the
        # losses their true relative length instead of counting padding as audio.
        with sf.SoundFile(wav) as f:
            need = int(hparams["train_crop_seconds"] * f.samplerate)
            f.seek(random.randint(0, max(0, f.frames - need)))
            audio = resample(
                torch.from_numpy(f.read(need, dtype="float32", always_2d=True)).mean(1),
                f.samplerate,
            )
        return audio[:crop]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def eval_audio(wav):
        with sf.SoundFile(wav) as f:
            audio = f.read(
                int(hparams["valid_max_seconds"] * f.samplerate), dtype="float32", always_2d=True
            )
            return resample(torch.from_numpy(audio).mean(1), f.samplerate)

    datasets = {}
    for split in ("train", "valid", "test"):
        manifest = Path(hparams["manifest_folder"]) / f"{split}.json"
        check_manifest(manifest, ("wav", "duration"))  # a broken manifest is named
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=manifest,
            replacements={"data_root": str(root)},
            dynamic_items=[train_audio if split == "train" else eval_audio],
            output_keys=["id", "sig", "wav"],
        )
    for split in ("valid", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="duration")
    return datasets


def subset_share_sampler(dataset, root, shares, seed):
    """A sampler that draws each training subset's ``shares`` of the crops.

    With one crop per utterance and epoch, a subset's share is its share of the
    utterances (real recordings: 28% in the campaign's corpus). Here every
    utterance of subset ``s`` gets weight ``shares[s] / len(s)`` (shares are
    normalised), drawn with replacement, as many per epoch as there are
    utterances, so epochs, validation and checkpoints keep their cadence.
    SpeechBrain's reproducible sampler makes the draws a function of the seed and
    the epoch, so a resumed run sees the same crops.

    Arguments
    ---------
    dataset : DynamicItemDataset
        With a ``wav`` key under ``root``/<subset>/.
    root : Path
        The LibriTTS folder the subsets are in.
    shares : dict
        Subset name -> positive weight, for every training subset.
    seed : int

    Returns
    -------
    speechbrain.dataio.sampler.ReproducibleWeightedRandomSampler
    """
    from speechbrain.dataio.sampler import ReproducibleWeightedRandomSampler

    with dataset.output_keys_as(["wav"]):
        subsets = [Path(item["wav"]).relative_to(root).parts[0] for item in dataset]
    counts = {s: subsets.count(s) for s in dict.fromkeys(subsets)}
    if set(shares) != set(counts):
        raise ValueError(
            f"train_subset_shares={shares!r}: expected a share for each training subset "
            f"and no other ({', '.join(counts)})"
        )
    total = sum(shares.values())
    weights = [shares[s] / total / counts[s] for s in subsets]
    return ReproducibleWeightedRandomSampler(
        weights, num_samples=len(subsets), replacement=True, seed=seed
    )


def min_samples(hparams):
    """``(samples, why)``: the shortest audio the codec, losses and discriminator take.

    One hop of the codec, and more than half the largest FFT window of the
    losses and discriminator (their STFTs pad by reflection, which needs it).
    """
    n_ffts = [0]
    for name in ("mel_loss", "stft_loss", "discriminator"):
        for module in hparams[name].modules():
            n_ffts.append(getattr(module, "n_fft", 0) or 0)
            n_ffts.extend(getattr(module, "n_ffts", ()) or ())
    hop, n_fft = hparams["codec"].hop_length, max(int(n) for n in n_ffts)
    why = f"one codec hop ({hop} samples) and more than half the largest FFT window ({n_fft})"
    return max(hop, n_fft // 2 + 1), why


def check_lengths(hparams):
    """Refuses crop lengths the codec and losses cannot take (before data preparation)."""
    need, why = min_samples(hparams)
    rate = hparams["sample_rate"]
    for key in ("train_crop_seconds", "valid_max_seconds"):
        if int(hparams[key] * rate) < need:
            raise ValueError(
                f"{key}={hparams[key]!r}: expected at least {need / rate:.3f} s "
                f"({need} samples at sample_rate={rate}: {why})"
            )


def check_checkpoint_key(hparams):
    """Refuses a ``checkpoint_key`` whose pass is never validated."""
    key = hparams.get("checkpoint_key", "mel_full")
    mode = key.split("_", 1)[1]
    if mode not in hparams["eval_modes"]:
        raise ValueError(
            f"checkpoint_key={key!r}: expected a pass in eval_modes={hparams['eval_modes']!r}"
        )
    if mode != "full" and not hparams["codec"].has_dsl:
        raise ValueError(f"checkpoint_key={key!r}: expected mel_full for a codec without a DSL")


def check_steps_per_epoch(num_utterances, batch_size, manifest):
    """Refuses a run whose epochs would make no optimizer step (``drop_last=True``)."""
    processes = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    per_process = num_utterances // processes
    if per_process // batch_size == 0:
        raise ValueError(
            f"batch_size={batch_size}: expected at most {per_process}, the training utterances "
            f"per process ({manifest} holds {num_utterances}, {processes} process(es)); the "
            f"last incomplete batch is dropped, so an epoch would make no optimizer step"
        )


def main(argv):
    """Checks the hyperparameters, prepares data, trains, calibrates and tests."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    refuse_distributed_debug(run_opts)
    check_hparams_file(hparams_file, overrides, HPARAM_RULES)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_lengths(hparams)
    check_checkpoint_key(hparams)
    if (run_opts.get("device") or "cpu").startswith("cpu"):
        torch.set_num_threads(hparams["cpu_threads"])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    quiet_third_party_loggers()
    root = find_libritts_root(Path(hparams["data_folder"]))
    run_on_main(
        prepare_libritts,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["manifest_folder"],
            "train_subsets": hparams["train_subsets"],
            "valid_subsets": hparams["valid_subsets"],
            "test_subsets": hparams["test_subsets"],
            "skip_prep": hparams["skip_prep"],
            "skip_bad_audio": hparams["skip_bad_audio"],
        },
    )
    datasets = dataio_prepare(hparams, root)
    check_steps_per_epoch(
        len(datasets["train"]),
        hparams["batch_size"],
        Path(hparams["manifest_folder"]) / "train.json",
    )
    if hparams["use_tensorboard"] and if_main_process():
        hparams["tensorboard_logger"] = sb.utils.train_logger.TensorboardLogger(
            save_dir=hparams["tensorboard_logs"]
        )

    if hparams["init_from"]:
        # A checkpoint in save_folder, if any, still wins: fit() recovers it.
        fresh = init_codec_from(
            hparams["codec"], hparams["init_from"], widen=hparams.get("init_widen", False)
        )
        logger.info(
            "initialised the codec from %s (kept fresh: %d DSL tensors)",
            hparams["init_from"],
            len(fresh),
        )
    train_kwargs = {
        "batch_size": hparams["batch_size"],
        "num_workers": hparams["num_workers"],
        "shuffle": True,
        "drop_last": True,
    }
    if hparams.get("train_subset_shares"):
        train_kwargs["sampler"] = subset_share_sampler(
            datasets["train"], root, hparams["train_subset_shares"], hparams["seed"]
        )
        del train_kwargs["shuffle"]
    eval_kwargs = {"batch_size": hparams["valid_batch_size"], "num_workers": hparams["num_workers"]}
    brain = CodecBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        train_sampler=train_kwargs.get("sampler"),
        calibration_loader=sb.dataio.dataloader.make_dataloader(datasets["valid"], **eval_kwargs),
        eval_sizes={sb.Stage.VALID: len(datasets["valid"]), sb.Stage.TEST: len(datasets["test"])},
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=eval_kwargs,
    )
    key = brain.checkpoint_key
    if not any(key in c.meta for c in brain.checkpointer.list_checkpoints()):
        # e.g. a run whose checkpoints predate its checkpoint_key: never test the
        # weights in memory under the best checkpoint's name
        raise ValueError(
            f"checkpoint_key={key!r}: no checkpoint in {hparams['save_folder']} records it; "
            f"validate once more (a larger --number_of_epochs) or pass --checkpoint_key=mel_full"
        )
    if hparams.get("calibration_max_visqol_drop") is not None and brain.codec.has_dsl:
        run_on_main(brain.calibrate_best_on_visqol)
    brain.evaluate(datasets["test"], min_key=key, test_loader_kwargs=eval_kwargs)
    if torch.distributed.is_initialized():
        # Without this, gloo's threads can abort the interpreter at exit.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
