"""Seconds per training step of the LibriTTS codec recipe: the previous configuration vs today's.

``previous`` is the recipe as it was (SoundStream waveform decoder, 64 mel bands,
no STFT loss, SoundStream's STFT + multi-scale waveform discriminators from step
2,000, no gain augmentation, the absolute dead-code rule); ``default``
is the recipe's YAML as shipped. Both run the recipe's own ``CodecBrain.fit_batch``
on the same random batch (``--batch`` x ``--seconds`` s of audio at 16 kHz), with
the same thread count, in one process, timed round-robin; the median of
``--repeats`` steps is reported. A ``generator`` step is the codec's forward and
backward with the reconstruction losses; a ``gan`` step adds the discriminator's
step and the adversarial and feature terms.

The breakdown times each part's forward + backward on its own (same batch):
encoder (with RVQ and, for the DSL, both tails and the switch), decoder, the
reconstruction losses and the discriminator (its own step plus the generator-side
pass). ``--precision bf16`` runs the same steps under bf16 autocast.

``--variants`` instead times the default configuration's generator and GAN steps
under CPU settings, round-robin in one process: ``fp32`` (1 thread, the
reference), ``bf16`` (autocast), ``threads2`` (2 intra-op threads) and
``compile`` (``torch.compile`` of the codec).

    python benchmarks/train_step.py [--json] [--repeats 5] [--model dsl|baseline]
        [--precision fp32|bf16] [--threads 1]
    python benchmarks/train_step.py --variants fp32 bf16 threads2 compile
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from hyperpyyaml import load_hyperpyyaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "LibriTTS" / "codec"
sys.path.insert(0, str(RECIPE))
from train import CodecBrain  # noqa: E402

PREVIOUS = {
    "decoder_type": "soundstream",
    "discriminator_type": "soundstream",
    "mel_bands": 64,
    "adversarial_start_step": 2000,
    "gain": None,
    "rvq_dead_code_usage": None,
    "loss_weights": {
        "mel": 1.0,
        "stft": 0.0,
        "level": 0.0,
        "commitment": 1.0,
        "adversarial": 1.0,
        "feature": 10.0,
        "dsl_compression": 1e-4,
        "dsl_switch": 1.0,
        "dsl_light": 1.0,
    },
}


def build(config, model, precision, out):
    """A CodecBrain for ``config`` (``previous`` or ``default``) with fresh weights."""
    overrides = {"data_folder": "unused", "output_folder": str(out)}
    if config == "previous":
        overrides.update(PREVIOUS)
        if model == "baseline":
            overrides["loss_weights"] = {
                k: v for k, v in PREVIOUS["loss_weights"].items() if not k.startswith("dsl")
            }
    torch.manual_seed(0)
    with open(RECIPE / "hparams" / f"codec_{model}.yaml") as f:
        hparams = load_hyperpyyaml(f, overrides)
    brain = CodecBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts={"device": "cpu", "precision": precision},
    )
    brain.init_optimizers()
    brain.optimizer_step = 0
    brain.term_sums, brain.term_counts = {}, {}
    return brain


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step(brain, batch, gan):
    brain.optimizer_step = brain.hparams.adversarial_start_step if gan else 0
    brain.fit_batch(batch)


def breakdown(brain, wav, lens):
    """Forward + backward seconds of each part alone: encoder, decoder, losses, discriminator."""
    codec, hp = brain.codec, brain.hparams
    parts = {}

    def encoder():
        emb, dsl = codec.encode_features(wav, lens)
        q, _, commit = codec.quantizer(emb.transpose(1, 2))
        loss = q.square().mean() + commit
        if dsl is not None:
            loss = loss + brain._weighted_sum(brain._dsl_terms(dsl, lens))
        loss.backward()

    with torch.no_grad():
        emb = codec.encode_features(wav, lens)[0]
    emb = emb.detach().requires_grad_(True)
    with torch.no_grad():
        fake = codec.decoder(emb)[..., : wav.shape[-1]] / codec.input_scale
    fake = fake.detach().requires_grad_(True)

    def decoder():
        (codec.decoder(emb) ** 2).mean().backward()

    def losses():
        (
            brain.modules.mel_loss(fake, wav)
            + brain.modules.stft_loss(fake, wav)
            + brain.modules.level_loss(fake, wav)
        ).backward()

    def discriminator():
        hp.gan_loss.discriminator_loss(fake, wav).backward()
        adversarial, feature = hp.gan_loss.generator_loss(fake, wav)
        (adversarial + feature).backward()

    with brain.training_ctx:
        for name, fn in (
            ("encoder", encoder),
            ("decoder", decoder),
            ("losses", losses),
            ("discriminator", discriminator),
        ):
            parts[name] = timed(fn)
    return parts


def compare_variants(args):
    """Generator/GAN step seconds of the default configuration under CPU settings."""
    wav = 0.1 * torch.randn(
        args.batch, int(16000 * args.seconds), generator=torch.Generator().manual_seed(0)
    )
    batch = SimpleNamespace(sig=(wav, torch.ones(args.batch)))
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        brains = {}
        for variant in args.variants:
            brain = build(
                "default", args.model, "bf16" if variant == "bf16" else "fp32", Path(tmp) / variant
            )
            if variant == "compile":
                brain.modules.codec = torch.compile(brain.modules.codec)
            brains[variant] = brain
        threads = {v: 2 if v == "threads2" else args.threads for v in brains}
        for variant, brain in brains.items():  # warm-up (and compilation)
            torch.set_num_threads(threads[variant])
            step(brain, batch, gan=False)
            step(brain, batch, gan=True)
        for _ in range(args.repeats):
            for variant, brain in brains.items():
                torch.set_num_threads(threads[variant])
                for kind in ("generator", "gan"):
                    times.setdefault((variant, kind), []).append(
                        timed(lambda brain=brain, kind=kind: step(brain, batch, kind == "gan"))
                    )
    rows = [
        {
            "config": "default",
            "variant": v,
            "step": k,
            "seconds": statistics.median(t),
            "model": args.model,
            "batch": f"{args.batch} x {args.seconds:g} s",
        }
        for (v, k), t in times.items()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    reference = args.variants[0]
    print(
        f"default codec_{args.model}.yaml, batch {args.batch} x {args.seconds:g} s, median of "
        f"{args.repeats} steps; ratios against {reference}"
    )
    print("| variant | generator step (s) | GAN step (s) | generator ratio | GAN ratio |")
    print("|---|---|---|---|---|")
    for variant in args.variants:
        g, d = (statistics.median(times[variant, k]) for k in ("generator", "gan"))
        g0, d0 = (statistics.median(times[reference, k]) for k in ("generator", "gan"))
        print(f"| {variant} | {g:.2f} | {d:.2f} | {g / g0:.2f}x | {d / d0:.2f}x |")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("dsl", "baseline"), default="baseline")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--configs", nargs="+", choices=("previous", "default"), default=["previous", "default"]
    )
    parser.add_argument("--variants", nargs="+", choices=("fp32", "bf16", "threads2", "compile"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.variants:
        return compare_variants(args)
    gen = torch.Generator().manual_seed(0)
    samples = int(16000 * args.seconds)
    wav = 0.1 * torch.randn(args.batch, samples, generator=gen)
    lens = torch.ones(args.batch)
    batch = SimpleNamespace(sig=(wav, lens))
    configs = tuple(args.configs)
    rows, times, parts = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        brains = {c: build(c, args.model, args.precision, Path(tmp) / c) for c in configs}
        for brain in brains.values():  # warm-up: k-means init, allocator, one GAN step
            step(brain, batch, gan=False)
            step(brain, batch, gan=True)
        for _ in range(args.repeats):
            for config, brain in brains.items():
                for kind in ("generator", "gan"):
                    times.setdefault((config, kind), []).append(
                        timed(lambda brain=brain, kind=kind: step(brain, batch, kind == "gan"))
                    )
        for config, brain in brains.items():
            parts[config] = breakdown(brain, wav[:, None], lens)
    for (config, kind), values in times.items():
        rows.append(
            {
                "config": config,
                "step": kind,
                "seconds": statistics.median(values),
                "model": args.model,
                "precision": args.precision,
                "threads": args.threads,
                "batch": f"{args.batch} x {args.seconds:g} s",
                **({"breakdown": parts[config]} if kind == "gan" else {}),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"codec_{args.model}.yaml, batch {args.batch} x {args.seconds:g} s, {args.precision}, "
        f"{args.threads} thread(s), median of {args.repeats} steps"
    )
    print(
        "| config | generator step (s) | GAN step (s) | GAN / generator | "
        "encoder | decoder | losses | discriminator |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for config in configs:
        g, d = times[config, "generator"], times[config, "gan"]
        g, d = statistics.median(g), statistics.median(d)
        p = parts[config]
        print(
            f"| {config} | {g:.2f} | {d:.2f} | {d / g:.2f}x | {p['encoder']:.2f} | "
            f"{p['decoder']:.2f} | {p['losses']:.2f} | {p['discriminator']:.2f} |"
        )
    if len(configs) == 2:
        prev, new = (statistics.median(times[c, "gan"]) for c in configs)
        print(f"GAN step: default is {prev / new:.2f}x cheaper than previous")
    return 0


if __name__ == "__main__":
    sys.exit(main())
