"""The README's table of reference models, from their training records (``record.json``).

Each row is a routing pass of a model's test stage (held-out speakers); the columns
name the model, its steps and CPU hours along its lineage, and the device it was
trained on, so the table never holds a retyped number.

    python -m tools.results_table pretrained/dsl-codec-16k pretrained/baseline-codec-16k
"""

import argparse
import json
from pathlib import Path

PASSES = ("full", "light", "mixed")


def rows(folder: Path):
    """Markdown rows of one packaged model's test stage."""
    record = json.loads((folder / "record.json").read_text())
    test = record.get("test") or {}
    out = []
    for name in PASSES:
        if f"mel_{name}" not in test:
            continue
        share = f"{test['light_share']:.1%}" if name == "mixed" and "light_share" in test else "-"
        out.append(
            f"| {folder.name} | {record['steps']} | {record['wall_hours']:.1f} | {name} | "
            f"{test[f'mel_{name}']:.3f} | {test[f'visqol_{name}']:.2f} | "
            f"{test[f'visqol_{name}@test-clean']:.2f} | "
            f"{test[f'visqol_{name}@test-recorded']:.2f} | {share} |"
        )
    return out, record.get("device", "unknown device")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="+", help="packaged model folders")
    args = parser.parse_args(argv)
    lines = [
        "| model | steps | CPU hours | pass | mel distance | ViSQOL | ViSQOL test-clean "
        "| ViSQOL test-recorded | light share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    devices = {}
    for folder in args.packages:
        table_rows, device = rows(Path(folder))
        lines += table_rows
        devices[Path(folder).name] = device
    print("\n".join(lines))
    print()
    for name, device in devices.items():
        print(f"- {name}: trained on {device}")


if __name__ == "__main__":
    main()
