"""The LibriTTS-layout corpus built from the recordings of ktuberling-data and klettres-data.

These tests read the installed Debian packages (CI installs them with
``apt-get install ktuberling-data klettres-data``); without them they fail with
the ``apt-get`` command to run. To stay quick, most build from a folder of
symlinks to a few languages of the real trees.
"""

import hashlib
import json
import random
import re
import sys
from pathlib import Path

import pytest
import soundfile as sf

from speechbrain_dsl.data import recordings
from speechbrain_dsl.data.recordings import (
    SPEAKER_ID_BASE,
    SUBSETS,
    build_corpus,
    discover_speakers,
    main,
    plan_utterances,
)
from speechbrain_dsl.data.synthetic import make_libritts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes" / "LibriTTS"))
from libritts_prepare import prepare_libritts  # noqa: E402

SYSTEM_ROOT = Path("/usr/share")
WAV_NAME = re.compile(r"^(\d+)_(\d+)_\d{6}_\d{6}\.wav$")
# A few languages: de has a speaker in each package (never held out); el, gl,
# wa, he and ar have one each; sr and sr@latin hold the same files.
KTUBERLING_LANGS = ("de", "el", "gl", "wa", "sr", "sr@latin")
KLETTRES_LANGS = ("de", "he", "ar")
QUICK = ["--dev-speakers", "1", "--test-speakers", "1", "--max-utterances-per-speaker", "2"]
ESPEAK_SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def link_sources(dest, ktuberling=KTUBERLING_LANGS, klettres=KLETTRES_LANGS):
    """A source root of symlinks to some language folders of the installed packages."""
    recordings.check_sources(SYSTEM_ROOT)  # fails with the apt-get command if absent
    if ktuberling:
        sounds = dest / "ktuberling" / "sounds"
        sounds.mkdir(parents=True)
        for lang in ktuberling:
            real = SYSTEM_ROOT / "ktuberling" / "sounds"
            (sounds / lang).symlink_to(real / lang, target_is_directory=True)
            (sounds / f"{lang}.soundtheme").symlink_to(real / f"{lang}.soundtheme")
    if klettres:
        (dest / "klettres").mkdir(parents=True)
        for lang in klettres:
            (dest / "klettres" / lang).symlink_to(
                SYSTEM_ROOT / "klettres" / lang, target_is_directory=True
            )
    return dest


def read_speakers(root):
    header, *rows = (root / "speakers.tsv").read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == ["READER", "GENDER", "SUBSET", "NAME"]
    return [row.split("\t") for row in rows]


def digests(root, subsets=SUBSETS):
    """Relative path -> sha1 of every file in ``subsets`` of ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for subset in subsets
        for p in sorted((root / subset).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return link_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sources):
    """A tiny espeak-ng corpus, then the recorded subsets merged into it (via the CLI)."""
    out = tmp_path_factory.mktemp("libritts")
    make_libritts(out, seed=1, speakers=3, utterances=2)
    assert main(["--out", str(out), "--source-root", str(sources), "--seed", "3", *QUICK]) == 0
    return out / "LibriTTS"


def test_layout_rate_and_transcripts(corpus):
    wavs = sorted(p for s in SUBSETS for p in (corpus / s).rglob("*.wav"))
    assert {w.relative_to(corpus).parts[0] for w in wavs} == set(SUBSETS)
    for wav in wavs:
        spk, chap = WAV_NAME.match(wav.name).groups()
        assert wav.parent.name == chap and wav.parent.parent.name == spk
        assert int(spk) >= min(SPEAKER_ID_BASE.values())
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        assert 2.0 < info.duration < 12.0
        normalized = wav.with_suffix(".normalized.txt").read_text(encoding="utf-8")
        original = wav.with_suffix(".original.txt").read_text(encoding="utf-8")
        assert normalized.strip() and original.strip()
        trans = (wav.parent / f"{spk}_{chap}.trans.tsv").read_text(encoding="utf-8")
        assert f"{wav.stem}\t{original}\t{normalized}" in trans.splitlines()
    assert not list(corpus.glob(".recordings-staging-*"))


def test_texts_come_from_file_names_and_the_klettres_index(corpus):
    rows = [
        r.split("\t")
        for r in (corpus / "recorded_sources.tsv").read_text(encoding="utf-8").splitlines()[1:]
    ]
    by_folder = {}
    for utt, subset, kind, sources in rows:
        folder = "/".join(sources.split(";")[0].split("/")[:-1])
        by_folder.setdefault(folder.split("/alpha")[0].split("/syllab")[0], set()).add(kind)
        wav = next((corpus / subset).glob(f"*/*/{utt}.wav"))
        text = wav.with_suffix(".normalized.txt").read_text(encoding="utf-8")
        if sources.startswith("ktuberling/"):  # words of the file names, prefix dropped
            stems = [Path(s).stem for s in sources.split(";")]
            assert text == " ".join(recordings.words_from_stem(s) for s in stems)
    # gl names its files by English keys (a gloss); wa by Walloon words (but a few,
    # like moon_radar, are spelled as in English); he by codes whose letters come
    # from sounds.xml, in Hebrew script.
    assert by_folder["ktuberling/sounds/gl"] == {"gloss"}
    assert by_folder["ktuberling/sounds/wa"] <= {"transcript", "mixed"}
    assert by_folder["klettres/he"] == {"transcript"}
    he = next(r for r in rows if r[3].startswith("klettres/he/"))
    he_text = next((corpus / he[1]).glob(f"*/*/{he[0]}.normalized.txt")).read_text("utf-8")
    assert re.search("[\u05d0-\u05ea]", he_text)
    assert not any(s.startswith("ktuberling/sounds/sr@latin/") for r in rows for s in [r[3]])


def test_held_out_speakers_are_unseen_whole_speakers_and_languages(corpus):
    rows = read_speakers(corpus)
    ours = {int(r[0]): r for r in rows if r[2] in SUBSETS}
    subsets = {s: {i for i, r in ours.items() if r[2] == s} for s in SUBSETS}
    assert len(subsets["dev-recorded"]) == 1 and len(subsets["test-recorded"]) == 1
    assert len(subsets["train-recorded"]) >= 3
    folders = {s: {p.name for p in (corpus / s).iterdir()} for s in SUBSETS}
    for subset in SUBSETS:
        assert folders[subset] == {str(i) for i in subsets[subset]}
    assert not folders["train-recorded"] & (folders["dev-recorded"] | folders["test-recorded"])
    language = {i: recordings.language_of(r[3].split()[0].split("/")[1]) for i, r in ours.items()}
    train_languages = {language[i] for i in subsets["train-recorded"]}
    for held in subsets["dev-recorded"] | subsets["test-recorded"]:
        assert language[held] not in train_languages and language[held] != "de"


def test_speakers_tsv_merges_with_the_espeak_corpus(corpus):
    rows = read_speakers(corpus)
    espeak = [r for r in rows if r[2] in ESPEAK_SUBSETS]
    ours = [r for r in rows if r[2] in SUBSETS]
    assert len(espeak) == 3 and len(ours) + len(espeak) == len(rows)
    assert all(int(r[0]) < 10000 for r in espeak) and all(int(r[0]) >= 10000 for r in ours)
    assert len({r[0] for r in rows}) == len(rows)
    for subset in ESPEAK_SUBSETS:
        assert list((corpus / subset).rglob("*.wav"))


def test_prepare_libritts_reads_both_corpora(corpus, tmp_path):
    paths = prepare_libritts(
        corpus,
        tmp_path,
        train_subsets=["train-clean-100", "train-recorded"],
        valid_subsets=["dev-clean", "dev-recorded"],
        test_subsets=["test-clean", "test-recorded"],
    )
    for split, espeak, ours in zip(("train", "valid", "test"), ESPEAK_SUBSETS, SUBSETS):
        entries = json.loads(Path(paths[split]).read_text())
        assert len(entries) == len(list((corpus / espeak).rglob("*.wav"))) + len(
            list((corpus / ours).rglob("*.wav"))
        )
        recorded = [e for e in entries.values() if e["wav"].startswith(f"{{data_root}}/{ours}/")]
        assert recorded and all(e["label"] and int(e["spk_id"]) >= 10000 for e in recorded)
        assert all(2.0 < e["duration"] < 12.0 for e in recorded)


def test_deterministic_idempotent_and_max_speakers_keeps_the_split(corpus, sources, tmp_path):
    out = tmp_path / "again"
    # Fewer speakers: same held-out speakers, and the kept ones are byte-identical.
    assert (
        main(
            [
                "--out",
                str(out),
                "--source-root",
                str(sources),
                "--seed",
                "3",
                *QUICK,
                "--max-speakers",
                "3",
            ]
        )
        == 0
    )
    few, full = digests(out / "LibriTTS"), digests(corpus)
    assert few and all(full.get(path) == digest for path, digest in few.items())
    held = lambda root: sorted(r[0] for r in read_speakers(root) if r[2] in SUBSETS[1:])
    assert held(out / "LibriTTS") == held(corpus)
    # Rebuilding in the same folder with all speakers: no stale files, the same corpus.
    for _ in range(2):
        build_corpus(
            out,
            seed=3,
            source_root=sources,
            dev_speakers=1,
            test_speakers=1,
            max_utterances_per_speaker=2,
        )
        assert digests(out / "LibriTTS") == full
        assert read_speakers(out / "LibriTTS") == [
            r for r in read_speakers(corpus) if r[2] in SUBSETS
        ]
    assert sorted(p.name for p in (out / "LibriTTS").iterdir()) == sorted(
        list(SUBSETS) + ["recorded_sources.tsv", "speakers.tsv"]
    )


def test_plan_utterances_uses_each_clip_once_within_the_lengths():
    rng = random.Random(5)
    durations = [rng.uniform(0.3, 2.5) for _ in range(200)]
    plan = plan_utterances(durations, random.Random(1), (3.0, 8.0), (0.15, 0.5))
    assert plan == plan_utterances(durations, random.Random(1), (3.0, 8.0), (0.15, 0.5))
    assert plan != plan_utterances(durations, random.Random(2), (3.0, 8.0), (0.15, 0.5))
    used = [i for u in plan for i, _ in u]
    assert len(used) == len(set(used)) and len(used) >= len(durations) - 5
    for utterance in plan:
        assert utterance[0][1] == 0.0 and all(0.15 <= p <= 0.5 for _, p in utterance[1:])
        assert 3.0 <= sum(p + durations[i] for i, p in utterance) <= 8.0 + 2.5


def test_full_trees_speakers_and_exclusions():
    """The claims of the module docstring about the installed trees."""
    speakers, skipped = discover_speakers(SYSTEM_ROOT)
    names = {s.name for s in speakers}
    assert not any(s.folder == "nn" for s in speakers)  # text-to-speech
    assert skipped["text-to-speech"] > 0 and skipped["low sample rate"] > 0
    assert skipped["duplicate"] >= 45  # 3 x 15 Serbian copies, and more
    assert sum(s.language == "sr" for s in speakers) == 1
    assert sum(s.package == "ktuberling" and s.folder == "ca" for s in speakers) == 6
    assert "ktuberling/ca Bernat" not in names
    assert all(c.sample_rate >= 16000 for s in speakers for c in s.clips)
    assert len({s.id for s in speakers}) == len(speakers)
    assert len(speakers) >= 30


@pytest.mark.parametrize("present", [(), ("ktuberling",), ("klettres",)])
def test_missing_packages_name_the_apt_get_command(tmp_path, capsys, present):
    source = link_sources(
        tmp_path / "src",
        ktuberling=("gl",) if "ktuberling" in present else (),
        klettres=("he",) if "klettres" in present else (),
    )
    source.mkdir(exist_ok=True)
    assert main(["--out", str(tmp_path / "out"), "--source-root", str(source)]) == 2
    err = capsys.readouterr().err
    missing = [p for p in ("ktuberling", "klettres") if p not in present]
    assert f"apt-get install {' '.join(m + '-data' for m in missing)}" in err
    for p in present:
        assert f"{p}-data" not in err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_named(sources, tmp_path, capsys):
    assert (
        main(
            ["--out", str(tmp_path), "--source-root", str(sources), "--utterance-seconds", "5", "2"]
        )
        == 2
    )
    assert "--utterance-seconds" in capsys.readouterr().err
    assert (
        main(["--out", str(tmp_path), "--source-root", str(sources), "--dev-speakers", "30"]) == 2
    )
    assert "--dev-speakers 30" in capsys.readouterr().err
    bad = tmp_path / "LibriTTS" / "speakers.tsv"
    bad.parent.mkdir()
    bad.write_text("SPEAKER\tSUBSET\n")
    assert main(["--out", str(tmp_path), "--source-root", str(sources), *QUICK]) == 2
    assert str(bad) in capsys.readouterr().err
    assert sorted(p.name for p in bad.parent.iterdir()) == ["speakers.tsv"]
