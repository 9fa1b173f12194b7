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
    python -m speechbrain_dsl.data.synthetic audioset --out DIR [--seed N]
        [--clips-per-class C]
    python -m speechbrain_dsl.data.synthetic speech_commands --out DIR [--seed N]
        [--speakers S]
    python -m speechbrain_dsl.data.synthetic libricount --out DIR [--seed N]
        [--mixtures-per-count M] [--max-count K]

Layouts written
---------------
``libritts``: ``DIR/LibriTTS/<subset>/<spk>/<chap>/<spk>_<chap>_<6d>_<6d>.wav``
(24 kHz, 16-bit) with ``.normalized.txt`` and ``.original.txt`` next to each wav,
``<spk>_<chap>.trans.tsv`` per chapter and ``speakers.tsv`` at the top. Speakers
are split between ``train-clean-100``, ``dev-clean`` and ``test-clean`` so the
held-out subsets have unseen speakers, as in LibriTTS.

``audioset``: ``DIR/AudioSet/eval_segments.csv`` (3 comment lines, then
``YTID, start_seconds, end_seconds, "labels"``), ``class_labels_indices.csv`` and
10-s clips under ``DIR/AudioSet/audio/`` in the common naming schemes
(``Y<YTID>.wav``, ``<YTID>.wav``, ``<YTID>_<start>.wav``). "Silence" clips hold
what AudioSet's class holds: digital silence, quiet tones, low-level room noise,
pink and white noise, mains hum. "Speech" clips are espeak-ng speech, clean or
with noise. A few Music clips (not a target class) and a few rows whose audio is
missing make the set look like a real partial download.

``speech_commands``: ``DIR/SpeechCommands/<word>/<8hex>_nohash_<n>.wav`` (16 kHz,
at most 1 s) for the 35 words of v0.02, ``_background_noise_/*.wav`` (long noise
recordings), ``validation_list.txt`` and ``testing_list.txt`` (speakers, by their
hash, split 80/10/10 as in the real set).

``libricount``: ``DIR/LibriCount/test/<k>_<id>.wav`` (5 s, 16 kHz) mixtures of
``k`` espeak-ng speakers talking over each other, with ``<k>_<id>.json``: a list of
``{"sex", "activity", "speaker_id"}``, one per speaker.

Modules
-------
This module is the command line. Each look-alike has its own module
(:mod:`~speechbrain_dsl.data.synthetic_libritts`,
:mod:`~speechbrain_dsl.data.synthetic_audioset`,
:mod:`~speechbrain_dsl.data.synthetic_speech_commands`,
:mod:`~speechbrain_dsl.data.synthetic_libricount`), built from the speech of
:mod:`~speechbrain_dsl.data.synthetic_speech` and the non-speech audio of
:mod:`~speechbrain_dsl.data.synthetic_signals`; their public names are
importable from here too.
"""

import argparse
import sys
import time
from pathlib import Path

import soundfile as sf

from speechbrain_dsl.data.atomic_wav import write_atomic_wav
from speechbrain_dsl.data.synthetic_audioset import AUDIOSET_CLASSES, make_audioset
from speechbrain_dsl.data.synthetic_libricount import make_libricount
from speechbrain_dsl.data.synthetic_libritts import (
    NOISE_KINDS,
    NOISE_SUBSETS,
    SUBSETS,
    make_libritts,
    make_noise_subsets,
)
from speechbrain_dsl.data.synthetic_signals import (
    SILENCE_KINDS,
    fit_to,
    music_like,
    pink_noise,
    silence_like,
)
from speechbrain_dsl.data.synthetic_speech import (
    number_to_words,
    plan_utterance,
    random_sentence,
    render,
    speaker_profile,
)
from speechbrain_dsl.data.synthetic_speech_commands import (
    SPEECH_COMMANDS_MAX_WAVS_PER_CLASS,
    SPEECH_COMMANDS_WORDS,
    make_speech_commands,
    speech_commands_set,
)

__all__ = [
    # the command line
    "main",
    # the corpora (their own modules)
    "make_audioset",
    "make_libricount",
    "make_libritts",
    "make_noise_subsets",
    "make_speech_commands",
    "speech_commands_set",
    "AUDIOSET_CLASSES",
    "NOISE_KINDS",
    "NOISE_SUBSETS",
    "SPEECH_COMMANDS_MAX_WAVS_PER_CLASS",
    "SPEECH_COMMANDS_WORDS",
    "SUBSETS",
    # their parts
    "SILENCE_KINDS",
    "fit_to",
    "music_like",
    "number_to_words",
    "pink_noise",
    "plan_utterance",
    "random_sentence",
    "render",
    "silence_like",
    "speaker_profile",
    "write_atomic_wav",
]


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
    noise = sub.add_parser(
        "noise", help="non-speech subsets (train/dev/test-noise) in a LibriTTS folder"
    )
    noise.add_argument("--out", required=True, help="the folder holding LibriTTS")
    noise.add_argument("--seed", type=int, default=0)
    noise.add_argument("--clips", type=int, default=20, help="per pseudo-speaker")
    audioset = sub.add_parser("audioset", help="AudioSet Speech vs Silence look-alike")
    audioset.add_argument("--out", required=True, help="output folder")
    audioset.add_argument("--seed", type=int, default=0)
    audioset.add_argument("--clips-per-class", type=int, default=20)
    commands = sub.add_parser("speech_commands", help="Speech Commands v0.02 layout")
    commands.add_argument("--out", required=True, help="output folder")
    commands.add_argument("--seed", type=int, default=0)
    commands.add_argument("--speakers", type=int, default=30)
    count = sub.add_parser("libricount", help="LibriCount layout")
    count.add_argument("--out", required=True, help="output folder")
    count.add_argument("--seed", type=int, default=0)
    count.add_argument("--mixtures-per-count", type=int, default=10)
    count.add_argument("--max-count", type=int, default=5)
    args = parser.parse_args(argv)

    start = time.time()
    if args.corpus == "libritts":
        if (Path(args.out) / "LibriTTS").exists():
            print(
                f"error: {Path(args.out) / 'LibriTTS'} already exists; choose an empty --out",
                file=sys.stderr,
            )
            return 2
        try:
            root = make_libritts(
                args.out, args.seed, args.speakers, args.utterances, args.noise_prob
            )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        seconds = sum(sf.info(str(w)).duration for w in wavs)
        print(
            f"wrote {len(wavs)} utterances ({seconds / 60:.1f} min) to {root} "
            f"in {time.time() - start:.1f} s"
        )
    elif args.corpus == "noise":
        existing = [n for n in NOISE_SUBSETS if (Path(args.out) / "LibriTTS" / n).exists()]
        if existing:
            print(
                f"error: {existing} already exist in {Path(args.out) / 'LibriTTS'}", file=sys.stderr
            )
            return 2
        try:
            root = make_noise_subsets(args.out, args.seed, args.clips)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = [w for n in NOISE_SUBSETS for w in (root / n).rglob("*.wav")]
        seconds = sum(sf.info(str(w)).duration for w in wavs)
        print(
            f"wrote {len(wavs)} non-speech clips ({seconds / 60:.1f} min) to {root} "
            f"in {time.time() - start:.1f} s"
        )
    elif args.corpus == "audioset":
        if (Path(args.out) / "AudioSet").exists():
            print(
                f"error: {Path(args.out) / 'AudioSet'} already exists; choose an empty --out",
                file=sys.stderr,
            )
            return 2
        try:
            root = make_audioset(args.out, args.seed, args.clips_per_class)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        print(f"wrote {len(wavs)} clips to {root} in {time.time() - start:.1f} s")
    elif args.corpus in ("speech_commands", "libricount"):
        name = {"speech_commands": "SpeechCommands", "libricount": "LibriCount"}[args.corpus]
        if (Path(args.out) / name).exists():
            print(
                f"error: {Path(args.out) / name} already exists; choose an empty --out",
                file=sys.stderr,
            )
            return 2
        try:
            if args.corpus == "speech_commands":
                root = make_speech_commands(args.out, args.seed, args.speakers)
            else:
                root = make_libricount(args.out, args.seed, args.mixtures_per_count, args.max_count)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        wavs = list(root.rglob("*.wav"))
        print(f"wrote {len(wavs)} files to {root} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
