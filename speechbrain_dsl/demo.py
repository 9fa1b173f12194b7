"""A quick end-to-end look at the DSL codec: ``make demo``.

1. Speaks a few dozen sentences with espeak-ng (many voices, pauses, silence and
   noise between them) and resamples them to 16 kHz.
2. Trains the default DSL codec (``hparams/soundstream_dsl.yaml``) for a few
   steps: multi-scale mel loss + RVQ commitment + the DSL loss (Eq. 5).
3. Calibrates the switch threshold for a target light share, then reports for
   held-out speech and for silence/noise clips: light share, mel distance of
   full / light / mixed reconstructions, and executed encoder MACs.
4. Prints the efficiency table of the model's parts.

A few minutes of CPU training leave audio quality at its floor: this shows the
pipeline working, not a model worth listening to.

    python -m speechbrain_dsl.demo [--steps 150] [--seed 0]
"""

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio
from hyperpyyaml import load_hyperpyyaml
from tqdm import tqdm

from speechbrain_dsl.data.espeak import (
    ACCENTS,
    ESPEAK_SAMPLE_RATE,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    synthesize,
)
from speechbrain_dsl.efficiency import executed_macs, format_table, part_costs
from speechbrain_dsl.nnet.dsl import DSLLoss
from speechbrain_dsl.metrics import mel_distance
from speechbrain_dsl.nnet.losses import MultiScaleMelLoss

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her.",
    "A rainbow is a division of white light into many beautiful colors.",
    "When the sunlight strikes raindrops in the air, they act as a prism.",
    "The boy was there when the sun rose over the quiet harbour.",
    "Numbers like forty two and seven hundred are easy to say.",
    "Turn left at the next corner, then walk straight for two minutes.",
)


def speech_corpus(count, sample_rate, rng):
    """``count`` utterances of espeak-ng speech with pauses, at ``sample_rate``."""
    clips = []
    for _ in range(count):
        variant = rng.choice(FEMALE_VARIANTS + MALE_VARIANTS)
        audio = synthesize(
            rng.choice(SENTENCES),
            f"{rng.choice(ACCENTS)}+{variant}",
            rate=rng.randint(130, 210),
            pitch=rng.randint(25, 75),
            pitch_range=rng.randint(30, 80),
        )
        pad = [np.zeros(int(rng.uniform(0.1, 0.6) * ESPEAK_SAMPLE_RATE), np.float32)]
        audio = np.concatenate(pad + [audio] + pad) * rng.uniform(0.3, 0.9)
        wav = torchaudio.functional.resample(
            torch.from_numpy(audio), ESPEAK_SAMPLE_RATE, sample_rate
        )
        clips.append(wav)
    return clips


def quiet_clip(seconds, sample_rate, gen):
    """Silence-like audio: digital silence, low noise, or a quiet hum."""
    n = int(seconds * sample_rate)
    kind = int(torch.randint(3, (1,), generator=gen))
    if kind == 0:
        return torch.zeros(n)
    if kind == 1:
        return 0.003 * torch.randn(n, generator=gen)
    t = torch.arange(n) / sample_rate
    return 0.01 * torch.sin(2 * torch.pi * 50 * t)


def crops(clips, seconds, sample_rate, count, gen):
    """``count`` random crops of ``seconds`` from ``clips`` as a [count, S] batch."""
    n = int(seconds * sample_rate)
    out = []
    for _ in range(count):
        clip = clips[int(torch.randint(len(clips), (1,), generator=gen))]
        if len(clip) <= n:
            clip = torch.nn.functional.pad(clip, (0, n - len(clip) + 1))
        start = int(torch.randint(len(clip) - n, (1,), generator=gen))
        out.append(clip[start : start + n])
    return torch.stack(out)


def evaluate(codec, wav, label):
    """Light share, mel distance per mode, and executed encoder MACs on ``wav``."""
    codec.eval()
    row = {"set": label}
    with torch.no_grad():
        for mode in ("full", "light", "mixed"):
            codec.mode = mode
            tokens, _ = codec.encode(wav)
            wav_hat = codec.decode(tokens)[..., : wav.shape[-1]]
            row[f"mel_{mode}"] = float(mel_distance(wav_hat, wav).mean())
            if mode == "mixed":
                row["light_share"] = float(codec.last_routing.route.float().mean())
        row["mac_ratio"] = executed_macs(codec, wav[:, None], "mixed") / executed_macs(
            codec, wav[:, None], "full"
        )
    return row


def main(argv=None):
    """Runs the demo."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "hparams" / "soundstream_dsl.yaml"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--utterances", type=int, default=60)
    parser.add_argument("--target-light-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng, gen = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    with open(args.model) as f:
        hparams = load_hyperpyyaml(f)
    codec, sr = hparams["codec"], hparams["sample_rate"]

    start = time.time()
    clips = speech_corpus(args.utterances, sr, rng)
    train, held_out = clips[: -len(clips) // 5], clips[-len(clips) // 5 :]
    total = sum(len(c) for c in clips) / sr
    print(f"[data] {len(clips)} espeak-ng utterances, {total:.0f} s at {sr} Hz "
          f"({time.time() - start:.1f} s)")

    mel_loss, dsl_loss = MultiScaleMelLoss(sr), DSLLoss(alpha=1e-4, beta=1.0)
    optimizer = torch.optim.Adam(codec.parameters(), lr=1e-3, betas=(0.5, 0.9))
    codec.train()
    start = time.time()
    bar = tqdm(range(args.steps), desc="[train] DSL codec", file=sys.stdout)
    for step in bar:
        wav = crops(train + [quiet_clip(1.0, sr, gen)], 1.0, sr, args.batch_size, gen)
        out = codec(wav)
        dsl = dsl_loss(out.dsl)
        loss = mel_loss(out.wav_hat, wav[:, None]) + out.commitment + dsl["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 10.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.2f}", light=f"{dsl['light'].item():.3f}")
    print(f"[train] {args.steps} steps in {time.time() - start:.0f} s, last loss "
          f"{loss.item():.3f}")

    # Calibrate: the threshold that sends the target share of held-out speech
    # segments light would be set on validation data by the recipe; here the
    # training speech plays that role.
    codec.eval()
    calib = crops(train, 1.0, sr, 32, gen)
    with torch.no_grad():
        codec.mode = "mixed"
        codec.encode(calib)
        predicted = codec.last_routing.predicted.flatten()
    codec.threshold = float(torch.quantile(predicted, args.target_light_share))
    print(f"[calibrate] threshold {codec.threshold:.4f} for a "
          f"{args.target_light_share:.0%} light share on training speech")

    speech = crops(held_out, 1.0, sr, 16, gen)
    quiet = torch.stack([quiet_clip(1.0, sr, gen) for _ in range(16)])
    rows = [evaluate(codec, speech, "held-out speech"), evaluate(codec, quiet, "silence/noise")]
    print(f"\n{'set':<17}{'light':>7}{'mel full':>10}{'mel light':>10}{'mel mixed':>10}{'MACs mixed/full':>17}")
    for r in rows:
        print(f"{r['set']:<17}{r['light_share']:>7.0%}{r['mel_full']:>10.3f}"
              f"{r['mel_light']:>10.3f}{r['mel_mixed']:>10.3f}{r['mac_ratio']:>17.3f}")
    print("\n[efficiency] default DSL encoder (python -m speechbrain_dsl.efficiency "
          "hparams/soundstream_dsl.yaml)")
    print(format_table(part_costs(codec.encoder, sr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
