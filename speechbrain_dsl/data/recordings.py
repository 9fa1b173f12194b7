"""A real-speech corpus in the LibriTTS layout, from Debian's KDE recordings.

The Debian packages ``ktuberling-data`` and ``klettres-data`` ship short
recordings read by volunteers: the names of the objects of the KTuberling
playgrounds (``/usr/share/ktuberling/sounds/<lang>/``) and the letters and
syllables of KLettres (``/usr/share/klettres/<lang>/{alpha,syllab}/``), in about
20 languages. This module joins them into utterances of a few seconds and
writes them next to (or instead of) the espeak-ng corpus of
:func:`speechbrain_dsl.data.synthetic.make_libritts`::

    python -m speechbrain_dsl.data.recordings --out DIR [--seed N]
        [--source-root /usr/share] [--dev-speakers K] [--test-speakers K]
        [--utterance-seconds MIN MAX] [--pause-seconds MIN MAX]
        [--max-edge-silence S] [--min-source-rate HZ]
        [--max-speakers N] [--max-utterances-per-speaker U]

The packages must be installed (``sudo apt-get install ktuberling-data
klettres-data``); without them a ``FileNotFoundError`` names the ``apt-get``
command for the missing ones and the command line exits with status 2.

Layout written
--------------
``DIR/LibriTTS/<subset>/<spk>/<chap>/<spk>_<chap>_<6d>_<6d>.wav`` (24 kHz,
16-bit, mono) with ``.normalized.txt`` and ``.original.txt`` beside each wav,
``<spk>_<chap>.trans.tsv`` per chapter and ``speakers.tsv`` at the top, exactly
as the espeak-ng generator writes them, in the subsets ``train-recorded``,
``dev-recorded`` and ``test-recorded``. Both corpora can share one LibriTTS
folder: generate the espeak-ng one first (it refuses an existing folder), then
this one, which merges its rows into ``speakers.tsv`` (rows of its own subsets
are replaced, all others kept). The codec recipe then trains on both with e.g.
``--train_subsets=[train-clean-100,train-recorded]``. Speaker ids start at
10000 (:data:`SPEAKER_ID_BASE`); the espeak-ng generator draws its ids from
100-9998. ``GENDER`` is ``U``: the sources do not say. ``NAME`` is
``<package>/<language folder>``, plus the reader's name when a folder holds
several. A last file, ``recorded_sources.tsv``, lists the source clips of every
utterance and whether its text is a transcript or a gloss (see
:mod:`~speechbrain_dsl.data.recordings_sources`).

Everything is built in a hidden staging folder inside ``DIR/LibriTTS`` (each file
written atomically) and the three subsets are then swapped in by renames, so a
second run gives the same corpus and never leaves files of the first behind.

How it is built
---------------
:mod:`~speechbrain_dsl.data.recordings_sources` finds the clips, their texts
and their readers, one speaker per reader, package and language folder (and
says what is left out and why); :mod:`~speechbrain_dsl.data.recordings_split`
holds whole speakers out for ``dev-recorded`` and ``test-recorded``;
:mod:`~speechbrain_dsl.data.recordings_audio` reads a clip as 24-kHz mono with
its edge silence trimmed; :mod:`~speechbrain_dsl.data.recordings_utterances`
joins a speaker's clips into utterances. This module writes the corpus
(:func:`build_corpus`) and is the command line; the public names of the four
are importable from here too.

On the packages of Debian 12 (22.12.3) with the defaults: 41 speakers (35
train, 3 dev, 3 test), 863 utterances, 1.44 h (1.28 h train), in one to two
minutes on one CPU core.

Example
-------
>>> words_from_stem("egypt_palmtree"), words_from_stem("naocare_za_sunce")
('palmtree', 'naocare za sunce')
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.atomic_wav import write_atomic_wav
from speechbrain_dsl.data.recordings_audio import (
    DEFAULT_MAX_EDGE_SILENCE,
    EDGE_SILENCE_DB,
    FRAME_SECONDS,
    FULL_SCALE,
    RESAMPLING,
    SAMPLE_RATE,
    load_clip,
    trim_edge_silence,
)
from speechbrain_dsl.data.recordings_sources import (
    AUDIO_SUFFIXES,
    DEFAULT_MIN_SOURCE_RATE,
    EXCLUDED_FOLDERS,
    KLETTRES,
    KLETTRES_INDEX,
    KTUBERLING_SOUNDS,
    PACKAGES,
    READER_ALIASES,
    SCENE_PREFIXES,
    SPEAKER_ID_BASE,
    Clip,
    Speaker,
    check_sources,
    discover_speakers,
    language_of,
    words_from_stem,
)
from speechbrain_dsl.data.recordings_split import (
    CLIP_LEVEL,
    DEFAULT_HELDOUT_SPEAKERS,
    DEFAULT_MIN_HELDOUT_SECONDS,
    DEV,
    MAX_HELDOUT_CLIPPED_FRACTION,
    SUBSETS,
    TEST,
    TRAIN,
    clipped_fraction,
    split_speakers,
)
from speechbrain_dsl.data.recordings_utterances import (
    DEFAULT_PAUSE_SECONDS,
    DEFAULT_UTTERANCE_SECONDS,
    plan_utterances,
)

__all__ = [
    # the corpus and its command line
    "CHAPTER_ID",
    "PROVENANCE_FILE",
    "PROVENANCE_HEADER",
    "SPEAKERS_HEADER",
    "STAGING_PREFIX",
    "UNKNOWN_GENDER",
    "build_corpus",
    "format_summary",
    "main",
    "merge_speaker_rows",
    # from recordings_sources
    "AUDIO_SUFFIXES",
    "DEFAULT_MIN_SOURCE_RATE",
    "EXCLUDED_FOLDERS",
    "KLETTRES",
    "KLETTRES_INDEX",
    "KTUBERLING_SOUNDS",
    "PACKAGES",
    "READER_ALIASES",
    "SCENE_PREFIXES",
    "SPEAKER_ID_BASE",
    "Clip",
    "Speaker",
    "check_sources",
    "discover_speakers",
    "language_of",
    "words_from_stem",
    # from recordings_split
    "CLIP_LEVEL",
    "DEFAULT_HELDOUT_SPEAKERS",
    "DEFAULT_MIN_HELDOUT_SECONDS",
    "DEV",
    "MAX_HELDOUT_CLIPPED_FRACTION",
    "SUBSETS",
    "TEST",
    "TRAIN",
    "clipped_fraction",
    "split_speakers",
    # from recordings_audio
    "DEFAULT_MAX_EDGE_SILENCE",
    "EDGE_SILENCE_DB",
    "FRAME_SECONDS",
    "FULL_SCALE",
    "RESAMPLING",
    "SAMPLE_RATE",
    "load_clip",
    "trim_edge_silence",
    # from recordings_utterances
    "DEFAULT_PAUSE_SECONDS",
    "DEFAULT_UTTERANCE_SECONDS",
    "plan_utterances",
    # from atomic_wav (used here; its old home was synthetic)
    "write_atomic_wav",
]

CHAPTER_ID = {"ktuberling": 1, "klettres": 2}
UNKNOWN_GENDER = "U"
SPEAKERS_HEADER = ("READER", "GENDER", "SUBSET", "NAME")
PROVENANCE_FILE = "recorded_sources.tsv"
PROVENANCE_HEADER = ("UTTERANCE", "SUBSET", "TEXT_IS", "SOURCES")
STAGING_PREFIX = ".recordings-staging-"


def _read_speakers_tsv(path):
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != SPEAKERS_HEADER:
        raise ValueError(
            f"{path} does not start with the LibriTTS header "
            f"{chr(9).join(SPEAKERS_HEADER)!r}; move it away or fix it"
        )
    return [line for line in lines[1:] if line.strip()]


def merge_speaker_rows(
    existing: Sequence[str], ours: Sequence[str], subsets: Sequence[str] = SUBSETS
) -> list:
    """``speakers.tsv`` body: ``existing`` rows of other subsets, then ``ours``.

    Example
    -------
    >>> old = ["763\\tF\\ttrain-clean-100\\tSpeaker 763", "10001\\tU\\ttrain-recorded\\tx"]
    >>> merge_speaker_rows(old, ["10002\\tU\\tdev-recorded\\ty"])
    ['763\\tF\\ttrain-clean-100\\tSpeaker 763', '10002\\tU\\tdev-recorded\\ty']
    """
    keep = [
        row for row in existing if len(row.split("\t")) < 3 or row.split("\t")[2] not in subsets
    ]
    return keep + list(ours)


def _check_range(name, pair, minimum):
    lo, hi = pair
    if not minimum <= lo <= hi:
        raise ValueError(f"{name} must be MIN MAX with {minimum} <= MIN <= MAX, got {lo} {hi}")


def build_corpus(
    out,
    seed: int = 0,
    source_root="/usr/share",
    dev_speakers: int = DEFAULT_HELDOUT_SPEAKERS,
    test_speakers: int = DEFAULT_HELDOUT_SPEAKERS,
    utterance_seconds=DEFAULT_UTTERANCE_SECONDS,
    pause_seconds=DEFAULT_PAUSE_SECONDS,
    max_edge_silence: float = DEFAULT_MAX_EDGE_SILENCE,
    min_source_rate: int = DEFAULT_MIN_SOURCE_RATE,
    min_heldout_seconds: float = DEFAULT_MIN_HELDOUT_SECONDS,
    max_speakers: Optional[int] = None,
    max_utterances_per_speaker: Optional[int] = None,
) -> dict:
    """Writes the recorded subsets under ``out/LibriTTS``; returns a summary.

    Arguments
    ---------
    out : str or Path
        The folder of ``LibriTTS`` (which may already hold other subsets).
    seed : int
        Drives the held-out speakers, clip order, utterance lengths and pauses.
    source_root : str or Path
        Where ``ktuberling/sounds`` and ``klettres`` are (``/usr/share``).
    dev_speakers, test_speakers : int
        Speakers held out for ``dev-recorded`` and ``test-recorded``.
    utterance_seconds, pause_seconds : (float, float)
        Ranges of utterance lengths and of pauses between clips.
    max_edge_silence : float
        Silence kept before and after the words of each clip, at most.
    min_source_rate : int
        Clips recorded at a lower rate are left out.
    min_heldout_seconds : float
        Source audio a held-out speaker needs at least.
    max_speakers : int, optional
        Keep the held-out speakers and the first training speakers (by id) up
        to this many in all (for quick tests); the split does not change.
    max_utterances_per_speaker : int, optional
        Keep only a speaker's first utterances (for quick tests).

    Returns
    -------
    dict
        ``root``, ``subsets`` (subset -> speakers, utterances, seconds),
        ``skipped`` (clips left out, by reason), ``scaled`` (clips scaled
        down to full scale) and ``min_gain_db`` (the largest such cut),
        ``dropped_clips`` (leftovers shorter than an utterance).

    Raises
    ------
    FileNotFoundError
        If the packages are not installed (names the ``apt-get`` command).
    ValueError
        For an argument out of range or too few eligible held-out speakers.
    """
    _check_range("--utterance-seconds", utterance_seconds, 0.1)
    _check_range("--pause-seconds", pause_seconds, 0.0)
    for name, value in (
        ("--dev-speakers", dev_speakers),
        ("--test-speakers", test_speakers),
        ("--max-edge-silence", max_edge_silence),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if min_source_rate <= 0:
        raise ValueError(f"--min-source-rate must be > 0 Hz, got {min_source_rate}")
    if max_speakers is not None and max_speakers < dev_speakers + test_speakers + 1:
        raise ValueError(
            f"--max-speakers must be >= --dev-speakers + --test-speakers + 1 = "
            f"{dev_speakers + test_speakers + 1}, got {max_speakers}"
        )
    if max_utterances_per_speaker is not None and max_utterances_per_speaker < 1:
        raise ValueError(
            f"--max-utterances-per-speaker must be >= 1, got {max_utterances_per_speaker}"
        )

    speakers, skipped = discover_speakers(source_root, min_source_rate, utterance_seconds[0])
    subset_of = split_speakers(speakers, seed, dev_speakers, test_speakers, min_heldout_seconds)
    if max_speakers is not None:
        held = [s for s in speakers if subset_of[s.id] != TRAIN]
        train = [s for s in speakers if subset_of[s.id] == TRAIN]
        speakers = sorted(held + train[: max_speakers - len(held)], key=lambda s: s.id)

    root = Path(out) / "LibriTTS"
    speakers_tsv = root / "speakers.tsv"
    existing_rows = _read_speakers_tsv(speakers_tsv)  # refuse a bad one before any change
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    summary = {
        "root": root,
        "subsets": {s: [0, 0, 0.0] for s in SUBSETS},
        "skipped": skipped,
        "scaled": 0,
        "min_gain_db": 0.0,
        "dropped_clips": 0,
    }
    rows, provenance = [], []
    try:
        for speaker in speakers:
            subset = subset_of[speaker.id]
            audio = []
            for clip in speaker.clips:
                wav = load_clip(clip, max_edge_silence)
                peak = float(np.abs(wav).max()) if len(wav) else 0.0
                if peak > FULL_SCALE:  # scaled down rather than clipped
                    wav = wav * (FULL_SCALE / peak)
                    summary["scaled"] += 1
                    summary["min_gain_db"] = min(
                        summary["min_gain_db"], 20 * np.log10(FULL_SCALE / peak)
                    )
                audio.append(wav)
            plan = plan_utterances(
                [len(a) / SAMPLE_RATE for a in audio],
                random.Random(f"{seed}-{speaker.id}"),
                utterance_seconds,
                pause_seconds,
            )
            summary["dropped_clips"] += len(audio) - sum(len(u) for u in plan)
            plan = plan[:max_utterances_per_speaker]
            if not plan:
                continue
            chapter = CHAPTER_ID[speaker.package]
            folder = staging / subset / str(speaker.id) / str(chapter)
            folder.mkdir(parents=True)
            trans = []
            for number, utterance in enumerate(plan):
                utt = f"{speaker.id}_{chapter}_{number:06d}_{0:06d}"
                pieces = []
                for index, pause in utterance:
                    pieces += [np.zeros(int(round(pause * SAMPLE_RATE)), np.float32), audio[index]]
                wav = np.concatenate(pieces)
                clips = [speaker.clips[i] for i, _ in utterance]
                original = " ".join(c.original for c in clips)
                normalized = " ".join(c.text for c in clips)
                write_atomic_wav(folder / f"{utt}.wav", wav, SAMPLE_RATE)
                write_text(folder / f"{utt}.original.txt", original)
                write_text(folder / f"{utt}.normalized.txt", normalized)
                trans.append(f"{utt}\t{original}\t{normalized}")
                glosses = {c.gloss for c in clips}
                kind = (
                    "mixed"
                    if len(glosses) > 1
                    else ("gloss" if glosses == {True} else "transcript")
                )
                provenance.append("\t".join((utt, subset, kind, ";".join(c.source for c in clips))))
                counts = summary["subsets"][subset]
                counts[1] += 1
                counts[2] += len(wav) / SAMPLE_RATE
            write_text(folder / f"{speaker.id}_{chapter}.trans.tsv", "\n".join(trans) + "\n")
            summary["subsets"][subset][0] += 1
            rows.append(f"{speaker.id}\t{UNKNOWN_GENDER}\t{subset}\t{speaker.name}")
        for subset in SUBSETS:  # swap the new subsets in, the old ones out
            final, new = root / subset, staging / subset
            if final.exists():
                os.rename(final, staging / f"old-{subset}")
            if new.exists():
                os.rename(new, final)
        body = merge_speaker_rows(existing_rows, rows)
        write_text(speakers_tsv, "\n".join(["\t".join(SPEAKERS_HEADER)] + body) + "\n")
        write_text(
            root / PROVENANCE_FILE, "\n".join(["\t".join(PROVENANCE_HEADER)] + provenance) + "\n"
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def format_summary(summary: dict, seconds: float) -> str:
    """The lines printed at the end of a run."""
    lines = [f"wrote {summary['root']} in {seconds:.1f} s"]
    total = [0, 0, 0.0]
    for subset, (speakers, utterances, audio) in summary["subsets"].items():
        lines.append(
            f"  {subset:15s} {speakers:3d} speakers {utterances:5d} utterances "
            f"{audio / 3600:6.3f} h"
        )
        total = [total[0] + speakers, total[1] + utterances, total[2] + audio]
    lines.append(
        f"  {'total':15s} {total[0]:3d} speakers {total[1]:5d} utterances {total[2] / 3600:6.3f} h"
    )
    skipped = ", ".join(f"{n} {why}" for why, n in summary["skipped"].items() if n)
    lines.append(
        f"  clips left out: {skipped or 'none'}; {summary['dropped_clips']} leftover "
        f"clips dropped; {summary['scaled']} clips scaled down to full scale "
        f"(by {-summary['min_gain_db']:.1f} dB at most)"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.data.recordings",
        description="Build a LibriTTS-layout corpus from the recordings of the Debian "
        "packages ktuberling-data and klettres-data.",
    )
    parser.add_argument("--out", required=True, help="folder of LibriTTS/ (may exist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--source-root", default="/usr/share", help="folder holding ktuberling/sounds and klettres"
    )
    parser.add_argument("--dev-speakers", type=int, default=DEFAULT_HELDOUT_SPEAKERS)
    parser.add_argument("--test-speakers", type=int, default=DEFAULT_HELDOUT_SPEAKERS)
    parser.add_argument(
        "--utterance-seconds",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=DEFAULT_UTTERANCE_SECONDS,
    )
    parser.add_argument(
        "--pause-seconds",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=DEFAULT_PAUSE_SECONDS,
        help="silence between clips",
    )
    parser.add_argument(
        "--max-edge-silence",
        type=float,
        default=DEFAULT_MAX_EDGE_SILENCE,
        help="seconds of each clip's own silence kept at each end, at most",
    )
    parser.add_argument(
        "--min-source-rate",
        type=int,
        default=DEFAULT_MIN_SOURCE_RATE,
        help="leave out clips recorded at a lower sample rate (Hz)",
    )
    parser.add_argument("--min-heldout-seconds", type=float, default=DEFAULT_MIN_HELDOUT_SECONDS)
    parser.add_argument("--max-speakers", type=int, default=None, help="for quick tests")
    parser.add_argument(
        "--max-utterances-per-speaker", type=int, default=None, help="for quick tests"
    )
    args = parser.parse_args(argv)
    start = time.time()
    try:
        summary = build_corpus(
            args.out,
            args.seed,
            args.source_root,
            args.dev_speakers,
            args.test_speakers,
            tuple(args.utterance_seconds),
            tuple(args.pause_seconds),
            args.max_edge_silence,
            args.min_source_rate,
            args.min_heldout_seconds,
            args.max_speakers,
            args.max_utterances_per_speaker,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary, time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
