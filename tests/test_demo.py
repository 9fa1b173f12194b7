"""`make demo QUICK=1` end to end: every stage through the real recipes, a report with numbers."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import ROOT

from tools.demo import STAGES


def demo(out, *args):
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--quick", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "quick"
    return out, demo(out)


def test_every_stage_reports_one_line_and_the_report_holds_numbers(quick_demo):
    out, stdout = quick_demo
    for stage in STAGES:
        assert re.search(rf"^\[{stage}\] .+", stdout, re.M), f"no summary line for {stage}"
        assert json.loads((out / "stages" / f"{stage}.json").read_text())["line"]
    report = (out / "REPORT.md").read_text()
    table = report.split("## The paper's numbers next to ours")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 10
    for row in rows:
        ours = row.split(" | ")[2]
        # a measured number, or "undefined" where the measure is (AUROC with one class)
        assert (re.search(r"\d", ours) or ours == "undefined") and "nan" not in ours.lower(), row
        assert row.rstrip(" |").split(" | ")[-1], "every row names its data source"
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / path).stat().st_size > 1000, path
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    for name in ("fig3a", "fig3bc", "fig4", "fig6", "fig7", "fig8", "confusion_"):
        assert any(name in f for f in figures), name
    assert f"| speechbrain | {metadata.version('speechbrain')} |" in report
    assert f"| torch | {metadata.version('torch')} |" in report


def test_rerun_skips_finished_stages_and_only_reruns_the_named_one(quick_demo):
    out, _ = quick_demo
    before = json.loads((out / "stages" / "probe_count.json").read_text())["finished"]
    stdout = demo(out, "--only", "probe_count")
    for stage in STAGES[:-1]:
        if stage != "probe_count":
            assert f"[{stage}] done before:" in stdout
    assert re.search(r"^\[probe_count\] accuracy", stdout, re.M)
    assert json.loads((out / "stages" / "probe_count.json").read_text())["finished"] > before
    assert "[report] wrote" in stdout  # the report always reflects the latest stages


def test_a_different_size_in_the_same_folder_is_refused(quick_demo):
    out, _ = quick_demo
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "quick" in result.stderr


def test_demo_without_the_recordings_says_what_they_would_add(tmp_path, monkeypatch):
    import tools.demo as demo

    monkeypatch.setattr(demo, "RECORDINGS_ROOT", str(tmp_path / "empty"))
    run = demo.Demo(tmp_path / "out", "quick")
    line = run.recorded_speech()
    assert "not added" in line and "would add" in line
    assert "apt-get install ktuberling-data klettres-data" in line
    assert run.libritts_subsets() == []  # trains on generated speech only
