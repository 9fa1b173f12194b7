"""The README's table of reference models, from their training records (``record.json``).

Each row is a routing pass of a model's test stage (held-out speakers); the columns
name the model, its steps and CPU hours along its lineage, and the device it was
trained on, so the table never holds a retyped number.

    python -m tools.results_table pretrained/dsl-codec-16k pretrained/baseline-codec-16k
    python -m tools.results_table --checks pretrained/dsl-codec-16k ...   # the check clips

``--checks`` prints each model's check clips (linked from ``docs/``) with the numbers
of its ``check/check.json`` instead.
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


def check_rows(folders):
    """Markdown table of each model's check clips and the numbers in its check.json."""
    lines = [
        "| reference model | original clips | mel full | mel light | mel mixed "
        "| light share, mixed | level error dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in map(Path, folders):
        check = json.loads((folder / "check" / "check.json").read_text())
        clips = ", ".join(
            f"[{i}](../{folder.as_posix()}/check/{name})"
            for i, name in enumerate(check["clips"], 1)
        )

        levels = " / ".join(
            f"{check[k]:.3f}" for k in sorted(check, key=_level) if k.startswith("level_error")
        )
        lines.append(
            f"| `{folder.name}` | {clips} | {_number(check, 'mel_full')} | "
            f"{_number(check, 'mel_light')} | {_number(check, 'mel_mixed')} | "
            f"{_number(check, 'light_share_mixed', '{:.1%}')} | {levels or '-'} |"
        )
    return lines


def _number(check, key, fmt="{:.3f}"):
    """``check[key]`` formatted, ``-`` where the check did not record it."""
    return fmt.format(check[key]) if key in check else "-"


def _level(key):
    """Sort key of ``level_error_db@<dBFS>``: the quietest level first."""
    return float(key.split("@")[1]) if "@" in key else 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="+", help="packaged model folders")
    parser.add_argument("--checks", action="store_true", help="the check clips' table")
    args = parser.parse_args(argv)
    if args.checks:
        print("\n".join(check_rows(args.packages)))
        return
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
