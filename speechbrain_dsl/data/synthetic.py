"""Look-alike corpora in the exact on-disk layouts of real datasets, with real speech.

Speech comes from espeak-ng (:mod:`speechbrain_dsl.data.espeak`): each speaker has
its own accent, voice variant, pitch, pitch range and speaking rate; utterances
vary around them, with natural pauses at punctuation, leading and trailing
silence and, optionally, background noise. Everything we choose is deterministic
for a seed: texts, voices, prosody, silences, noise, gains and file names.
espeak-ng adds a little randomness of its own to the waveform that cannot be
seeded (see :mod:`speechbrain_dsl.data.espeak`), so audio is not bit-identical
across runs.

    python -m speechbrain_dsl.data.synthetic libritts --out DIR [--seed N]
        [--speakers S] [--utterances U] [--noise-prob P]

Layouts written
---------------
``libritts``: ``DIR/LibriTTS/<subset>/<spk>/<chap>/<spk>_<chap>_<6d>_<6d>.wav``
(24 kHz, 16-bit) with ``.normalized.txt`` and ``.original.txt`` next to each wav,
``<spk>_<chap>.trans.tsv`` per chapter and ``speakers.tsv`` at the top. Speakers
are split between ``train-clean-100``, ``dev-clean`` and ``test-clean`` so the
held-out subsets have unseen speakers, as in LibriTTS.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_dsl.data.espeak import (
    ACCENTS,
    ESPEAK_SAMPLE_RATE,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    synthesize_batches,
)

_SUBJECTS = (
    "the old captain", "my younger sister", "a tired farmer", "the clever student",
    "our new neighbour", "the quiet librarian", "a stranger in a grey coat",
    "the little boy", "her grandfather", "the village doctor", "a young sailor",
    "the king's messenger", "every child in the town", "the baker's wife",
)
_VERBS = (
    "walked slowly towards", "looked carefully at", "spoke softly about",
    "dreamed again of", "wrote a long letter about", "laughed loudly at",
    "thought for a moment about", "ran quickly past", "waited patiently near",
    "painted a picture of", "sang a song about", "forgot everything about",
)
_OBJECTS = (
    "the river", "the silver bridge", "an empty house", "the distant mountains",
    "a basket of apples", "the broken clock", "the crowded market",
    "a field of wheat", "the lighthouse", "the wooden gate", "the frozen lake",
    "a bright red kite", "the garden wall", "the last train home",
)
_TAILS = (
    "before the sun went down", "in the middle of the night", "without a word",
    "while the rain kept falling", "on a cold winter morning",
    "as the bells began to ring", "after a long and difficult day",
    "because nobody else would", "just as the door opened", "for {n} minutes",
    "with {n} of his friends", "at {n} o'clock",
)
_OPENERS = ("", "", "", "Well, ", "Yesterday, ", "Of course, ", "Later that week, ",
            "To everyone's surprise, ", "Once upon a time, ")
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve "
         "thirteen fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def number_to_words(n):
    """English words for 0 <= n < 100 (LibriTTS 'normalized' text spells numbers).

    Example
    -------
    >>> number_to_words(42)
    'forty two'
    """
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + ("" if ones == 0 else " " + _ONES[ones])


def random_sentence(rng):
    """One sentence as ``(original, normalized)`` text, LibriTTS style.

    Example
    -------
    >>> original, normalized = random_sentence(random.Random(3))
    >>> original[0].isupper() and normalized[-1] in ".!?"
    True
    """
    n = rng.randint(2, 59)
    tail = rng.choice(_TAILS)
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    body = " ".join(words) + (", " if rng.random() < 0.6 else " ") + tail
    body = rng.choice(_OPENERS) + body
    body = body[0].upper() + body[1:] + rng.choice(".....!?")
    return body.format(n=n), body.format(n=number_to_words(n))


def speaker_profile(rng, speaker_id):
    """A fixed voice for a speaker: accent, variant, pitch, range and rate."""
    female = rng.random() < 0.5
    variant = rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS)
    return {
        "id": speaker_id,
        "gender": "F" if female else "M",
        "voice": f"{rng.choice(ACCENTS)}+{variant}",
        "pitch": rng.randint(30, 70),
        "range": rng.randint(20, 90),
        "rate": rng.randint(140, 200),
    }


def plan_utterance(profile, text, rng, noise_prob):
    """Every random choice of one utterance, drawn from the speaker's ``rng``."""
    return {
        "request": {
            "text": text,
            "voice": profile["voice"],
            "rate": profile["rate"] + rng.randint(-15, 15),
            "pitch": min(99, max(0, profile["pitch"] + rng.randint(-6, 6))),
            "pitch_range": profile["range"],
            "word_gap": rng.choice((0, 0, 0, 1, 2)),
        },
        "lead": rng.uniform(0.1, 0.5),
        "trail": rng.uniform(0.1, 0.6),
        "gain": rng.uniform(0.25, 0.8),
        "snr_db": rng.uniform(10, 35) if rng.random() < noise_prob else None,
        "noise_seed": rng.randint(0, 2**31),
    }


def render(plan, speech, sample_rate):
    """Adds the planned silences, gain and noise to ``speech`` and resamples it."""
    # Imported here: synthesis workers re-import this module, and should start fast.
    import torch
    import torchaudio

    lead = np.zeros(int(plan["lead"] * ESPEAK_SAMPLE_RATE), np.float32)
    trail = np.zeros(int(plan["trail"] * ESPEAK_SAMPLE_RATE), np.float32)
    audio = np.concatenate([lead, speech, trail]) * plan["gain"]
    if plan["snr_db"] is not None:
        speech_power = float(np.mean(audio**2)) + 1e-10
        noise = np.random.default_rng(plan["noise_seed"]).standard_normal(len(audio))
        audio = audio + noise.astype(np.float32) * np.sqrt(
            speech_power / 10 ** (plan["snr_db"] / 10)
        )
    wav = torchaudio.functional.resample(
        torch.from_numpy(audio.astype(np.float32)), ESPEAK_SAMPLE_RATE, sample_rate
    )
    return wav.clamp(-1, 1).numpy()


def write_atomic_text(path, text):
    """Writes ``text`` to ``path`` via a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_atomic_wav(path, audio, sample_rate):
    """Writes 16-bit PCM ``audio`` to ``path`` via a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".wav")
    os.close(fd)
    sf.write(tmp, audio, sample_rate, subtype="PCM_16")
    os.replace(tmp, path)


def make_libritts(out, seed=0, speakers=20, utterances=20, noise_prob=0.2,
                  sample_rate=24000, held_out_share=0.2):
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
            utts.append((folder, utt, original, normalized,
                         plan_utterance(profile, normalized, srng, noise_prob)))
        plans.append(utts)

    speech = synthesize_batches([[u[4]["request"] for u in utts] for utts in plans])
    for utts, spoken in zip(plans, speech):
        for (folder, utt, original, normalized, plan), audio in zip(utts, spoken):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic_wav(folder / f"{utt}.wav", render(plan, audio, sample_rate), sample_rate)
            write_atomic_text(folder / f"{utt}.original.txt", original)
            write_atomic_text(folder / f"{utt}.normalized.txt", normalized)
            chapter_id = "_".join(utt.split("_")[:2])
            with open(folder / f"{chapter_id}.trans.tsv", "a", encoding="utf-8") as f:
                f.write(f"{utt}\t{original}\t{normalized}\n")
    write_atomic_text(root / "speakers.tsv", "\n".join(speaker_rows) + "\n")
    return root


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.data.synthetic",
        description="Generate look-alike corpora with espeak-ng speech.",
    )
    sub = parser.add_subparsers(dest="corpus", required=True)
    libritts = sub.add_parser("libritts", help="LibriTTS layout (24 kHz)")
    libritts.add_argument("--out", required=True, help="output folder")
    libritts.add_argument("--seed", type=int, default=0)
    libritts.add_argument("--speakers", type=int, default=20)
    libritts.add_argument("--utterances", type=int, default=20, help="per speaker")
    libritts.add_argument("--noise-prob", type=float, default=0.2)
    args = parser.parse_args(argv)

    start = time.time()
    if args.corpus == "libritts":
        if (Path(args.out) / "LibriTTS").exists():
            print(f"error: {Path(args.out) / 'LibriTTS'} already exists; choose an empty "
                  f"--out", file=sys.stderr)
            return 2
        try:
            root = make_libritts(args.out, args.seed, args.speakers, args.utterances,
                                 args.noise_prob)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        seconds = sum(sf.info(str(w)).duration for w in wavs)
        print(f"wrote {len(wavs)} utterances ({seconds / 60:.1f} min) to {root} "
              f"in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
