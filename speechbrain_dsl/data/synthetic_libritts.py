"""The LibriTTS look-alike: espeak-ng speakers in LibriTTS's layout, and non-speech subsets.

:func:`make_libritts` writes ``train-clean-100``, ``dev-clean`` and ``test-clean``
with disjoint speakers; :func:`make_noise_subsets` writes ``train-noise``,
``dev-noise`` and ``test-noise`` (noise-like silence and music) into the same
``LibriTTS`` folder. The layout is described in :mod:`speechbrain_dsl.data.synthetic`.
"""

import random
from pathlib import Path

import numpy as np

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.atomic_wav import write_atomic_wav
from speechbrain_dsl.data.espeak import synthesize_batches
from speechbrain_dsl.data.synthetic_signals import SILENCE_KINDS, music_like, silence_like
from speechbrain_dsl.data.synthetic_speech import (
    plan_utterance,
    random_sentence,
    render,
    speaker_profile,
)

__all__ = ["NOISE_KINDS", "NOISE_SUBSETS", "SUBSETS", "make_libritts", "make_noise_subsets"]

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def make_libritts(
    out, seed=0, speakers=20, utterances=20, noise_prob=0.2, sample_rate=24000, held_out_share=0.2
):
    """Writes a LibriTTS-layout corpus under ``out/LibriTTS``; returns its path.

    Arguments
    ---------
    out : str or Path
    seed : int
    speakers : int
        Total speakers; ``held_out_share`` of them (at least one each) go to
        ``dev-clean`` and ``test-clean``, the rest to ``train-clean-100``.
    utterances : int
        Utterances per speaker, spread over 1-3 chapters.
    noise_prob : float
        Share of utterances with background noise (10-35 dB SNR).
    sample_rate : int
        LibriTTS is 24 kHz.
    held_out_share : float

    Returns
    -------
    Path
    """
    if speakers < 3:
        raise ValueError(f"--speakers must be >= 3 (one per subset), got {speakers}")
    if utterances < 1:
        raise ValueError(f"--utterances must be >= 1, got {utterances}")
    root = Path(out) / "LibriTTS"
    rng = random.Random(seed)
    speaker_ids = rng.sample(range(100, 9999), speakers)
    n_held = max(1, round(speakers * held_out_share / 2))
    subset_of = {s: "dev-clean" for s in speaker_ids[:n_held]}
    subset_of.update({s: "test-clean" for s in speaker_ids[n_held : 2 * n_held]})
    subset_of.update({s: "train-clean-100" for s in speaker_ids[2 * n_held :]})

    speaker_rows = ["READER\tGENDER\tSUBSET\tNAME"]
    plans = []  # per speaker: [(folder, utterance id, original, normalized, plan)]
    for spk in sorted(speaker_ids):
        # One generator per speaker: a speaker's choices don't depend on the others.
        srng = random.Random(f"{seed}-{spk}")
        profile = speaker_profile(srng, spk)
        speaker_rows.append(f"{spk}\t{profile['gender']}\t{subset_of[spk]}\tSpeaker {spk}")
        chapters = srng.sample(range(1000, 99999), srng.randint(1, 3))
        utts = []
        for index in range(utterances):
            chapter = chapters[index % len(chapters)]
            folder = root / subset_of[spk] / str(spk) / str(chapter)
            utt = f"{spk}_{chapter}_{srng.randint(0, 999999):06d}_{index:06d}"
            pairs = [random_sentence(srng) for _ in range(srng.choice((1, 1, 2)))]
            original = " ".join(p[0] for p in pairs)
            normalized = " ".join(p[1] for p in pairs)
            utts.append(
                (
                    folder,
                    utt,
                    original,
                    normalized,
                    plan_utterance(profile, normalized, srng, noise_prob),
                )
            )
        plans.append(utts)

    speech = synthesize_batches([[u[4]["request"] for u in utts] for utts in plans])
    for utts, spoken in zip(plans, speech):
        for (folder, utt, original, normalized, plan), audio in zip(utts, spoken):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic_wav(folder / f"{utt}.wav", render(plan, audio, sample_rate), sample_rate)
            write_text(folder / f"{utt}.original.txt", original)
            write_text(folder / f"{utt}.normalized.txt", normalized)
            chapter_id = "_".join(utt.split("_")[:2])
            with open(folder / f"{chapter_id}.trans.tsv", "a", encoding="utf-8") as f:
                f.write(f"{utt}\t{original}\t{normalized}\n")
    write_text(root / "speakers.tsv", "\n".join(speaker_rows) + "\n")
    return root


NOISE_KINDS = SILENCE_KINDS[1:] + ("music",)  # digital silence holds nothing to code
NOISE_SUBSETS = {"train-noise": 12, "dev-noise": 2, "test-noise": 2}  # "speakers" per subset


def make_noise_subsets(out, seed=0, clips=20, sample_rate=24000):
    """Writes non-speech subsets (``train-noise``, ``dev-noise``, ``test-noise``) beside a corpus.

    Noise-like "silence" (quiet tones, room tone, pink and white noise, mains hum)
    and simple music, 3-8 s each at -60 to -25 dBFS, in the LibriTTS layout so the
    codec recipe trains, validates and calibrates on them like any subset. Each
    pseudo-speaker is one seed of the generators; transcripts name the kind.

    Arguments
    ---------
    out : str or Path
        The folder holding ``LibriTTS`` (created if missing).
    seed : int
    clips : int
        Clips per pseudo-speaker.
    sample_rate : int

    Returns
    -------
    Path
        The ``LibriTTS`` folder.
    """
    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    root = Path(out) / "LibriTTS"
    rng = random.Random(f"noise-{seed}")
    speaker = 90000
    for subset, speakers in NOISE_SUBSETS.items():
        for _ in range(speakers):
            speaker += 1
            folder = root / subset / str(speaker) / "1"
            folder.mkdir(parents=True, exist_ok=True)
            np_rng = np.random.default_rng(rng.randint(0, 2**31))
            lines = []
            for index in range(clips):
                kind = NOISE_KINDS[(index + speaker) % len(NOISE_KINDS)]
                seconds = rng.uniform(3.0, 8.0)
                if kind == "music":
                    audio = music_like(seconds, sample_rate, rng)
                else:
                    audio = silence_like(kind, seconds, sample_rate, rng, np_rng)
                rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-12
                audio = audio * (10 ** (rng.uniform(-60.0, -25.0) / 20) / rms)
                utt = f"{speaker}_1_{index:06d}_000000"
                write_atomic_wav(folder / f"{utt}.wav", np.clip(audio, -1, 1), sample_rate)
                write_text(folder / f"{utt}.normalized.txt", kind)
                write_text(folder / f"{utt}.original.txt", kind)
                lines.append(f"{utt}\t{kind}\t{kind}\n")
            write_text(folder / f"{speaker}_1.trans.tsv", "".join(lines))
    return root
