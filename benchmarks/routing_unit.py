"""Which routing unit? Light share, quality, MACs and wall time per segment length.

A packaged DSL model routes the same held-out utterances (``--utterances`` evenly
spaced per subset, cut to ``--seconds``) with segments of each ``--units`` length
(50 frames = 1 s at 50 frames/s). For every unit it tries the model's calibrated
threshold and the thresholds that send ``--shares`` of the speech segments light,
decodes the mixed pass and scores it with ViSQOL (speech mode, lattice model)
against the input, next to the full pass. The kept threshold is the largest whose
mean ViSQOL loss stays within ``--max-drop`` on every subset. At that threshold it
reports the executed encoder MACs (context recomputed at run boundaries included),
the encoder wall time at batch 1 and 16 (ratios to the full pass, one thread,
medians of ``--repeats`` round-robin runs) and the light share of the same
utterances scaled to each ``--levels`` dBFS.

    python benchmarks/routing_unit.py [--model pretrained/dsl-codec-16k]
        [--data data/corpus/LibriTTS] [--units 50,16,8] [--out FILE] [--json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from speechbrain_dsl.nnet.routing import decide

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ("test-clean", "test-recorded")


def shown(path) -> str:
    """``path`` relative to the repository when it is inside it (results name no checkout)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "dsl-codec-16k"))
    parser.add_argument("--data", default=str(ROOT / "data" / "corpus" / "LibriTTS"))
    parser.add_argument(
        "--subsets",
        default="test-clean,test-recorded,test-noise",
        help="subsets of --data (those missing are left out and named)",
    )
    parser.add_argument("--utterances", type=int, default=40, help="per subset")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--units", default="50,16,8", help="segment lengths in frames")
    parser.add_argument("--shares", default="0.05,0.1,0.2,0.3,0.4")
    parser.add_argument("--max-drop", type=float, default=0.05)
    parser.add_argument(
        "--budget-subsets",
        default=None,
        help="subsets the budget holds on (all read subsets by default)",
    )
    parser.add_argument("--levels", default="-35,-15", help="dBFS for the level check")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None, help="also write the result (JSON) here")
    parser.add_argument(
        "--table",
        default=None,
        metavar="JSON",
        help="print the table of a result file written by --out, run nothing",
    )
    return parser.parse_args(argv)


def read_subset(folder: Path, count: int, seconds: float):
    """``count`` evenly spaced utterances of ``folder`` at 16 kHz: padded batch and lengths."""

    files = sorted(folder.rglob("*.wav"))
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    clips = []
    for path in picked:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        audio = torch.from_numpy(audio.mean(1))
        if rate != 16000:
            audio = AF.resample(audio, rate, 16000)
        clips.append(audio[: int(seconds * 16000)])
    longest = max(len(c) for c in clips)
    wav = torch.zeros(len(clips), 1, longest)
    for i, c in enumerate(clips):
        wav[i, 0, : len(c)] = c
    return wav, torch.tensor([len(c) / longest for c in clips])


def scaled_to(wav, lengths, dbfs):
    """Each utterance scaled to ``dbfs`` RMS over its valid samples."""
    valid = torch.arange(wav.shape[-1])[None] < (lengths * wav.shape[-1])[:, None]
    power = (wav[:, 0].square() * valid).sum(-1) / valid.sum(-1)
    gain = 10 ** (dbfs / 20) / power.clamp(min=1e-12).sqrt()
    return (wav * gain[:, None, None]).clamp(-1, 1)


def median_ms(fns, repeats):
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]


class Study:
    """The model, the utterances and their full-pass scores, shared by every unit."""

    def __init__(self, codec, data):
        from speechbrain_dsl.evaluation.metrics import visqol

        self.codec, self.data, self.visqol = codec, data, visqol
        self.full, self.light = {}, {}
        with torch.no_grad():
            for name, (wav, lengths) in data.items():
                self.full[name] = self.score(wav, lengths, "full", None)
                self.light[name] = self.score(wav, lengths, "light", None)

    def score(self, wav, lengths, mode, threshold):
        with torch.no_grad():
            tokens, _ = self.codec.encode(wav, lengths, mode=mode, threshold=threshold)
            decoded = self.codec.decode(tokens, lengths)[..., : wav.shape[-1]]
        return self.visqol(decoded, wav, lengths).numpy()

    def routes(self, name):
        """Predictions and valid-segment mask of subset ``name`` at the current unit."""
        wav, lengths = self.data[name]
        with torch.no_grad():
            predicted = self.codec.predict_distances(wav, lengths)
        dsl = self.codec.encoder.dsl
        frames = predicted.shape[1] * dsl.segment_frames
        return predicted, dsl.valid_segments(lengths, frames, wav.shape[0], "cpu")

    def at_threshold(self, threshold):
        """Per subset: light share, mean full / mixed ViSQOL (re-scoring only what routes light)."""
        out = {}
        for name, (wav, lengths) in self.data.items():
            predicted, valid = self.routes(name)
            light = decide(predicted, "mixed", threshold) & valid
            mixed = self.full[name].copy()
            rows = light.any(1).nonzero().flatten()
            if len(rows):
                mixed[rows.numpy()] = self.score(
                    wav[rows], lengths[rows] / lengths[rows].max(), "mixed", threshold
                )
            keep = ~np.isnan(self.full[name])
            out[name] = dict(
                light_share=float(light.sum() / valid.sum()),
                visqol_full=float(self.full[name][keep].mean()),
                visqol_mixed=float(mixed[keep].mean()),
                visqol_drop=float(self.full[name][keep].mean() - mixed[keep].mean()),
            )
        return out

    def costs(self, threshold, repeats):
        """Executed MACs and encoder wall time, mixed / full, at batch 1 and 16."""
        from speechbrain_dsl.evaluation.efficiency import executed_macs

        result = {}
        for batch in (1, 16):
            groups = [self._batch(first, batch) for first in range(0, self._count(), batch)]
            macs = {m: 0 for m in ("full", "mixed")}
            context = written = 0
            for w, n in groups:
                for mode in macs:
                    macs[mode] += executed_macs(self.codec, w, mode, lengths=n, threshold=threshold)
                with torch.no_grad():
                    out = self.codec.encode_features(w, n, mode="mixed", threshold=threshold)[1]
                frames = out.features.shape[-1]
                for plan in self.codec.encoder.dsl.plan(out.route, frames, n).values():
                    context += plan.context_frames
                    written += plan.written_frames

            def run(mode, groups=groups):
                def go():
                    with torch.no_grad():
                        for w, n in groups:
                            self.codec.encode_features(w, n, mode=mode, threshold=threshold)

                return go

            full_ms, mixed_ms = median_ms([run("full"), run("mixed")], repeats)
            result[f"batch{batch}"] = dict(
                macs_ratio=macs["mixed"] / macs["full"],
                wall_ratio=mixed_ms / full_ms,
                context_share=context / max(written, 1),
            )
        return result

    def _speech(self):
        """The speech utterances, each cut to its own length ``[1, S]``."""
        clips = []
        for name in SPEECH:
            if name in self.data:
                wav, lengths = self.data[name]
                for w, n in zip(wav, lengths):
                    clips.append(w[..., : round(float(n) * wav.shape[-1])])
        return clips

    def _count(self):
        return len(self._speech())

    def _batch(self, first, size):
        """Utterances ``first`` to ``first + size`` as a padded batch and relative lengths."""
        group = self._speech()[first : first + size]
        longest = max(c.shape[-1] for c in group)
        wav = torch.zeros(len(group), 1, longest)
        for i, c in enumerate(group):
            wav[i, :, : c.shape[-1]] = c
        return wav, torch.tensor([c.shape[-1] / longest for c in group])

    def level_shares(self, threshold, levels):
        """Light share of each speech subset scaled to each level (dBFS)."""
        shares = {}
        for name in SPEECH:
            if name not in self.data:
                continue
            wav, lengths = self.data[name]
            for dbfs in levels:
                with torch.no_grad():
                    predicted = self.codec.predict_distances(scaled_to(wav, lengths, dbfs), lengths)
                _, valid = self.routes(name)
                light = decide(predicted, "mixed", threshold) & valid
                shares[f"{name}@{dbfs:g}"] = float(light.sum() / valid.sum())
        return shares


def run(args):
    torch.set_num_threads(1)
    from speechbrain_dsl.training.checkpoints import load_codec

    codec = load_codec(None, Path(args.model)).eval()
    root = Path(args.data)
    data, missing = {}, []
    for name in (s for s in args.subsets.split(",") if s):
        if (root / name).is_dir():
            data[name] = read_subset(root / name, args.utterances, args.seconds)
        else:
            missing.append(name)
    if not any(n in data for n in SPEECH):
        raise SystemExit(f"--data: {root} holds none of {SPEECH} (build the corpus: TRAINING.md)")
    study = Study(codec, data)
    budget = [n for n in (args.budget_subsets or ",".join(data)).split(",") if n in data]
    dsl = codec.encoder.dsl
    calibrated = dsl.threshold
    levels = [float(v) for v in args.levels.split(",") if v]
    units = []
    for unit in (int(u) for u in args.units.split(",")):
        dsl.segment_frames = unit
        speech = torch.cat(
            [p[v] for p, v in (study.routes(n) for n in SPEECH if n in data)]
        ).numpy()
        thresholds = {"calibrated": calibrated}
        for share in (float(s) for s in args.shares.split(",")):
            thresholds[f"{share:.0%} of speech"] = float(np.quantile(speech, share))
        tried = []
        for label, threshold in sorted(thresholds.items(), key=lambda kv: kv[1]):
            tried.append(
                dict(label=label, threshold=threshold, subsets=study.at_threshold(threshold))
            )
        within = [
            t for t in tried if all(t["subsets"][n]["visqol_drop"] <= args.max_drop for n in budget)
        ]
        kept = max(within, key=lambda t: t["threshold"]) if within else None
        row = dict(unit_frames=unit, unit_ms=unit * 20, tried=tried, kept=kept)
        # costs and levels at the kept threshold, or the calibrated one when none is kept
        reported = kept or next(t for t in tried if t["label"] == "calibrated")
        row["reported"] = reported["label"]
        row["costs"] = study.costs(reported["threshold"], args.repeats)
        row["levels"] = study.level_shares(reported["threshold"], levels)
        speech_frames = {n: data[n][1].sum().item() for n in SPEECH if n in data}
        total = sum(speech_frames.values())
        row["speech_light_share"] = sum(
            reported["subsets"][n]["light_share"] * f / total for n, f in speech_frames.items()
        )
        units.append(row)
        print(f"unit {unit} frames done", file=sys.stderr)
    meta = dict(
        model=shown(args.model),
        data=shown(root),
        subsets=list(data),
        missing=missing,
        utterances={n: int(w.shape[0]) for n, (w, _) in data.items()},
        seconds=args.seconds,
        max_drop=args.max_drop,
        budget_subsets=budget,
        calibrated_threshold=calibrated,
        visqol_full={n: float(np.nanmean(v)) for n, v in study.full.items()},
        visqol_light={n: float(np.nanmean(v)) for n, v in study.light.items()},
        cpu=_cpu(),
        command="python benchmarks/routing_unit.py " + " ".join(sys.argv[1:]),
    )
    return {"meta": meta, "units": units}


def _cpu():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "CPU"


def table(result) -> str:
    m = result["meta"]
    counts = ", ".join(f"{n} ({k})" for k, n in m["utterances"].items())
    lines = [
        f"{m['model']} on held-out utterances cut to {m['seconds']:g} s of {m['data']}: {counts}; "
        f"budget: mixed within {m['max_drop']} ViSQOL of full on {', '.join(m['budget_subsets'])}; "
        f"{m['cpu']}, 1 thread",
        "| unit | threshold | light share (speech) | per subset (share / ViSQOL drop) | "
        "MACs mixed/full b1 / b16 | wall b1 / b16 | context | share at levels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for u in result["units"]:
        k = u["kept"] or next(t for t in u["tried"] if t["label"] == "calibrated")
        subsets = "; ".join(
            f"{n}: {s['light_share']:.1%} / {s['visqol_drop']:+.3f}"
            for n, s in k["subsets"].items()
        )
        c = u["costs"]
        levels = "; ".join(f"{n}: {v:.1%}" for n, v in u["levels"].items())
        kept = k["label"] if u["kept"] else f"{k['label']}, none within budget"
        lines.append(
            f"| {u['unit_ms']} ms | {k['threshold']:.3f} ({kept}) | {u['speech_light_share']:.1%} "
            f"| {subsets} | {c['batch1']['macs_ratio']:.3f} / {c['batch16']['macs_ratio']:.3f} "
            f"| {c['batch1']['wall_ratio']:.3f} / {c['batch16']['wall_ratio']:.3f} "
            f"| {c['batch16']['context_share']:.1%} | {levels} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    result = run(args)
    if args.out:
        from speechbrain_dsl.atomic import write_text

        write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
