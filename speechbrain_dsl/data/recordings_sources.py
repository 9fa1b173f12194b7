"""The source recordings: where Debian installs the KDE clips, what each says, and who reads it.

``ktuberling-data`` installs the names of KTuberling's playground objects
(``/usr/share/ktuberling/sounds/<lang>/``) and ``klettres-data`` the letters and
syllables of KLettres (``/usr/share/klettres/<lang>/{alpha,syllab}/``), read by
volunteers in about 20 languages. :func:`check_sources` finds them (or names the
``apt-get`` command for the missing ones) and :func:`discover_speakers` groups
their clips (:class:`Clip`) into speakers (:class:`Speaker`).

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
"""

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from speechbrain_dsl.data.recordings_utterances import DEFAULT_UTTERANCE_SECONDS

__all__ = [
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
]

# Folder under --source-root -> the Debian package that installs it.
PACKAGES = {"ktuberling": "ktuberling-data", "klettres": "klettres-data"}
KTUBERLING_SOUNDS = Path("ktuberling") / "sounds"
KLETTRES = Path("klettres")
KLETTRES_INDEX = "sounds.xml"
AUDIO_SUFFIXES = (".ogg", ".opus", ".wav", ".flac")

# Disjoint from the espeak-ng generator's 100-9998; one block per package.
SPEAKER_ID_BASE = {"ktuberling": 10000, "klettres": 11000}

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

DEFAULT_MIN_SOURCE_RATE = 16000


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
