"""Listen to the reference models: their check clips decoded in every routing pass, with ViSQOL.

Each packaged model of ``--models`` encodes and decodes every check clip of its folder
(``<model>/check/*.wav``) in each routing pass it has: a DSL model ``full``, ``mixed``
(at its calibrated threshold) and ``light``, a model without a DSL only ``full``. The
decodes are written as 16-bit FLAC at the codec's rate (16 kHz) to
``<out>/<model folder>/<clip>.<pass>.flac`` and each is scored with ViSQOL (speech
mode, lattice model: :func:`speechbrain_dsl.evaluation.metrics.visqol`) against its
original clip. The result file (``--results``, JSON) keeps every score, the mixed
pass's light share, the file paths, the checksum of each model's weights, the command
and the CPU; ``--table`` prints the docs' table of a result file and runs nothing.

    python -m tools.listen --models pretrained/dsl-codec-16k pretrained/baseline-codec-16k \\
        --out docs/listen [--results docs/results/listen.json]
    python -m tools.listen --table docs/results/listen.json
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from benchmarks.batch_cost import machine, shown

ROOT = Path(__file__).resolve().parents[1]
#: The routing passes of a DSL model, in the table's order (a model without a DSL: ``full``).
PASSES = ("full", "mixed", "light")
#: The folder the generated table lives in (``docs/models.md``): its links are relative to it.
DOCS = ROOT / "docs"
REQUIRED_FILES = ("hyperparams.yaml", "codec.ckpt")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tools.listen", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--models", nargs="+", type=Path, help="packaged model folders")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "listen",
        help="folder of the decoded FLACs (default: docs/listen)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "docs" / "results" / "listen.json",
        help="the result file (JSON) to write (default: docs/results/listen.json)",
    )
    parser.add_argument(
        "--table", type=Path, metavar="JSON", help="print the table of a result file, run nothing"
    )
    args = parser.parse_args(argv)
    if args.table is not None:
        if not args.table.is_file():
            parser.error(f"--table: no result file {args.table}")
        return args
    if not args.models:
        parser.error("--models: name at least one packaged model folder (or use --table)")
    for folder in args.models:
        problem = folder_problem(folder)
        if problem:
            parser.error(f"--models: {folder} {problem}")
    names = [folder.resolve().name for folder in args.models]
    if len(set(names)) < len(names):
        parser.error(
            f"--models: two folders share a name ({', '.join(names)}): their decodes would collide"
        )
    return args


def folder_problem(folder: Path) -> Optional[str]:
    """What makes ``folder`` unusable as a packaged model with check clips (None: nothing)."""
    if not folder.is_dir():
        return "is not a folder"
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        return f"is not a packaged model: it has no {' or '.join(missing)}"
    if not check_clips(folder):
        return f"has no check clips ({folder / 'check'}/*.wav)"
    return None


def check_clips(folder: Path) -> List[Path]:
    """The check clips of a packaged model folder, sorted by name."""
    return sorted((folder / "check").glob("*.wav"))


# --- decoding and scoring -------------------------------------------------------------


def write_flac(path: Path, audio, sample_rate: int):
    """Writes ``audio`` ``[S]`` (floats, clipped to [-1, 1]) as 16-bit FLAC, atomically;
    returns what the file holds (float32), so the score is that of the file."""
    import numpy as np
    import soundfile as sf

    from speechbrain_dsl.atomic import atomic_path

    with atomic_path(path, suffix=".flac") as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return sf.read(path, dtype="float32")[0]


def listen_model(folder: Path, out: Path) -> Dict:
    """Decodes, writes and scores every check clip of ``folder`` in each of its passes."""
    import soundfile as sf
    import torch

    from speechbrain_dsl.evaluation.metrics import visqol
    from speechbrain_dsl.inference.interface import DSLCodecInterface
    from speechbrain_dsl.inference.manifest import sha256_file

    interface = DSLCodecInterface.from_hparams(
        source=str(folder), savedir=str(folder), engine="torch"
    )
    codec = interface.codec
    rate = interface.sample_rate
    passes = PASSES if codec.has_dsl else ("full",)
    clips = []
    for clip in check_clips(folder):
        audio, clip_rate = sf.read(clip, dtype="float32", always_2d=True)
        if clip_rate != rate:
            raise ValueError(f"{clip}: {clip_rate} Hz, expected the codec's {rate} Hz")
        original = torch.from_numpy(audio.mean(1))
        row = dict(
            clip=clip.name,
            original=shown(clip),
            original_sha256=sha256_file(clip),
            seconds=original.shape[-1] / rate,
            passes={},
        )
        for name in passes:
            encoded = interface.encode_with_routing(original[None], mode=name)
            decoded = interface.decode_batch(encoded.tokens)[0].cpu()
            decoded = torch.nn.functional.pad(
                decoded, (0, max(0, original.shape[-1] - decoded.shape[-1]))
            )[: original.shape[-1]]
            path = out / folder.resolve().name / f"{clip.stem}.{name}.flac"
            stored = torch.from_numpy(write_flac(path, decoded.numpy(), rate))
            score = float(visqol(stored[None], original[None], sample_rate=rate)[0])
            row["passes"][name] = dict(path=shown(path), visqol=_finite(score))
            if name == "mixed":
                row["passes"][name]["light_share"] = _finite(encoded.routing.light_share)
        clips.append(row)
        print(f"{folder.name}: {clip.name} done", file=sys.stderr)
    record = folder / "record.json"
    record = json.loads(record.read_text()) if record.is_file() else {}
    return dict(
        name=folder.resolve().name,
        folder=shown(folder),
        codec_sha256=sha256_file(folder / "codec.ckpt"),
        record={k: record[k] for k in ("name", "steps", "packaged_step") if k in record},
        dsl=codec.has_dsl,
        threshold=codec.threshold if codec.has_dsl else None,
        passes=list(passes),
        clips=clips,
    )


def _finite(value: float) -> Optional[float]:
    """``value``, or None for NaN (JSON has no NaN; ViSQOL of a silent clip is undefined)."""
    return None if math.isnan(value) else value


def run(args, argv: Sequence[str]) -> Dict:
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    models = [listen_model(folder, args.out) for folder in args.models]
    meta = dict(
        command="python -m tools.listen " + " ".join(argv),
        cpu=machine(),
        threads=1,
        engine="torch",
        visqol=f"visqol-python {_version('visqol-python')}: speech mode, lattice model, "
        "float64, 16 kHz",
        torch=torch.__version__,
        wall_seconds=round(time.perf_counter() - start, 1),
    )
    return dict(meta=meta, models=models)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown version"


# --- the table ------------------------------------------------------------------------


def table(result: Dict) -> str:
    """The Markdown table of a result file: a row per clip, a column per model and pass.

    Each cell links the decoded FLAC (relative to ``docs/``) and gives its ViSQOL (the
    mixed pass also its light share); the last row holds the mean of each column.
    """
    meta, models = result["meta"], result["models"]
    columns = [(model, name) for model in models for name in model["passes"]]
    clips = {}  # clip name -> {model name: its row}, in order of first appearance
    for model in models:
        for row in model["clips"]:
            clips.setdefault(row["clip"], {})[model["name"]] = row
    seconds = sorted({round(row["seconds"], 1) for rows in clips.values() for row in rows.values()})
    length = f"{seconds[0]:g} s" if len(seconds) == 1 else f"{seconds[0]:g} to {seconds[-1]:g} s"
    identities = "; ".join(
        f"`{model['name']}`: codec.ckpt sha256 `{model['codec_sha256'][:12]}`"
        + (f", mixed at its calibrated threshold {model['threshold']:.3f}" if model["dsl"] else "")
        for model in models
    )
    lines = [
        f"ViSQOL ({meta['visqol']}) of each decode against its original clip ({length}); "
        f"{identities}; {meta['engine']} engine on {meta['cpu']}, {meta['threads']} thread; "
        f"`{meta['command']}`",
        "",
        "| clip | original | "
        + " | ".join(f"`{model['name']}` {name}" for model, name in columns)
        + " |",
        "|---" * (2 + len(columns)) + "|",
    ]
    for clip, rows in clips.items():
        cells = [_cell(rows.get(model["name"]), name) for model, name in columns]
        lines.append(f"| {Path(clip).stem} | {_originals(rows)} | " + " | ".join(cells) + " |")
    means = []
    for model, name in columns:
        scores = [r["passes"][name] for r in model["clips"] if name in r["passes"]]
        mean = _mean([s["visqol"] for s in scores])
        text = "-" if mean is None else f"{mean:.2f}"
        if name == "mixed":
            share = _mean([s.get("light_share") for s in scores])
            text += "" if share is None else f", {share:.1%} light"
        means.append(f"**{text}**")
    lines.append("| **mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def _cell(row: Optional[Dict], name: str) -> str:
    """A decode's link and ViSQOL (and light share for ``mixed``); ``-`` where there is none."""
    if row is None or name not in row["passes"]:
        return "-"
    decode = row["passes"][name]
    score = "-" if decode["visqol"] is None else f"{decode['visqol']:.2f}"
    text = f"[{score}]({_link(decode['path'])})"
    if decode.get("light_share") is not None:
        text += f", {decode['light_share']:.0%} light"
    return text


def _originals(rows: Dict[str, Dict]) -> str:
    """Link(s) to a clip's original: one, or one per model where the models' clips differ."""
    links = {}  # sha256 -> (path, model)
    for model, row in rows.items():
        links.setdefault(row["original_sha256"], (row["original"], model))
    if len(links) == 1:
        return f"[wav]({_link(next(iter(links.values()))[0])})"
    return ", ".join(f"[wav ({model})]({_link(path)})" for path, model in links.values())


def _link(path: str) -> str:
    """``path`` (relative to the repository, or absolute) as a link from ``docs/``."""
    target = Path(path) if Path(path).is_absolute() else ROOT / path
    return Path(os.path.relpath(target, DOCS)).as_posix()


def _mean(values) -> Optional[float]:
    """Mean of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.table is not None:
        print(table(json.loads(args.table.read_text())))
        return 0
    from speechbrain_dsl.atomic import write_text

    result = run(args, argv)
    write_text(args.results, json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
