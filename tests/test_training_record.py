"""A training record that spans a lineage of runs (a campaign forked from an earlier run)."""

import pytest

from tools.training_record import lineage, parse_earlier, wall_seconds


def _run(folder, epochs, start_hour):
    """A recipe output folder: ``train_log.txt`` and ``log.txt`` with one run."""
    folder.mkdir(parents=True)
    log = [f"2026-01-01 {start_hour:02d}:00:00,0 - speechbrain.core - INFO - Beginning experiment!"]
    train = []
    for i, (epoch, step, mel) in enumerate(epochs, 1):
        record = f"epoch: {epoch}, optimizer_step: {step} - train loss: 1.0 - valid mel_full: {mel}"
        train.append(record)
        log.append(f"2026-01-01 {start_hour + i:02d}:00:00,0 - train_logger - INFO - {record}")
    (folder / "train_log.txt").write_text("\n".join(train) + "\n")
    (folder / "log.txt").write_text("\n".join(log) + "\n")
    return folder


def test_lineage_joins_runs_at_their_fork_steps_with_the_time_spent_up_to_them(tmp_path):
    # phase 1 ran on past its fork step (15 is a branch not taken) ...
    first = _run(tmp_path / "phase1", [(1, 5, 0.9), (2, 10, 0.8), (3, 15, 0.85)], start_hour=0)
    # ... phase 2 continued from phase 1's step-10 checkpoint
    second = _run(tmp_path / "phase2", [(3, 15, 0.7), (4, 20, 0.6)], start_hour=10)
    valid, parts = lineage(second, [(first, 10)])
    assert [(r["run"], r["optimizer_step"], r["valid mel_full"]) for r in valid] == [
        ("phase1", 5, 0.9), ("phase1", 10, 0.8), ("phase2", 15, 0.7), ("phase2", 20, 0.6),
    ]  # fmt: skip
    assert [(p["run"], p["from_step"], p["to_step"], p["hours"]) for p in parts] == [
        ("phase1", 0, 10, 2.0),  # up to the line of step 10, not the branch after it
        ("phase2", 10, 20, 2.0),
    ]
    assert wall_seconds(first / "log.txt") == (3 * 3600, 1)


def test_a_run_started_from_a_package_continues_the_count_after_its_fork(tmp_path):
    first = _run(tmp_path / "baseline", [(1, 5, 0.9), (2, 10, 0.8)], start_hour=0)
    # --init_from a package of step 10: the retrofit counts its own steps from 0 again
    second = _run(tmp_path / "retrofit", [(1, 5, 0.75), (2, 10, 0.7)], start_hour=10)
    valid, parts = lineage(second, [(first, 10)])
    assert [(r["run"], r["optimizer_step"], r["run_step"]) for r in valid] == [
        ("baseline", 5, 5), ("baseline", 10, 10), ("retrofit", 15, 5), ("retrofit", 20, 10),
    ]  # fmt: skip
    assert [(p["run"], p["from_step"], p["to_step"]) for p in parts] == [
        ("baseline", 0, 10),
        ("retrofit", 10, 20),
    ]


def test_a_fork_step_that_was_never_validated_is_refused(tmp_path):
    first = _run(tmp_path / "phase1", [(1, 5, 0.9), (2, 10, 0.8)], start_hour=0)
    second = _run(tmp_path / "phase2", [(3, 15, 0.7)], start_hour=10)
    with pytest.raises(ValueError, match="no validation at step 7"):
        lineage(second, [(first, 7)])


def test_earlier_argument_names_what_is_wrong(tmp_path):
    run = _run(tmp_path / "phase1", [(1, 5, 0.9)], start_hour=0)
    assert parse_earlier(f"{run}:5") == (run, 5)
    with pytest.raises(ValueError, match="expected <run folder>:<optimizer step>"):
        parse_earlier(str(run))
    with pytest.raises(ValueError, match="holds no train_log.txt"):
        parse_earlier(f"{tmp_path / 'missing'}:5")


def test_check_clips_take_non_speech_where_the_test_set_has_it_and_never_recordings(tmp_path):
    import json

    import numpy as np
    import soundfile as sf
    import torch
    from conftest import make_codec

    from tools.training_record import write_check

    data = tmp_path / "LibriTTS"
    entries = {}
    for subset, count in (("test-clean", 5), ("test-noise", 3), ("test-recorded", 4)):
        (data / subset).mkdir(parents=True)
        for i in range(count):
            wav = data / subset / f"{subset}_{i}.wav"
            sf.write(wav, np.random.default_rng(i).normal(0, 0.1, 1600).astype("float32"), 16000)
            entries[f"{subset}_{i}"] = {"wav": "{data_root}/" + f"{subset}/{wav.name}"}
    manifest = tmp_path / "run" / "manifests" / "test.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps(entries))
    torch.manual_seed(0)
    stale = tmp_path / "pkg" / "check" / "from_an_earlier_package.wav"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"RIFF")
    write_check(make_codec().eval(), manifest, tmp_path / "pkg", clips=4, data_folder=tmp_path)
    names = json.loads((tmp_path / "pkg" / "check" / "check.json").read_text())["clips"]
    assert len(names) == 4
    assert sorted(p.name for p in stale.parent.glob("*.wav")) == sorted(names)
    assert sum("test-noise" in n for n in names) == 2  # the non-speech share of the check
    assert not any("test-recorded" in n for n in names)  # not ours to copy
