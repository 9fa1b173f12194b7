"""Validation distance per training step: the previous recipe configuration vs today's default.

Trains the LibriTTS recipe's ``CodecBrain`` from scratch with each configuration
(see ``benchmarks/train_step.py`` for what ``previous`` means) on the same batches:
for each seed, the same random 1-s crops of the training subsets in the same order,
gains included. Every ``--every`` steps both models are scored on the same fixed
validation utterances (full pass): 80-band log-mel distance and the
linear-frequency log-spectral distance (lower is better). Prints one row per
checkpoint step with the mean over seeds, and, with ``--json``, every measurement.

    python benchmarks/learning_curve_ab.py --data data/corpus/LibriTTS \\
        [--steps 1000] [--every 100] [--seeds 1 2 3] [--model baseline|dsl] \\
        [--out results/ab/curve] [--json]

One thread; the two configurations alternate step by step, so machine load falls
on both alike. The whole comparison is 5-7 CPU-hours on a 2-core EPYC, so with
``--out`` it resumes: every ``--every`` steps each seed's state (both models,
their optimizers, the batch sampler and the rows so far) is saved to
``<out>/seed<N>.pt``, and running the same command again continues from there
with results identical to an uninterrupted run. A larger ``--steps`` extends a
finished seed.
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import build  # noqa: E402

from speechbrain_dsl.atomic import atomic_path  # noqa: E402
from speechbrain_dsl.evaluation.metrics import mel_distance  # noqa: E402

SAMPLE_RATE = 16000


def read(path, seconds=None, offset=0):
    """Mono float32 audio of ``path`` at 16 kHz (``seconds`` from ``offset`` samples)."""
    with sf.SoundFile(path) as f:
        f.seek(offset)
        frames = -1 if seconds is None else int(seconds * f.samplerate)
        audio = torch.from_numpy(f.read(frames, dtype="float32", always_2d=True)).mean(1)
        return torchaudio.functional.resample(audio, f.samplerate, SAMPLE_RATE)


def batches(files, batch_size, crop, rng):
    """Endless random crops drawn with ``rng``: the same sequence for a seed, whatever trains."""
    while True:
        wavs = []
        for path in rng.sample(files, batch_size):
            frames = sf.info(path).frames
            sr = sf.info(path).samplerate
            start = rng.randint(0, max(0, frames - int(crop * sr)))
            audio = read(path, crop, start)[: int(crop * SAMPLE_RATE)]
            wavs.append(torch.nn.functional.pad(audio, (0, int(crop * SAMPLE_RATE) - len(audio))))
        yield torch.stack(wavs)


CONFIGS = ("previous", "default")


def brain_state(brain):
    """What a training step reads or changes: weights, buffers, optimizers, schedulers, step."""
    return {
        "modules": brain.modules.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in brain.optimizers_dict.items()},
        "schedulers": [brain.scheduler_g.state_dict(), brain.scheduler_d.state_dict()],
        "optimizer_step": brain.optimizer_step,
    }


def load_brain_state(brain, state):
    brain.modules.load_state_dict(state["modules"])
    for name, optimizer in brain.optimizers_dict.items():
        optimizer.load_state_dict(state["optimizers"][name])
    brain.scheduler_g.load_state_dict(state["schedulers"][0])
    brain.scheduler_d.load_state_dict(state["schedulers"][1])
    brain.optimizer_step = state["optimizer_step"]


def save_seed(path, step, rows, rng, brains):
    """``path`` atomically: a seed's rows, sampler state and both models at ``step``."""
    state = {
        "step": step,
        "rows": rows,
        "rng": rng.getstate(),
        "brains": {c: brain_state(b) for c, b in brains.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def validate(brain, valid):
    codec = brain.codec.eval()
    wav = valid
    tokens, _ = codec.encode(wav)
    wav_hat = codec.decode(tokens)[..., : wav.shape[-1]].squeeze(1)
    codec.train()
    return {
        "mel": float(mel_distance(wav_hat, wav).mean()),
        "lsd": float(mel_distance(wav_hat, wav, n_mels=None).mean()),
    }


def run_seed(args, seed, files, valid, tmp, out):
    """Trains both configurations on one seed's batches; its validation rows."""
    brains = {}
    for config in CONFIGS:
        torch.manual_seed(seed)
        brains[config] = build(config, args.model, "fp32", tmp / f"{config}{seed}")
    rng, start, rows = random.Random(seed), 0, []
    path = None if out is None else out / f"seed{seed}.pt"
    if path is not None and path.exists():
        try:
            state = torch.load(path, weights_only=False)
            for config, brain in brains.items():
                load_brain_state(brain, state["brains"][config])
        except Exception as err:
            raise SystemExit(
                f"error: cannot resume from {path} ({err}); delete it to start seed {seed} "
                f"again (written by another --model or version?)"
            ) from None
        rng.setstate(state["rng"])
        start, rows = state["step"], state["rows"]
        print(f"seed {seed}: resumed at step {start} from {path}", file=sys.stderr, flush=True)
    data = batches(files, args.batch, 1.0, rng)
    for step in range(start + 1, args.steps + 1):
        wav = next(data)
        for brain in brains.values():
            torch.manual_seed(seed * 100003 + step)  # same gains and dropout draws
            brain.fit_batch(SimpleNamespace(sig=(wav, torch.ones(len(wav)))))
        if step % args.every == 0 or step == args.steps:
            for config, brain in brains.items():
                rows.append(
                    {"seed": seed, "step": step, "config": config, **validate(brain, valid)}
                )
            print(
                f"seed {seed} step {step}: "
                + ", ".join(
                    f"{r['config']} mel {r['mel']:.3f} lsd {r['lsd']:.3f}" for r in rows[-2:]
                ),
                file=sys.stderr,
                flush=True,
            )
            if path is not None:
                save_seed(path, step, rows, rng, brains)
    return [r for r in rows if r["step"] <= args.steps]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a LibriTTS folder")
    parser.add_argument("--train-subsets", nargs="+", default=["train-clean-100", "train-recorded"])
    parser.add_argument("--valid-subsets", nargs="+", default=["dev-clean", "dev-recorded"])
    parser.add_argument("--model", choices=("dsl", "baseline"), default="baseline")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--valid-utterances", type=int, default=16)
    parser.add_argument(
        "--out", help="folder for each seed's state: the same command resumes from it"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.data)
    files = [str(p) for s in args.train_subsets for p in sorted((root / s).rglob("*.wav"))]
    valid_files = [p for s in args.valid_subsets for p in sorted((root / s).rglob("*.wav"))]
    if not files or not valid_files:
        raise SystemExit(
            f"error: no wavs under {root} for {args.train_subsets} / {args.valid_subsets}"
        )
    pick = random.Random(0).sample(valid_files, min(args.valid_utterances, len(valid_files)))
    valid = torch.stack(
        [
            torch.nn.functional.pad(a, (0, 4 * SAMPLE_RATE - len(a)))
            for a in (read(p, 4.0) for p in pick)
        ]
    )
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows += run_seed(args, seed, files, valid, Path(tmp), out)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"codec_{args.model}.yaml, batch {args.batch} x 1 s, seeds {args.seeds}: "
        f"validation distance (full pass, {len(pick)} utterances x 4 s), mean over seeds"
    )
    print("| step | previous mel | default mel | previous LSD | default LSD |")
    print("|---|---|---|---|---|")
    for step in sorted({r["step"] for r in rows}):
        mean = {
            (c, m): statistics.mean(r[m] for r in rows if r["step"] == step and r["config"] == c)
            for c in CONFIGS
            for m in ("mel", "lsd")
        }
        print(
            f"| {step} | {mean['previous', 'mel']:.3f} | {mean['default', 'mel']:.3f} | "
            f"{mean['previous', 'lsd']:.3f} | {mean['default', 'lsd']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
