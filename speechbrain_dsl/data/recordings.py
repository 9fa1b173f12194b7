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
utterance and whether its text is a transcript or a gloss (see below).

Everything is built in a hidden staging folder inside ``DIR/LibriTTS`` (each file
written atomically) and the three subsets are then swapped in by renames, so a
second run gives the same corpus and never leaves files of the first behind.

Speakers
--------
One speaker per package and language folder, split further by the reader named
in the files' ``ARTIST`` tag (``ktuberling/ca`` has six readers, ``ktuberling/da``
one named and one untagged; :data:`READER_ALIASES` joins two spellings of one
name). There are no per-reader sub-folders in either tree. Left out:

- :data:`EXCLUDED_FOLDERS`: text-to-speech. ``klettres/nn/sounds.xml`` says its
  (uninstalled) files were made with CereVoice by Karl Ove Hufthammer and
  Øystein Steffensen-Alværvik; the Opus tags of ``ktuberling/nn`` credit the
  same two, so it is taken to be the same;
- clips whose bytes repeat an earlier clip (the four Serbian folders hold the
  same 15 files; ``fr`` and ``uk`` repeat some words under two names): the first
  in path order is kept;
- clips recorded below ``--min-source-rate`` (16 kHz: the 8 kHz recordings of
  es, fi, fr, it, nds, nl, pt and sv would be band-limited to 4 kHz in a 24 kHz
  corpus);
- KLettres clips that its ``sounds.xml`` does not list (no transcript; their
  file names are codes such as ``ad-22``);
- speakers with less than one utterance's worth of audio.

Whole speakers are held out for ``dev-recorded`` and ``test-recorded``,
deterministically for the seed, among the *eligible* ones: the only speaker of
their language in both packages (so a volunteer who recorded for both packages
cannot end up on both sides of the split; ``en`` and ``en_GB`` count as one
language), with at least ``min_heldout_seconds`` of source audio and at
most :data:`MAX_HELDOUT_CLIPPED_FRACTION` of samples at full scale (some
sources are clipped: 3.7% of ``klettres/ml``, 0.5% of ``ktuberling/sl``). The
rest train.

Utterances
----------
Each clip keeps its own silence around the words, up to ``--max-edge-silence``
(0.4 s) at each end: silence beyond that (some clips carry 2-4 s of it) is cut,
where silence is 10-ms frames more than :data:`EDGE_SILENCE_DB` below the clip's
loudest frame. A speaker's clips, shuffled by a generator seeded with the seed
and the speaker id, are joined with pauses of digital silence drawn from
``--pause-seconds`` (0.15-0.5 s) until the utterance reaches a length drawn
from ``--utterance-seconds`` (3-8 s); see :func:`plan_utterances` for the exact
rule. A speaker's utterances depend only on its own clips, the seed and these
options.

Text
----
KLettres clips are named by codes (``a-0.ogg``, ``U0061.ogg``): their text is the
letter or syllable that ``sounds.xml`` gives for the file (what is displayed
while it plays, e.g. ``B`` or ``കാ``). KTuberling clips are named by words, and
their text comes from the file name (:func:`words_from_stem`): the playground
prefix (``egypt_``, ``moon_``, ``patate_`` ...) is dropped, ``_``, ``-`` and
``.`` become spaces and letters are lower-cased. Many folders (ca, de, el, gl,
lt, ru, sl, uk, part of da) name their files by the *English* key of the object
(``egypt_camel.ogg`` holds the Galician word for camel): for them the text is an
English gloss, not a transcript, and ``recorded_sources.tsv`` says so
(``TEXT_IS`` is ``transcript``, ``gloss`` or ``mixed``). The rule, outside
English: a file is a gloss when its name gives the same words as a key of any
``<lang>.soundtheme`` or an English file name. So ``ca/patata_pilota.ogg`` (key
``ball``) is Catalan, ``wa/moon_radar.ogg`` counts as a gloss though the Walloon
word is the same, and a few English names that are no key (``de/shoes``,
``ca/bow-shoot``) count as transcripts. Native names lose accents and
apostrophes (``boucle-d-oreille``, ``nena`` for *nenä*). ``.original.txt`` holds
the names as in the sources (file stems, ``sounds.xml`` names) and
``.normalized.txt`` the words, both joined with spaces.

Audio
-----
Channels are averaged to mono, then resampled to 24 kHz with
``torchaudio.functional.resample`` and a Kaiser-windowed sinc of 64 zero
crossings (:data:`RESAMPLING`: the "kaiser_best" parameters of torchaudio's
resampling tutorial, as in resampy). torchaudio
is already a dependency (``soxr`` is not) and is well kept; its default filter
(Hann window, 6 zero crossings) lets a 12.5 kHz tone through at -9 dB when
downsampling 44.1 kHz to 24 kHz, this one at -120 dB. Levels are left as
recorded, except that a clip whose peak exceeds full scale after resampling is
scaled down, as a whole, to exactly full scale instead of being clipped; the
summary counts these and the largest cut. Many Vorbis files of clipped
recordings decode a little above 1.0 (ml, sl, nb: up to +7 dB), and most
``klettres/tn`` files were encoded 17-36 dB above full scale (their waveform is
intact, only too loud; ``tn/alpha/i.ogg`` also has a silent left channel).
Pauses are digital silence, so an utterance never exceeds full scale either.

On the packages of Debian 12 (22.12.3) with the defaults: 41 speakers (35
train, 3 dev, 3 test), 863 utterances, 1.44 h (1.28 h train), in one to two
minutes on one CPU core.

Example
-------
>>> words_from_stem("egypt_palmtree"), words_from_stem("naocare_za_sunce")
('palmtree', 'naocare za sunce')
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.synthetic import write_atomic_wav

SAMPLE_RATE = 24000
SUBSETS = ("train-recorded", "dev-recorded", "test-recorded")
TRAIN, DEV, TEST = SUBSETS

# Folder under --source-root -> the Debian package that installs it.
PACKAGES = {"ktuberling": "ktuberling-data", "klettres": "klettres-data"}
KTUBERLING_SOUNDS = Path("ktuberling") / "sounds"
KLETTRES = Path("klettres")
KLETTRES_INDEX = "sounds.xml"
AUDIO_SUFFIXES = (".ogg", ".opus", ".wav", ".flac")

# Disjoint from the espeak-ng generator's 100-9998; one block per package.
SPEAKER_ID_BASE = {"ktuberling": 10000, "klettres": 11000}
CHAPTER_ID = {"ktuberling": 1, "klettres": 2}
UNKNOWN_GENDER = "U"
SPEAKERS_HEADER = ("READER", "GENDER", "SUBSET", "NAME")
PROVENANCE_FILE = "recorded_sources.tsv"
PROVENANCE_HEADER = ("UTTERANCE", "SUBSET", "TEXT_IS", "SOURCES")
STAGING_PREFIX = ".recordings-staging-"

EXCLUDED_FOLDERS = {
    ("ktuberling", "nn"): "text-to-speech (CereVoice), like klettres/nn",
    ("klettres", "nn"): "text-to-speech (CereVoice), says its sounds.xml",
}
READER_ALIASES = {"Bernat": "Bernat Mas"}  # ktuberling/ca: one boy, two spellings
# Playground prefixes of KTuberling file names (not spoken), longest first.
SCENE_PREFIXES = tuple(
    sorted(
        (
            "butterflies_",
            "egypt_",
            "egypte_",
            "lune_",
            "moon_",
            "noel_",
            "papillons_",
            "patata_",
            "patate_",
            "pizza_",
            "pizzeria_",
            "robin_",
            "robot_",
            "robot_workshop_",
            "say-",
            "tux-",
            "tv_",
            "xmas_",
        ),
        key=len,
        reverse=True,
    )
)

DEFAULT_UTTERANCE_SECONDS = (3.0, 8.0)
DEFAULT_PAUSE_SECONDS = (0.15, 0.5)
DEFAULT_MAX_EDGE_SILENCE = 0.4
DEFAULT_MIN_SOURCE_RATE = 16000
DEFAULT_HELDOUT_SPEAKERS = 3
DEFAULT_MIN_HELDOUT_SECONDS = 40.0
EDGE_SILENCE_DB = -40.0  # below the clip's loudest frame
FRAME_SECONDS = 0.01
CLIP_LEVEL = 0.99  # a decoded sample this close to full scale counts as clipped
MAX_HELDOUT_CLIPPED_FRACTION = 1e-3
FULL_SCALE = 1.0
RESAMPLING = dict(  # "kaiser_best" (torchaudio's resampling tutorial)
    resampling_method="sinc_interp_kaiser",
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    beta=14.769656459379492,
)


@dataclass(frozen=True)
class Clip:
    """One source recording."""

    path: Path  # as found under the source root (symlinks not resolved)
    source: str  # path relative to the source root, POSIX style
    original: str  # its name in the sources (file stem or sounds.xml name)
    text: str  # the words
    gloss: bool  # ``text`` is an English gloss, not what is said
    sample_rate: int
    seconds: float


@dataclass
class Speaker:
    """The clips of one reader in one package and language folder."""

    id: int
    package: str
    folder: str
    reader: str
    name: str
    clips: list = field(default_factory=list)

    @property
    def language(self) -> str:
        """The language code without region or script (``en_GB`` -> ``en``)."""
        return language_of(self.folder)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.clips)


def language_of(folder: str) -> str:
    """The language of a locale folder name, without region, script or variant.

    Example
    -------
    >>> [language_of(f) for f in ("en_GB", "sr@ijekavianlatin", "pt_BR", "ca")]
    ['en', 'sr', 'pt', 'ca']
    """
    return re.split(r"[_@.]", folder)[0].lower()


def words_from_stem(stem: str) -> str:
    """The words of a KTuberling file name (without its suffix).

    Drops a playground prefix (:data:`SCENE_PREFIXES`), turns ``_``, ``-`` and
    ``.`` into spaces and lower-cases.

    Example
    -------
    >>> words_from_stem("patate_boucle-d-oreille")
    'boucle d oreille'
    >>> words_from_stem("Frier-Tux"), words_from_stem("robot_workshop_claw")
    ('frier tux', 'claw')
    """
    for prefix in SCENE_PREFIXES:
        if stem.lower().startswith(prefix) and len(stem) > len(prefix):
            stem = stem[len(prefix) :]
            break
    return re.sub(r"[_\-.\s]+", " ", stem).strip().lower()


def check_sources(source_root) -> dict:
    """The package folders under ``source_root``; raises if any is missing.

    Returns
    -------
    dict
        ``{"ktuberling": <root>/ktuberling/sounds, "klettres": <root>/klettres}``.

    Raises
    ------
    FileNotFoundError
        Naming the folders not found and the ``apt-get install`` command for
        just the missing packages.
    """
    root = Path(source_root)
    found = {"ktuberling": root / KTUBERLING_SOUNDS, "klettres": root / KLETTRES}
    present = {
        "ktuberling": any(found["ktuberling"].glob("*.soundtheme")),
        "klettres": any(found["klettres"].glob(f"*/{KLETTRES_INDEX}")),
    }
    missing = [name for name, ok in present.items() if not ok]
    if missing:
        where = ", ".join(f"{found[m]} (no recordings of {PACKAGES[m]})" for m in missing)
        raise FileNotFoundError(
            f"recordings not found: {where}. Install them with: sudo apt-get install "
            f"{' '.join(PACKAGES[m] for m in missing)}"
        )
    return found


def _audio_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _index(xml_path, prefix):
    """``{file path: name}`` of the ``<sound name= file=>`` entries of an index."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"cannot parse {xml_path}: {err}") from None
    return {
        prefix / s.get("file"): s.get("name")
        for s in root.iter("sound")
        if s.get("file") and s.get("name")
    }


def _candidates(found):
    """(package, folder, path, original, text, gloss) of every listed clip."""
    sounds = found["ktuberling"]
    themes = {theme: _index(theme, sounds) for theme in sorted(sounds.glob("*.soundtheme"))}
    english_names = {words_from_stem(k) for keys in themes.values() for k in keys.values()}
    english_names |= {
        words_from_stem(p.stem)
        for keys in themes.values()
        for p in keys
        if language_of(p.parent.name) == "en"
    }
    for theme in themes:
        folder = sounds / theme.stem
        if not folder.is_dir():
            continue
        english = language_of(folder.name) == "en"
        for path in _audio_files(folder):
            gloss = not english and words_from_stem(path.stem) in english_names
            yield "ktuberling", folder.name, path, path.stem, words_from_stem(path.stem), gloss
    letters = found["klettres"]
    for index in sorted(letters.glob(f"*/{KLETTRES_INDEX}")):
        names = _index(index, letters)
        for path in sorted(names):
            if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
                name = " ".join(names[path].split())
                yield "klettres", index.parent.name, path, name, name, False


def _file_digest(path):
    return hashlib.sha1(path.read_bytes()).hexdigest()


def discover_speakers(
    source_root="/usr/share",
    min_source_rate: int = DEFAULT_MIN_SOURCE_RATE,
    min_seconds: float = DEFAULT_UTTERANCE_SECONDS[0],
) -> tuple:
    """Finds the clips and groups them into speakers (see the module docstring).

    Speaker ids are given before clips are filtered by sample rate, so they do
    not depend on ``min_source_rate`` or ``min_seconds``.

    Arguments
    ---------
    source_root : str or Path
        The folder holding ``ktuberling/sounds`` and ``klettres``.
    min_source_rate : int
        Clips recorded at a lower sample rate are left out.
    min_seconds : float
        Speakers with less source audio than this are left out.

    Returns
    -------
    (list of Speaker, dict)
        Speakers by id, and counts of the clips left out, by reason.

    Raises
    ------
    FileNotFoundError
        If a package is not installed (names the ``apt-get`` command).
    ValueError
        For an index that does not parse or a recording that cannot be read.
    """
    found = check_sources(source_root)
    source_root = Path(source_root)
    skipped = {
        "text-to-speech": 0,
        "duplicate": 0,
        "low sample rate": 0,
        "not in sounds.xml": 0,
        "speaker too short": 0,
    }
    letters = found["klettres"]
    listed = {p for index in letters.glob(f"*/{KLETTRES_INDEX}") for p in _index(index, letters)}
    skipped["not in sounds.xml"] = sum(
        1
        for p in letters.glob("*/*/*")
        if p.suffix.lower() in AUDIO_SUFFIXES
        and p not in listed
        and ("klettres", p.parent.parent.name) not in EXCLUDED_FOLDERS
    )
    seen = set()
    groups = {}  # (package, folder, reader) -> clips
    for package, folder, path, original, text, gloss in _candidates(found):
        if (package, folder) in EXCLUDED_FOLDERS:
            skipped["text-to-speech"] += 1
            continue
        digest = _file_digest(path)
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(digest)
        try:
            with sf.SoundFile(str(path)) as f:
                rate, frames, artist = f.samplerate, f.frames, f.artist
        except RuntimeError as err:
            raise ValueError(f"unreadable recording {path}: {err}") from None
        reader = " ".join(artist.split())
        reader = READER_ALIASES.get(reader, reader)
        clip = Clip(
            path,
            path.relative_to(source_root).as_posix(),
            original,
            text,
            gloss,
            rate,
            frames / rate,
        )
        groups.setdefault((package, folder, reader), []).append(clip)

    speakers = []
    for package in PACKAGES:
        keys = sorted(k for k in groups if k[0] == package)
        for number, key in enumerate(keys):
            _, folder, reader = key
            several = sum(k[1] == folder for k in keys) > 1
            label = f" {reader or '(untagged)'}" if several else ""
            clips = [c for c in groups[key] if c.sample_rate >= min_source_rate]
            skipped["low sample rate"] += len(groups[key]) - len(clips)
            speaker = Speaker(
                SPEAKER_ID_BASE[package] + number,
                package,
                folder,
                reader,
                f"{package}/{folder}{label}",
                clips,
            )
            if speaker.seconds < min_seconds:
                skipped["speaker too short"] += len(clips)
            else:
                speakers.append(speaker)
    return speakers, skipped


def clipped_fraction(clips: Sequence[Clip]) -> float:
    """Share of decoded samples (any channel) at or above :data:`CLIP_LEVEL`."""
    clipped = total = 0
    for clip in clips:
        audio, _ = sf.read(str(clip.path), dtype="float32", always_2d=True)
        clipped += int(np.count_nonzero(np.abs(audio).max(axis=1) >= CLIP_LEVEL))
        total += len(audio)
    return clipped / max(total, 1)


def split_speakers(
    speakers: Sequence[Speaker],
    seed: int = 0,
    dev_speakers: int = DEFAULT_HELDOUT_SPEAKERS,
    test_speakers: int = DEFAULT_HELDOUT_SPEAKERS,
    min_heldout_seconds: float = DEFAULT_MIN_HELDOUT_SECONDS,
    max_clipped_fraction: float = MAX_HELDOUT_CLIPPED_FRACTION,
) -> dict:
    """Speaker id -> subset; held-out speakers drawn from the eligible ones.

    Eligible: the only speaker of its language (:func:`language_of`), at least
    ``min_heldout_seconds`` of source audio, at most ``max_clipped_fraction`` of
    its samples clipped (decoded only for speakers that pass the rest).

    Raises
    ------
    ValueError
        If fewer speakers are eligible than ``dev_speakers + test_speakers``.
    """
    per_language = {}
    for s in speakers:
        per_language[s.language] = per_language.get(s.language, 0) + 1
    eligible = [
        s
        for s in sorted(speakers, key=lambda s: s.id)
        if per_language[s.language] == 1 and s.seconds >= min_heldout_seconds
    ]
    wanted = dev_speakers + test_speakers
    if wanted <= len(eligible):  # decoding is slow: only when it can matter
        eligible = [s for s in eligible if clipped_fraction(s.clips) <= max_clipped_fraction]
    eligible = [s.id for s in eligible]
    if wanted > len(eligible):
        raise ValueError(
            f"--dev-speakers {dev_speakers} + --test-speakers {test_speakers} = {wanted} held-out "
            f"speakers wanted, but only {len(eligible)} are eligible (the only speaker of their "
            f"language, >= {min_heldout_seconds:g} s of audio, <= {max_clipped_fraction:.2%} "
            f"clipped samples)"
        )
    chosen = random.Random(f"{seed}-split").sample(eligible, wanted)
    subset_of = {s.id: TRAIN for s in speakers}
    subset_of.update({i: DEV for i in chosen[:dev_speakers]})
    subset_of.update({i: TEST for i in chosen[dev_speakers:]})
    return subset_of


def trim_edge_silence(
    audio: np.ndarray, sample_rate: int, keep_seconds: float, threshold_db: float = EDGE_SILENCE_DB
) -> np.ndarray:
    """Cuts leading and trailing silence beyond ``keep_seconds`` at each end.

    Silence: 10-ms frames whose RMS is more than ``threshold_db`` below the
    loudest frame's. Nothing inside the first and last loud frame is touched.

    Example
    -------
    >>> x = np.concatenate([np.zeros(3000), np.ones(1000), np.zeros(500)])
    >>> len(trim_edge_silence(x, 1000, keep_seconds=1.0))
    2500
    """
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    n = len(audio) // frame
    if n == 0:
        return audio
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return audio
    keep = int(round(keep_seconds * sample_rate))
    start = max(0, loud[0] * frame - keep)
    end = min(len(audio), (loud[-1] + 1) * frame + keep)
    return audio[start:end]


def load_clip(clip: Clip, max_edge_silence: float = DEFAULT_MAX_EDGE_SILENCE) -> np.ndarray:
    """A clip as 24-kHz mono float32, edge silence trimmed (levels untouched)."""
    audio, rate = sf.read(str(clip.path), dtype="float32", always_2d=True)
    mono = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1)))
    if rate != SAMPLE_RATE:
        mono = torchaudio.functional.resample(mono, rate, SAMPLE_RATE, **RESAMPLING)
    return trim_edge_silence(mono.numpy(), SAMPLE_RATE, max_edge_silence)


def plan_utterances(
    durations: Sequence[float],
    rng: random.Random,
    utterance_seconds=DEFAULT_UTTERANCE_SECONDS,
    pause_seconds=DEFAULT_PAUSE_SECONDS,
) -> list:
    """Groups clips into utterances: lists of ``(clip index, pause before it)``.

    Clips are taken in a shuffled order. Each utterance gets a target length
    drawn from ``utterance_seconds`` and is closed once it reaches it. A clip
    that would push it past the maximum starts the next utterance instead,
    unless the current one is still below the minimum (then the clip joins and
    the utterance ends a little long). A last utterance below the minimum joins
    the previous one if that stays within the maximum, and is dropped otherwise.

    Example
    -------
    >>> plan = plan_utterances([1.0] * 10, random.Random(0), (3, 5), (0.2, 0.2))
    >>> [len(u) for u in plan], sorted(i for u in plan for i, _ in u) == list(range(10))
    ([4, 3, 3], True)
    >>> plan[0][0][1], plan[0][1][1]  # no pause before the first clip
    (0.0, 0.2)
    """
    lo, hi = utterance_seconds
    order = list(range(len(durations)))
    rng.shuffle(order)
    plan, current, length = [], [], 0.0
    target = rng.uniform(lo, hi)
    for index in order:
        pause = rng.uniform(*pause_seconds) if current else 0.0
        if current and length + pause + durations[index] > hi and length >= lo:
            plan.append(current)
            current, length, pause, target = [], 0.0, 0.0, rng.uniform(lo, hi)
        current.append((index, pause))
        length += pause + durations[index]
        if length >= target:
            plan.append(current)
            current, length, target = [], 0.0, rng.uniform(lo, hi)
    if current and length >= lo:
        plan.append(current)
    elif current and plan:
        last = sum(pause + durations[i] for i, pause in plan[-1])
        pause = rng.uniform(*pause_seconds)
        if last + pause + length <= hi:
            plan[-1] = plan[-1] + [(current[0][0], pause)] + current[1:]
    return plan


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
