"""AudioSet Speech/Silence preparation and the look-alike set."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_dsl.data.synthetic import make_audioset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes" / "AudioSet"))
from audioset_prepare import prepare_audioset, read_segments  # noqa: E402


@pytest.fixture(scope="module")
def audioset(tmp_path_factory):
    return make_audioset(tmp_path_factory.mktemp("as"), seed=3, clips_per_class=6)


def test_look_alike_set_has_the_audioset_csv_format_and_clip_names(audioset):
    lines = (audioset / "eval_segments.csv").read_text().splitlines()
    assert all(line.startswith("#") for line in lines[:3]) and not lines[3].startswith("#")
    assert lines[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    ytid, start, end, labels = lines[3].split(", ", 3)
    assert len(ytid) == 11 and float(end) - float(start) == 10.0 and labels.startswith('"/')
    names = [p.name for p in (audioset / "audio").iterdir()]
    assert any(n.startswith("Y") and n.endswith(".wav") for n in names)
    assert any("_" in n[11:] for n in names)  # <YTID>_<start>.wav
    rows, malformed = read_segments(audioset / "eval_segments.csv")
    assert not malformed and len(rows) == 6 + 6 + 3 + 2
    for wav in (audioset / "audio").iterdir():
        info = sf.info(str(wav))
        assert info.samplerate == 16000 and info.duration == 10.0


def test_silence_clips_are_quiet_and_speech_clips_are_not(tmp_path, audioset):
    counts = prepare_audioset(
        audioset / "eval_segments.csv",
        audioset / "class_labels_indices.csv",
        audioset / "audio",
        tmp_path / "m.json",
    )
    entries = json.loads((tmp_path / "m.json").read_text())
    levels = {"speech": [], "silence": []}
    for entry in entries.values():
        audio, _ = sf.read(entry["wav"])
        levels[entry["label"]].append(20 * np.log10(np.sqrt(np.mean(audio**2)) + 1e-9))
    assert max(levels["silence"]) < -38 < min(levels["speech"])
    assert counts == {
        "speech": 6,
        "silence": 6,
        "missing": 2,
        "malformed": 0,
        "ambiguous": 0,
        "other": 3,
    }


def test_prepare_skips_and_counts_missing_malformed_and_ambiguous_rows(tmp_path, audioset):
    csv = tmp_path / "segments.csv"
    good = (audioset / "eval_segments.csv").read_text().splitlines()
    csv.write_text(
        "\n".join(
            good
            + [
                "broken line without fields",
                'abcdefghijk, 10.000, notanumber, "/m/09x0r"',
                'zzzzzzzzzzz, 5.000, 15.000, "/m/09x0r,/m/028v0c"',
                'yyyyyyyyyyy, 5.000, 15.000, "/m/09x0r"',
            ]
        )
        + "\n"
    )
    counts = prepare_audioset(
        csv, audioset / "class_labels_indices.csv", audioset / "audio", tmp_path / "m.json"
    )
    assert counts["malformed"] == 2 and counts["ambiguous"] == 1 and counts["missing"] == 3
    entries = json.loads((tmp_path / "m.json").read_text())
    assert len(entries) == 12 and {e["label"] for e in entries.values()} == {"speech", "silence"}
    assert all(Path(e["wav"]).is_file() and e["duration"] == 10.0 for e in entries.values())


def test_prepare_errors_name_what_is_wrong(tmp_path, audioset):
    labels, audio = audioset / "class_labels_indices.csv", audioset / "audio"
    with pytest.raises(ValueError, match="segments CSV not found: .*nope.csv"):
        prepare_audioset(tmp_path / "nope.csv", labels, audio, tmp_path / "m.json")
    with pytest.raises(ValueError, match="audio folder does not exist"):
        prepare_audioset(
            audioset / "eval_segments.csv", labels, tmp_path / "none", tmp_path / "m.json"
        )
    no_silence = tmp_path / "labels.csv"
    no_silence.write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n')
    with pytest.raises(ValueError, match="no Silence class"):
        prepare_audioset(audioset / "eval_segments.csv", no_silence, audio, tmp_path / "m.json")
    with pytest.raises(ValueError, match="no Speech or Silence clip"):
        prepare_audioset(audioset / "eval_segments.csv", labels, tmp_path, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()
