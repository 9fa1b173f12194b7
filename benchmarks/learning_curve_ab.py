"""Validation distance per training step: the previous recipe configuration vs today's default.

Trains the LibriTTS recipe's ``CodecBrain`` from scratch with each configuration
(see ``benchmarks/train_step.py`` for what ``previous`` means) on the same batches:
for each seed, the same random 1-s crops of the training subsets in the same order,
gains included. Every ``--every`` steps both models are scored on the same fixed
validation utterances (full pass): 80-band log-mel distance and the
linear-frequency log-spectral distance (lower is better). Prints one row per
checkpoint step with the mean over seeds, and, with ``--json``, every measurement.

    python benchmarks/learning_curve_ab.py --data data/corpus/LibriTTS \\
        [--steps 1000] [--every 100] [--seeds 1 2 3] [--model baseline|dsl] [--json]

One thread; the two configurations alternate step by step, so machine load falls
on both alike.
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

from speechbrain_dsl.evaluation.metrics import mel_distance  # noqa: E402

SAMPLE_RATE = 16000


def read(path, seconds=None, offset=0):
    """Mono float32 audio of ``path`` at 16 kHz (``seconds`` from ``offset`` samples)."""
    with sf.SoundFile(path) as f:
        f.seek(offset)
        frames = -1 if seconds is None else int(seconds * f.samplerate)
        audio = torch.from_numpy(f.read(frames, dtype="float32", always_2d=True)).mean(1)
        return torchaudio.functional.resample(audio, f.samplerate, SAMPLE_RATE)


def batches(files, batch_size, crop, seed):
    """Endless random crops: the same sequence for a seed, whatever trains on it."""
    rng = random.Random(seed)
    while True:
        wavs = []
        for path in rng.sample(files, batch_size):
            frames = sf.info(path).frames
            sr = sf.info(path).samplerate
            start = rng.randint(0, max(0, frames - int(crop * sr)))
            audio = read(path, crop, start)[: int(crop * SAMPLE_RATE)]
            wavs.append(torch.nn.functional.pad(audio, (0, int(crop * SAMPLE_RATE) - len(audio))))
        yield torch.stack(wavs)


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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            brains = {}
            for config in ("previous", "default"):
                torch.manual_seed(seed)
                brains[config] = build(config, args.model, "fp32", Path(tmp) / f"{config}{seed}")
            data = batches(files, args.batch, 1.0, seed)
            for step in range(1, args.steps + 1):
                wav = next(data)
                for brain in brains.values():
                    torch.manual_seed(seed * 100003 + step)  # same gains and dropout draws
                    brain.fit_batch(SimpleNamespace(sig=(wav, torch.ones(len(wav)))))
                if step % args.every == 0:
                    for config, brain in brains.items():
                        rows.append(
                            {"seed": seed, "step": step, "config": config, **validate(brain, valid)}
                        )
                    print(
                        f"seed {seed} step {step}: "
                        + ", ".join(
                            f"{r['config']} mel {r['mel']:.3f} lsd {r['lsd']:.3f}"
                            for r in rows[-2:]
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
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
            for c in ("previous", "default")
            for m in ("mel", "lsd")
        }
        print(
            f"| {step} | {mean['previous', 'mel']:.3f} | {mean['default', 'mel']:.3f} | "
            f"{mean['previous', 'lsd']:.3f} | {mean['default', 'lsd']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
