"""Speech Commands and LibriCount: look-alike sets and prepare scripts."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from speechbrain_dsl.data.synthetic import make_libricount, make_speech_commands

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "recipes" / "SpeechCommands"), str(ROOT / "recipes" / "LibriCount")]
from libricount_prepare import prepare_libricount  # noqa: E402
from speech_commands_prepare import COMMANDS, WORDS, prepare_speech_commands  # noqa: E402


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    return make_speech_commands(tmp_path_factory.mktemp("sc"), seed=2, speakers=10)


@pytest.fixture(scope="module")
def libricount(tmp_path_factory):
    return make_libricount(tmp_path_factory.mktemp("lc"), seed=2, mixtures_per_count=2, max_count=3)


def test_speech_commands_look_alike_has_the_v002_layout(commands):
    folders = sorted(p.name for p in commands.iterdir() if p.is_dir())
    assert folders == sorted(WORDS + ["_background_noise_"]) and len(WORDS) == 35
    for wav in list(commands.glob("*/*.wav"))[:60]:
        if wav.parent.name != "_background_noise_":
            assert re.fullmatch(r"[0-9a-f]{8}_nohash_\d\.wav", wav.name)
            info = sf.info(str(wav))
            assert info.samplerate == 16000 and info.duration <= 1.0
    valid = (commands / "validation_list.txt").read_text().split()
    test = (commands / "testing_list.txt").read_text().split()
    speakers = lambda names: {n.split("/")[1].split("_")[0] for n in names}  # noqa: E731
    assert valid and test and not speakers(valid) & speakers(test)
    assert all((commands / name).is_file() for name in valid + test)


@pytest.mark.parametrize("task, classes", [("12", 12), ("35", 35)])
def test_speech_commands_prepare_builds_both_tasks(commands, tmp_path, task, classes):
    paths = prepare_speech_commands(commands, tmp_path, task=task)
    splits = {s: json.loads(p.read_text()) for s, p in paths.items()}
    for entries in splits.values():
        assert len({e["label"] for e in entries.values()}) == classes
    listed = set((commands / "validation_list.txt").read_text().split())
    assert {k for k in splits["valid"] if not k.startswith("_silence_")} == {
        n[:-4].replace("/", "_") for n in listed
    }
    if task == "12":
        labels = {e["label"] for e in splits["train"].values()}
        assert labels == set(COMMANDS) | {"_silence_", "_unknown_"}
        silence = [e for e in splits["train"].values() if e["label"] == "_silence_"]
        assert silence and all(e["stop"] - e["start"] == 16000 for e in silence)


def test_speech_commands_prepare_reports_a_broken_tree(commands, tmp_path):
    broken = tmp_path / "sc"
    shutil.copytree(commands, broken)
    (broken / "testing_list.txt").unlink()
    with pytest.raises(ValueError, match="missing testing_list.txt"):
        prepare_speech_commands(broken, tmp_path / "m1")
    shutil.copy(commands / "testing_list.txt", broken)
    shutil.rmtree(broken / "_background_noise_")
    with pytest.raises(ValueError, match="_background_noise_"):
        prepare_speech_commands(broken, tmp_path / "m2", task="12")
    prepare_speech_commands(broken, tmp_path / "m3", task="35")  # 35 needs no noise
    (broken / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"junk")
    with pytest.raises(ValueError, match="unreadable audio file .*deadbeef_nohash_0.wav"):
        prepare_speech_commands(broken, tmp_path / "m4", task="35")
    with pytest.raises(ValueError, match="task"):
        prepare_speech_commands(commands, tmp_path / "m5", task="20")


def test_libricount_look_alike_matches_the_real_layout(libricount):
    wavs = sorted((libricount / "test").glob("*.wav"))
    assert len(wavs) == 4 * 2
    for wav in wavs:
        assert re.fullmatch(r"\d+_[0-9a-f]+\.wav", wav.name)
        info = sf.info(str(wav))
        assert info.samplerate == 16000 and info.duration == 5.0
        meta = json.loads(wav.with_suffix(".json").read_text())
        assert len(meta) == int(wav.name.split("_")[0])
        for speaker in meta:
            assert set(speaker) == {"sex", "activity", "speaker_id"} and speaker["sex"] in "FM"
            assert all(0 <= s < e <= 5.0 for s, e in speaker["activity"])


def test_libricount_prepare_assigns_stratified_folds(libricount, tmp_path):
    entries = json.loads(prepare_libricount(libricount, tmp_path / "m.json", folds=2).read_text())
    assert len(entries) == 8
    assert {(e["count"], e["fold"]) for e in entries.values()} == {
        (k, f) for k in range(4) for f in range(2)
    }
    entries = json.loads(prepare_libricount(libricount, tmp_path / "m3.json", folds=3).read_text())
    sizes = [sum(e["fold"] == f for e in entries.values()) for f in range(3)]
    assert sorted(sizes) == [2, 3, 3]  # balanced across counts, no empty fold


def test_libricount_prepare_reports_broken_files(libricount, tmp_path):
    broken = tmp_path / "lc"
    shutil.copytree(libricount, broken)
    wav = sorted((broken / "test").glob("2_*.wav"))[0]
    wav.with_suffix(".json").write_text("[]")
    with pytest.raises(ValueError, match="says 2 speakers but .* lists 0"):
        prepare_libricount(broken, tmp_path / "m.json")
    wav.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="expected a JSON list"):
        prepare_libricount(broken, tmp_path / "m.json")
    wav.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="has no .*json"):
        prepare_libricount(broken, tmp_path / "m.json")
    with pytest.raises(ValueError, match="does not exist"):
        prepare_libricount(tmp_path / "none", tmp_path / "m.json")
