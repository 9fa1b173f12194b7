"""The Speech Commands look-alike puts speakers in valid/test by the real set's hash rule."""

import hashlib
import json
import os
import random
import re
import sys

from conftest import ROOT

from speechbrain_dsl.data.synthetic import speech_commands_set

sys.path.append(str(ROOT / "recipes" / "SpeechCommands"))
from speech_commands_prepare import prepare_speech_commands  # noqa: E402

MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M


def which_set(filename, validation_percentage, testing_percentage):
    """The dataset README's rule, as published (sha1 needs bytes in Python 3)."""
    base_name = os.path.basename(filename)
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (
        100.0 / MAX_NUM_WAVS_PER_CLASS
    )
    if percentage_hash < validation_percentage:
        result = "validation"
    elif percentage_hash < (testing_percentage + validation_percentage):
        result = "testing"
    else:
        result = "training"
    return result


def test_the_generators_rule_is_the_readmes():
    rng = random.Random(0)
    names = [f"yes/{rng.getrandbits(32):08x}_nohash_{rng.randint(0, 4)}.wav" for _ in range(3000)]
    assert [speech_commands_set(n) for n in names] == [which_set(n, 10, 10) for n in names]
    assert {"validation", "testing", "training"} == {which_set(n, 10, 10) for n in names}


def test_validation_and_testing_lists_follow_the_hash_rule(speech_commands_data):
    root = speech_commands_data
    listed = {
        "validation": set((root / "validation_list.txt").read_text().split()),
        "testing": set((root / "testing_list.txt").read_text().split()),
    }
    files = sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*_nohash_*.wav"))
    assert len(files) > 300 and listed["validation"] and listed["testing"]
    for name in files:
        expected = which_set(name, 10, 10)
        assert (name in listed["validation"]) == (expected == "validation"), name
        assert (name in listed["testing"]) == (expected == "testing"), name
    assert listed["validation"] | listed["testing"] <= set(files)
    speakers = {
        split: {n.split("/")[1].split("_nohash_")[0] for n in names}
        for split, names in listed.items()
    }
    assert len(speakers["validation"]) == len(speakers["testing"]) == 1  # 10 speakers: 10% each


def test_prepare_by_lists_gives_the_splits_of_the_hash_rule(speech_commands_data, tmp_path):
    paths = prepare_speech_commands(speech_commands_data, tmp_path, task="35")
    expected = {"train": "training", "valid": "validation", "test": "testing"}
    for split, path in paths.items():
        entries = json.loads(path.read_text())
        assert entries
        assert {which_set(e["wav"], 10, 10) for e in entries.values()} == {expected[split]}
