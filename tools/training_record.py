"""The training record of a packaged codec: learning curve, TRAINING.md and a re-measurable check.

    python -m tools.training_record <recipe output folder> --out pretrained/dsl-codec-16k \
        --corpus-command "python -m speechbrain_dsl.data.synthetic libritts ..." --device "CPU, ..."

Reads the recipe's ``train_log.txt`` (validation metrics per epoch and the test
stage), ``log.txt`` (wall time of every run, restarts included), ``hyperparams.yaml``
(seed) and the packaged checkpoint's ``CKPT.yaml`` (its epoch), and writes into ``--out`` (a folder made by
:mod:`speechbrain_dsl.inference.package`):

- ``learning_curve.png``: validation mel distance and ViSQOL against optimizer steps;
- ``check/``: a few held-out clips and ``check.json``, the packaged model's mel
  distance and light share on them, which the test suite re-measures;
- ``TRAINING.md``: corpus recipe and seed, steps, wall time, device, test metrics
  per pass, the curve and the check; ``record.json`` holds the same numbers.

A run that continued another one (a campaign forked from an earlier run's
checkpoint, as ``TRAINING.md`` at the repository root describes) names its
lineage with ``--earlier <run folder>:<step>`` (oldest first, repeatable): that
run's validation records up to the step it was forked at come first in the curve
and the table, and its wall time up to that step is added to the total.
"""

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

import numpy as np

from speechbrain_dsl.atomic import write_json, write_text
from speechbrain_dsl.evaluation.check_clips import PASSES, light_share_by_level, write_check_clips

#: The codec recipe's default ``checkpoint_key``: its checkpointer keeps the lowest,
#: the packager takes it.
BEST_KEY = "mel_full"


def best_key(run_folder):
    """The metric that picked the run's best checkpoint (its ``checkpoint_key``).

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "hyperparams.yaml").write_text("checkpoint_key: mel_light  # why\\n")
    >>> best_key(run)
    'mel_light'
    >>> _ = (run / "hyperparams.yaml").write_text("seed: 1\\n")  # older runs: mel_full
    >>> best_key(run)
    'mel_full'
    """
    path = Path(run_folder) / "hyperparams.yaml"
    text = path.read_text() if path.is_file() else ""
    match = re.search(r"^checkpoint_key:\s*(\w+)", text, re.M)
    return match.group(1) if match else BEST_KEY


def _number(text):
    try:
        return float(text)
    except ValueError:
        return text.strip()


def parse_train_log(path):
    """Validation and test records of a SpeechBrain ``FileTrainLogger`` file.

    Returns ``(valid, test)``: a list of dicts (one per epoch, keys like
    ``optimizer_step``, ``valid mel_full``) and the last test record (or None).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "w").write("epoch: 1, optimizer_step: 45 - train loss: 3.0 - valid mel_full: 1.5\\n"
    ...                           "Epoch loaded: 1 - test mel_full: 1.4\\n")
    >>> parse_train_log(path)
    ([{'epoch': 1.0, 'optimizer_step': 45.0, 'train loss': 3.0, 'valid mel_full': 1.5}], {'Epoch loaded': 1.0, 'test mel_full': 1.4})
    """
    valid, test = [], None
    for line in Path(path).read_text().splitlines():
        record = {}
        for part in line.split(" - "):
            for item in part.split(", "):
                if ": " in item:
                    key, value = item.split(": ", 1)
                    record[key.strip()] = _number(value)
        if "Epoch loaded" in record:
            test = record
        elif "epoch" in record and any(key.startswith("valid ") for key in record):
            valid.append(record)  # epochs run without validation log training terms only
    return valid, test


#: Lines a run logs as it starts (SpeechBrain's quirks, then "Beginning experiment!").
RUN_START = (" - speechbrain.utils.quirks - ", "Beginning experiment!")


def wall_seconds(log_txt, until_step=None):
    """Seconds the recipe ran, summed over its runs (each starts with the lines of
    ``RUN_START``; the time between a run's last line and the next start is idle).

    With ``until_step``, only up to the line that logs the epoch ending at that
    optimizer step (the time a run forked from there had spent).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "w").write(
    ...     "2026-01-01 10:00:00,0 - speechbrain.utils.quirks - INFO - Applied quirks\\n"
    ...     "2026-01-01 10:00:00,0 - core - INFO - Beginning experiment!\\n"
    ...     "2026-01-01 10:30:00,0 - train_logger - INFO - epoch: 1, optimizer_step: 5\\n"
    ...     "2026-01-01 11:00:00,0 - train_logger - INFO - epoch: 2, optimizer_step: 10\\n"
    ...     "2026-01-01 13:00:00,0 - speechbrain.utils.quirks - INFO - Applied quirks\\n"
    ...     "2026-01-01 13:00:00,0 - core - INFO - Beginning experiment!\\n"
    ...     "2026-01-01 13:30:00,0 - train_logger - INFO - epoch: 3, optimizer_step: 15\\n")
    >>> wall_seconds(path), wall_seconds(path, until_step=5)
    ((5400.0, 2), (1800.0, 1))
    """
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ - ")
    step = re.compile(r" - epoch: \d+, optimizer_step: (\d+)")
    runs, first, last, starting = [], None, None, True
    for line in Path(log_txt).read_text().splitlines():
        match = stamp.match(line)
        if not match:
            continue
        when = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        if any(marker in line for marker in RUN_START):
            if first is not None and not starting:  # a new run: close the last one
                runs.append((last - first).total_seconds())
                first = None
            starting = True
        else:
            starting = False
        first = first or when
        last = when
        logged = step.search(line)
        if until_step is not None and logged and int(logged.group(1)) >= until_step:
            break
    else:
        if until_step is not None:
            raise ValueError(f"{log_txt} logs no epoch ending at optimizer step {until_step}")
    if first is not None:
        runs.append((last - first).total_seconds())
    return sum(runs), len(runs)


def parse_earlier(text):
    """``"<run folder>:<step>"`` -> ``(Path, step)``, checked (``--earlier``)."""
    folder, _, step = text.rpartition(":")
    if not folder or not step.isdigit():
        raise ValueError(f"--earlier: expected <run folder>:<optimizer step>, got {text!r}")
    if not (Path(folder) / "train_log.txt").is_file():
        raise ValueError(f"--earlier: {folder} holds no train_log.txt (not a recipe output folder)")
    return Path(folder), int(step)


def lineage(run_folder, earlier=()):
    """Validation records and wall time of a run and the runs it continued.

    ``earlier``: ``(folder, step)`` pairs, oldest first; each run contributes its
    records up to its fork step, the next run its records after it. Returns
    ``(valid, parts)``: the records, each with a ``run`` key (its folder's
    name), and per run ``{"run", "from_step", "to_step", "hours", "runs"}``. Steps
    count along the lineage: a run whose own count starts again (``--init_from``
    a package) is placed after the fork, its own step kept as ``run_step``.
    """
    valid, parts, start = [], [], 0
    for folder, fork in [*earlier, (Path(run_folder), None)]:
        records, _ = parse_train_log(folder / "train_log.txt")
        # A run started with --init_from counts its steps from 0 again: its records
        # continue the lineage at the previous fork (run_step keeps its own count).
        offset = start if records and records[0]["optimizer_step"] <= start else 0
        kept = [
            {**r, "run": folder.name, "run_step": r["optimizer_step"],
             "optimizer_step": r["optimizer_step"] + offset}
            for r in records
            if r["optimizer_step"] + offset > start and (fork is None or r["optimizer_step"] <= fork)
        ]  # fmt: skip
        if fork is not None and not any(r["run_step"] == fork for r in kept):
            raise ValueError(f"{folder / 'train_log.txt'} has no validation at step {fork}")
        seconds, runs = wall_seconds(folder / "log.txt", until_step=fork)
        to_step = (
            fork + offset if fork is not None else (kept[-1]["optimizer_step"] if kept else start)
        )
        parts.append(
            dict(run=folder.name, from_step=start, to_step=int(to_step), hours=seconds / 3600,
                 runs=runs)
        )  # fmt: skip
        valid += kept
        start = to_step if fork is not None else start
    return valid, parts


def learning_curve(valid, path, title=""):
    """Validation mel distance (per pass) and ViSQOL against optimizer steps, as one PNG.

    Records of several runs (a ``run`` key, see :func:`lineage`) are drawn as one
    curve with a dotted line where each later run took over.
    """
    from speechbrain_dsl.evaluation.plots import COLORS, _save, plt

    steps = [r["optimizer_step"] for r in valid]
    forks = [a["optimizer_step"] for a, b in zip(valid, valid[1:]) if a.get("run") != b.get("run")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for metric, ax, label in (
        ("mel", axes[0], "mel distance (lower is better)"),
        ("visqol", axes[1], "ViSQOL MOS-LQO (speech, lattice)"),
    ):
        for name in PASSES:
            key = f"valid {metric}_{name}"
            if any(key in r for r in valid):
                ax.plot(
                    steps,
                    [r.get(key, np.nan) for r in valid],
                    "o-",
                    ms=3,
                    label=name,
                    color=COLORS[name],
                )
        if metric == "visqol":  # per validation subset too (generated vs recorded speech)
            subsets = sorted({k.split("@", 1)[1] for r in valid for k in r if "visqol_full@" in k})
            for subset, style in zip(subsets, ("--", "-.", ":")):
                key = f"valid visqol_full@{subset}"
                ax.plot(
                    steps,
                    [r.get(key, np.nan) for r in valid],
                    style,
                    lw=1,
                    label=f"full, {subset}",
                    color=COLORS["full"],
                )
        for fork in forks:
            ax.axvline(fork, color="gray", ls=":", lw=1)
        ax.set_xlabel("optimizer step" + (" (dotted: the next run of the lineage)" * bool(forks)))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def _test_entries(manifest, data_folder=None):
    entries = json.loads(Path(manifest).read_text())
    root = _data_root(Path(manifest).parents[1], data_folder)
    for entry in entries.values():
        entry["wav"] = entry["wav"].replace("{data_root}", str(root))
    return entries


def write_check(
    codec, manifest, folder, clips=6, seconds=3.0, seed=0, data_folder=None, noise_clips=2
):
    """Stores ``clips`` held-out utterances (first ``seconds``) and the codec's numbers on them.

    ``data_folder`` (default: the run's ``data_folder`` setting) resolves the
    manifest's ``{data_root}``. Utterances of recorded subsets (``*-recorded``: real
    recordings whose licence is not ours) are never copied into the folder. Where
    the test set has non-speech subsets (``*-noise``), ``noise_clips`` of the clips
    come from them, so the check's mixed pass has audio a DSL should route light.
    """
    from speechbrain_dsl.probing.embedding_cache import read_clip

    entries = {
        utt: e
        for utt, e in _test_entries(manifest, data_folder).items()
        if "-recorded/" not in e["wav"]
    }
    noise = sorted(utt for utt, e in entries.items() if "-noise/" in e["wav"])
    speech = sorted(set(entries) - set(noise))
    rng = np.random.default_rng(seed)
    take_noise = min(noise_clips, len(noise), clips)
    chosen = rng.choice(speech, min(clips - take_noise, len(speech)), replace=False).tolist()
    chosen = sorted(chosen + rng.choice(noise, take_noise, replace=False).tolist())
    audio = {
        utt: read_clip(entries[utt]["wav"], codec.sample_rate)[: int(seconds * codec.sample_rate)]
        for utt in chosen
    }
    # the level targets of the codec recipe (its level_check_dbfs)
    return write_check_clips(codec, audio, folder, levels_dbfs=(-40.0, -25.0, -10.0))


def _data_root(run_folder, data_folder=None):
    """The LibriTTS root the recipe's manifests call ``{data_root}``."""
    if data_folder is None:
        match = re.search(
            r"^data_folder: (.+)$", (run_folder / "hyperparams.yaml").read_text(), re.M
        )
        if not match:
            raise ValueError(f"{run_folder / 'hyperparams.yaml'} names no data_folder")
        data_folder = match.group(1).strip()
    folder = Path(data_folder)
    return folder / "LibriTTS" if (folder / "LibriTTS").is_dir() else folder


def _table(test):
    """Test-stage rows per pass; a multi-subset test adds each subset's mel and ViSQOL.

    Example
    -------
    >>> print(_table({"test mel_full": 0.5, "test visqol_full": 3.1, "test sisnr_full": -30.0,
    ...               "test mel_full@test-clean": 0.4, "test visqol_full@test-clean": 3.3}))
    | pass | mel distance | ViSQOL | SI-SNR (dB) | mel test-clean | ViSQOL test-clean |
    |---|---|---|---|---|---|
    | full | 0.500 | 3.10 | -30.0 | 0.400 | 3.30 |
    """
    subsets = sorted({k.split("@", 1)[1] for k in test if k.startswith("test mel_full@")})
    nan = float("nan")
    rows = [
        "| pass | mel distance | ViSQOL | SI-SNR (dB) |"
        + "".join(f" mel {s} | ViSQOL {s} |" for s in subsets),
        "|---|---|---|---|" + "---|---|" * len(subsets),
    ]
    for name in PASSES:
        if f"test mel_{name}" not in test:
            continue
        rows.append(
            f"| {name} | {test[f'test mel_{name}']:.3f} | "
            f"{test.get(f'test visqol_{name}', nan):.2f} | "
            f"{test.get(f'test sisnr_{name}', nan):.1f} |"
            + "".join(
                f" {test.get(f'test mel_{name}@{s}', nan):.3f} |"
                f" {test.get(f'test visqol_{name}@{s}', nan):.2f} |"
                for s in subsets
            )
        )
    return "\n".join(rows)


def _own_count(record):
    """``"step N of `run`, "`` where a run counted its steps from 0 again, else ``""``."""
    own = int(record.get("run_step", record["optimizer_step"]))
    return "" if own == int(record["optimizer_step"]) else f"step {own} of `{record['run']}`, "


def _packaged_record(run_folder, valid):
    """The validation record of the checkpoint the packager takes (by its CKPT.yaml epoch)."""
    import yaml

    from speechbrain_dsl.training.checkpoints import find_codec_checkpoint

    key = best_key(run_folder)
    packaged = find_codec_checkpoint(run_folder / "save", min_key=key)
    meta = yaml.safe_load((packaged.parent / "CKPT.yaml").read_text()) or {}
    mine = [r for r in valid if r["run"] == run_folder.name]  # epochs restart with --init_from
    matches = [r for r in mine if int(r["epoch"]) == meta.get("epoch")]
    return matches[-1] if matches else min(mine, key=lambda r: r[f"valid {key}"])


def write_training_md(
    out,
    *,
    name,
    run_folder,
    corpus_command,
    train_command,
    device,
    notes="",
    levels=None,
    earlier=(),
):
    """Writes the learning curve, and TRAINING.md from the recipe's logs; returns the summary.

    ``earlier``: the runs this one continued, as :func:`lineage` takes them.
    """
    out, run_folder = Path(out), Path(run_folder)
    _, test = parse_train_log(run_folder / "train_log.txt")
    valid, parts = lineage(run_folder, earlier)
    if not valid:
        raise ValueError(f"{run_folder / 'train_log.txt'} holds no validation records")
    seconds = 3600 * sum(p["hours"] for p in parts)
    runs = sum(p["runs"] for p in parts)
    seed = re.search(r"^seed: (\d+)", (run_folder / "hyperparams.yaml").read_text(), re.M)
    learning_curve(valid, out / "learning_curve.png", title=name)
    last = valid[-1]
    steps = int(last["optimizer_step"])
    best = _packaged_record(run_folder, valid)
    check = (
        json.loads((out / "check" / "check.json").read_text())
        if (out / "check" / "check.json").is_file()
        else None
    )
    lines = [
        f"# {name}: training record",
        "",
        "| | |",
        "|---|---|",
        f"| corpus | `{corpus_command}` |",
        f"| training | `{train_command}` |",
        f"| seed | {seed.group(1) if seed else 'see hyperparams'} |",
        f"| optimizer steps | {steps} ({_own_count(last)}{int(last['epoch'])} epochs) |",
        f"| packaged checkpoint | epoch {int(best['epoch'])}, step {int(best['optimizer_step'])} "
        f"({_own_count(best)}lowest validation mel distance, "
        f"{best_key(run_folder).split('_', 1)[1]} pass) |",
        f"| wall time | {seconds / 3600:.2f} h over {runs} run(s), validation included |",
        f"| device | {device} |",
        "",
    ]
    if len(parts) > 1:
        lines += [
            "Lineage (each run continued the previous one from its checkpoint at the step "
            "where it starts here):",
            "",
            "| run | steps | wall time |",
            "|---|---|---|",
            *(
                f"| `{p['run']}` | {p['from_step']} -> {p['to_step']} | {p['hours']:.2f} h "
                f"over {p['runs']} run(s) |"
                for p in parts
            ),
            "",
        ]
    if test is not None:
        lines += ["## Held-out speakers (test stage of the recipe)", "", _table(test), ""]
        if "test light_share" in test:
            lines += [
                f"Mixed pass: {test['test light_share']:.1%} of segments light at the "
                f"calibrated threshold {test.get('test threshold', float('nan')):.4f}; "
                f"switch Spearman with the true distance "
                f"{test.get('test switch_spearman', float('nan')):.2f}.",
                "",
            ]
    if levels:
        lines += [
            f"Light share by segment level (mixed pass, calibrated threshold, "
            f"{sum(v['segments'] for v in levels.values())} one-second segments of held-out "
            f"utterances; silence-like = RMS under -45 dBFS):",
            "",
            "| segments | count | light share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['segments']} | "
            f"{'-' if v['light_share'] is None else format(v['light_share'], '.1%')} |"
            for k, v in levels.items()
        ]
        lines.append("")
    # ViSQOL per validation subset, where the recipe logged it (e.g. generated vs recorded)
    subsets = sorted(k.split("@", 1)[1] for k in last if k.startswith("valid visqol_full@"))
    lines += [
        "## Learning curve (validation, held-out speakers)",
        "",
        "![learning curve](learning_curve.png)",
        "",
        "| step | "
        + " | ".join(f"mel {p}" for p in PASSES if f"valid mel_{p}" in last)
        + " | ViSQOL full |"
        + "".join(f" ViSQOL {s} |" for s in subsets),
        "|---" * (2 + sum(f"valid mel_{p}" in last for p in PASSES) + len(subsets)) + "|",
    ]
    # the runs this one continued in a few rows, this run's own records in up to 12
    mine = [r for r in valid if r["run"] == run_folder.name]
    before = valid[: len(valid) - len(mine)]
    shown = before[:: max(1, len(before) // 8)] + mine[:: max(1, len(mine) // 12)]
    nan = float("nan")
    for record in shown + ([last] if shown[-1] is not last else []):
        cells = [
            f"{record.get(f'valid mel_{p}', nan):.3f}" for p in PASSES if f"valid mel_{p}" in last
        ]
        cells.append(f"{record.get('valid visqol_full', float('nan')):.2f}")
        cells += [f"{record.get(f'valid visqol_full@{s}', float('nan')):.2f}" for s in subsets]
        lines.append(f"| {int(record['optimizer_step'])} | " + " | ".join(cells) + " |")
    if check:
        lines += [
            "",
            "## Check clips (re-measured by the test suite)",
            "",
            f"`check/` holds {len(check['clips'])} held-out clips; on them the packaged "
            "model scores "
            + ", ".join(f"{k} {v:.4f}" for k, v in check.items() if k != "clips")
            + ".",
        ]
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    write_text(out / "TRAINING.md", "\n".join(lines) + "\n")
    summary = {
        "name": name,
        "steps": steps,
        "epochs": int(last["epoch"]),
        "wall_hours": seconds / 3600,
        "runs": runs,
        "lineage": parts,
        "device": device,
        "packaged_epoch": int(best["epoch"]),
        "packaged_step": int(best["optimizer_step"]),  # along the lineage
        "packaged_run_step": int(best["run_step"]),
        "packaged_by": best_key(run_folder),
        "test": None
        if test is None
        else {k[len("test ") :]: v for k, v in test.items() if k.startswith("test ")},
        "check": check,
        "light_share_by_level": levels,
    }
    write_json(out / "record.json", summary)  # the same numbers, for reports and tests
    return summary


def _same_weights(packaged, checkpoint):
    """True when ``packaged`` holds the weights ``checkpoint`` stands for (averaged, if so)."""
    import torch

    from speechbrain_dsl.training.weight_average import averaged_state

    ours = torch.load(packaged, map_location="cpu", weights_only=True)
    theirs = averaged_state(checkpoint)
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def main(argv=None):
    """Command-line entry point."""
    from speechbrain_dsl.inference.interface import DSLCodecInterface

    parser = argparse.ArgumentParser(
        prog="python -m tools.training_record", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_folder", help="the recipe's output folder")
    parser.add_argument("--out", required=True, help="packaged model folder")
    parser.add_argument("--name", default=None)
    parser.add_argument("--corpus-command", required=True)
    parser.add_argument("--train-command", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument(
        "--data-folder",
        default=None,
        help="the corpus, if the run's data_folder setting is relative or moved",
    )
    parser.add_argument("--notes", default="", help="markdown, or @file to read it from")
    parser.add_argument(
        "--earlier",
        action="append",
        default=[],
        metavar="FOLDER:STEP",
        help="a run this one continued, up to the step it was forked at (oldest first)",
    )
    args = parser.parse_args(argv)
    notes = Path(args.notes[1:]).read_text() if args.notes.startswith("@") else args.notes
    try:
        from speechbrain_dsl.training.checkpoints import find_codec_checkpoint

        earlier = [parse_earlier(text) for text in args.earlier]
        packaged = Path(args.out) / "codec.ckpt"
        key = best_key(args.run_folder)
        best = find_codec_checkpoint(Path(args.run_folder) / "save", min_key=key)
        if not packaged.is_file() or not _same_weights(packaged, best):
            raise ValueError(
                f"{packaged} is not the run's best checkpoint {best}: package it "
                f"first (python -m speechbrain_dsl.inference.package "
                f"{Path(args.run_folder) / 'save'} --min-key {key} "
                f"--out {args.out})"
            )
        codec = DSLCodecInterface.from_hparams(source=args.out, savedir=args.out).codec.eval()
        manifest = Path(args.run_folder) / "manifests" / "test.json"
        write_check(codec, manifest, args.out, data_folder=args.data_folder)
        levels = None
        if codec.has_dsl:
            from speechbrain_dsl.probing.embedding_cache import read_clip

            entries = _test_entries(manifest, args.data_folder)
            levels = light_share_by_level(
                codec,
                [
                    read_clip(entries[u]["wav"], codec.sample_rate)
                    for u in sorted(entries)[:: max(1, len(entries) // 60)]
                ],
            )
        summary = write_training_md(
            args.out,
            name=args.name or Path(args.out).name,
            run_folder=args.run_folder,
            corpus_command=args.corpus_command,
            train_command=args.train_command,
            device=args.device,
            notes=notes,
            levels=levels,
            earlier=earlier,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {Path(args.out) / 'TRAINING.md'}: {summary['steps']} steps, "
        f"{summary['wall_hours']:.2f} h"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
