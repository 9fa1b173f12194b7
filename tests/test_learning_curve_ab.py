"""The per-step A/B benchmark resumes exactly where it stopped."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import learning_curve_ab  # noqa: E402  (a broken module fails here, it is not skipped)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny LibriTTS-like folder: harmonic tones with pauses, 24 kHz."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for subset, count in (("train-clean-100", 6), ("dev-clean", 2)):
        for i in range(count):
            t = np.arange(int(2.5 * 24000)) / 24000
            f0 = rng.uniform(100, 220)
            audio = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
            audio *= 0.1 * (np.sin(2 * np.pi * 1.5 * t) > 0)
            folder = root / subset / "1" / "1"
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"1_1_{i}.wav", audio.astype(np.float32), 24000)
    return root


def _rows(capsys, corpus, out, steps):
    argv = [
        "--data", str(corpus), "--train-subsets", "train-clean-100",
        "--valid-subsets", "dev-clean", "--steps", str(steps), "--every", "1",
        "--seeds", "1", "--batch", "2", "--valid-utterances", "1", "--json",
    ]  # fmt: skip
    assert learning_curve_ab.main(argv + ([] if out is None else ["--out", str(out)])) == 0
    return json.loads(capsys.readouterr().out)


def test_a_resumed_run_equals_an_uninterrupted_one(corpus, tmp_path, capsys):
    whole = _rows(capsys, corpus, None, 2)
    assert [(r["step"], r["config"]) for r in whole] == [
        (1, "previous"), (1, "default"), (2, "previous"), (2, "default"),
    ]  # fmt: skip
    first = _rows(capsys, corpus, tmp_path, 1)  # "killed" after step 1
    assert (tmp_path / "seed1.pt").exists()
    assert not list(tmp_path.glob("*.tmp*"))  # nothing half-written is left
    resumed = _rows(capsys, corpus, tmp_path, 2)
    assert resumed[:2] == first
    assert resumed == whole  # same batches, gains, optimizer state: the same numbers


def test_a_state_from_elsewhere_is_refused_with_its_path(corpus, tmp_path, capsys):
    (tmp_path / "seed1.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="seed1.pt"):
        _rows(capsys, corpus, tmp_path, 1)
