"""The routing benchmark runs and reports every case with ratios to the full pass."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_routing_benchmark_json_rows():
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/encoder_routing.py",
            "--json",
            "--repeats",
            "1",
            "--seconds",
            "10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    cases = {(r["layout"], r["mode"], r["light_share"]) for r in rows}
    for layout in ("b60", "1x60s"):
        assert {(layout, "full", 0.0), (layout, "light", 1.0)} <= cases
        assert {(layout, "mixed", s) for s in (0.0, 0.3, 0.8, 1.0)} <= cases
    for r in rows:
        assert {"mode", "light_share", "wall_ratio", "mac_ratio"} <= set(r)
        if r["mode"] == "full":
            assert r["wall_ratio"] == 1.0 and r["mac_ratio"] == 1.0
        if r["mode"] == "mixed" and r["layout"] == "b60":
            # Executed MACs follow the forced light share (one segment per clip).
            assert abs(r["mac_ratio"] - r["predicted_mac_ratio"]) < 0.01
