"""Old import paths of the 0.1 layout keep working completely, ``python -m`` included."""

import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_old_module_path_runs_as_a_program_and_names_the_new_one():
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "default",
            "-m",
            "speechbrain_dsl.efficiency",
            "hparams/soundstream_dsl.yaml",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"full_tail"' in result.stdout
    assert "speechbrain_dsl.evaluation.efficiency" in result.stderr


def test_old_module_path_imports_the_moved_module_with_a_warning():
    sys.modules.pop("speechbrain_dsl.calibration", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from speechbrain_dsl.calibration import largest_share_within
    from speechbrain_dsl.evaluation import calibration

    assert largest_share_within is calibration.largest_share_within
    assert any("speechbrain_dsl.evaluation.calibration" in str(w.message) for w in caught)
