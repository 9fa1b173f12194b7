"""The whole story in one command: ``make demo`` (``make demo QUICK=1`` for a smoke run).

    python -m tools.demo [--out results/demo] [--quick] [--force] [--only STAGE ...]

Stages, each through the real recipes and tools of this repository:

1. ``corpora``: the four look-alike corpora with espeak-ng speech (LibriTTS,
   AudioSet Speech/Silence, Speech Commands, LibriCount) in their real layouts;
2. ``train_dsl``, ``train_baseline``: a small DSL codec and its baseline through
   ``recipes/LibriTTS/codec/train.py`` (minutes: shows the pipeline; the evaluation
   stages use the hours-trained reference model in ``pretrained/`` when present);
3. ``sweep``: the Fig. 6 / Fig. 8 training sweeps (``recipes/AudioSet/routing/sweep.py``);
4. ``routing``: the routing evaluation on AudioSet silence vs speech (Figs. 3, 4, 7);
5. ``probe_kws``, ``probe_count``: downstream probes, full / light / mixed (Fig. 5),
   with the Gated Compression KWS variant;
6. ``benchmarks``: parameter/MAC table and the routed-encoder wall-time benchmark;
7. ``report``: ``<out>/REPORT.md``, the paper's numbers next to ours, every figure.

A finished stage writes ``<out>/stages/<stage>.json`` and is skipped next time,
unless a stage it depends on ran after it (``DEPENDS``), ``--force`` reruns
everything or ``--only`` names it; a finished stage that runs again starts from
nothing. The report is always rewritten. An interrupted run continues where it
stopped: training resumes from its last checkpoint. Each stage prints a one-line
summary; its full output goes to ``<out>/logs/<stage>.log``.
"""

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from speechbrain_dsl.atomic import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED_DSL = ROOT / "pretrained" / "dsl-codec-16k"
RECORDINGS_ROOT = "/usr/share"  # where Debian installs ktuberling-data and klettres-data
STAGES = (
    "corpora",
    "train_dsl",
    "train_baseline",
    "sweep",
    "routing",
    "probe_kws",
    "probe_count",
    "benchmarks",
    "report",
)

# What each stage needs (a stage reruns when one of these finished after it) ...
DEPENDS = {
    "corpora": [],
    "train_dsl": ["corpora"],
    "train_baseline": ["corpora"],
    "sweep": [],
    "routing": ["corpora", "train_dsl"],
    "probe_kws": ["corpora", "train_dsl"],
    "probe_count": ["corpora", "train_dsl"],
    "benchmarks": [],
    "report": [],
}
# ... and what it writes (removed before a finished stage runs again).
OUTPUTS = {
    "corpora": ["data"],
    "train_dsl": ["train/dsl"],
    "train_baseline": ["train/baseline"],
    "sweep": ["sweep"],
    "routing": ["routing"],
    "probe_kws": ["probe_kws"],
    "probe_count": ["probe_count"],
}

# Sizes: "default" takes ~12 minutes on a 2-core CPU (budget 20), "quick" ~3 minutes (budget 5).
SIZES = {
    "default": {
        "libritts": {"speakers": 20, "utterances": 16},
        "audioset": 16,
        "recorded": {"max_speakers": 16, "max_utterances_per_speaker": 6},
        "commands": 20,
        "libricount": {"mixtures_per_count": 12, "max_count": 4},
        "train": [
            "--number_of_epochs=6",
            "--valid_visqol_max_utterances=8",
            "--test_visqol_max_utterances=16",
            "--valid_max_seconds=3.0",
        ],
        "sweep": ["--quick"],
        "routing_clips": 16,
        "probe_epochs": 15,
        "folds": 4,
        "bench_repeats": 5,
    },
    "quick": {
        "libritts": {"speakers": 10, "utterances": 4},
        "audioset": 3,
        "recorded": {"max_speakers": 8, "max_utterances_per_speaker": 2},
        "commands": 10,
        "libricount": {"mixtures_per_count": 3, "max_count": 2},
        "train": [
            "--debug",
            "--debug_persistently",
            "--valid_visqol_max_utterances=2",
            "--test_visqol_max_utterances=2",
            "--valid_max_seconds=2.0",
        ],
        "sweep": ["--quick", "--steps=3", "--alphas", "1e-4", "1e-1"],
        "routing_clips": 3,
        "probe_epochs": 2,
        "folds": 2,
        "bench_repeats": 1,
    },
}
PAPER = {
    "tail_params": "65,024 -> 3,104 (20.9x)",
    "tail_macs": "5.4 -> 0.44 MMAC/s (12.3x)",
    "silence_light": "80%",
    "speech_light": "30%",
    "visqol_gap": "<= 0.01",
    "latency_silence": "-26.5%",
    "latency_speech": "-9.9%",
    "count": "89.7 / 94.3 / 96.3%",
    "kws": "mixed = full (no number given)",
}


class Demo:
    """Runs the stages, skipping finished ones, and records a summary per stage."""

    def __init__(self, out, size="default", force=False, only=None):
        self.out = Path(out).resolve()
        self.size = SIZES[size]
        self.size_name = size
        self.force, self.only = force, set(only or ())
        self.data = self.out / "data"

    def done_file(self, stage):
        return self.out / "stages" / f"{stage}.json"

    def summary(self, stage):
        """The recorded summary of a finished stage (or None)."""
        path = self.done_file(stage)
        return json.loads(path.read_text()) if path.is_file() else None

    def stale(self, stage):
        """True when a stage this one depends on finished after it (or is missing)."""
        mine = self.summary(stage)
        for dep in DEPENDS[stage]:
            theirs = self.summary(dep)
            if theirs is None or theirs["finished"] > mine["finished"]:
                return True
        return False

    def run(self, stages=STAGES):
        """Runs ``stages`` in order; returns the path of REPORT.md."""
        bar = tqdm(stages, desc="demo", unit="stage", file=sys.stdout, leave=False)
        for stage in bar:
            bar.set_postfix_str(stage)
            previous = self.summary(stage)
            rerun = self.force or stage in self.only or stage == "report"
            if previous and not rerun and not self.stale(stage):
                tqdm.write(f"[{stage}] done before: {previous['line']}")
                continue
            if previous:  # a finished stage runs again from scratch (not resumed)
                for folder in OUTPUTS.get(stage, ()):
                    shutil.rmtree(self.out / folder, ignore_errors=True)
            start = time.time()
            result = getattr(self, f"stage_{stage}")()
            result["seconds"] = round(time.time() - start, 1)
            result["finished"] = time.time()
            write_json(self.done_file(stage), result)
            tqdm.write(f"[{stage}] {result['line']} ({result['seconds']:.0f} s)")
        return self.out / "REPORT.md"

    def command(self, stage, args, cwd):
        """Runs a recipe or tool; output goes to the stage's log; failure shows its tail."""
        log = self.out / "logs" / f"{stage}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"$ {' '.join(map(str, args))}\n")
            f.flush()
            process = subprocess.Popen(
                [sys.executable, *map(str, args)], cwd=cwd, stdout=f, stderr=subprocess.STDOUT
            )
            code = _follow(process, log, stage)
        if code != 0:
            tail = "\n".join(log.read_text().splitlines()[-25:])
            raise RuntimeError(f"stage {stage} failed (exit {code}); see {log}:\n{tail}")

    def eval_codec(self):
        """The DSL codec the evaluation stages use (the reference model if shipped),
        its description and its model definition (``null``: the packaged folder's own)."""
        if (PRETRAINED_DSL / "codec.ckpt").is_file():
            return PRETRAINED_DSL, "reference model `pretrained/dsl-codec-16k`", "null"
        return (
            self.out / "train" / "dsl" / "save",
            "the demo's own short-trained DSL codec",
            ROOT / "hparams" / "soundstream_dsl.yaml",
        )

    # -- stages ----------------------------------------------------------------
    def stage_corpora(self):
        from speechbrain_dsl.data import synthetic

        s = self.size
        synthetic.make_libritts(self.data, seed=0, **s["libritts"])
        synthetic.make_audioset(self.data, seed=0, clips_per_class=s["audioset"])
        synthetic.make_speech_commands(self.data, seed=0, speakers=s["commands"])
        synthetic.make_libricount(self.data, seed=0, **s["libricount"])
        recorded = self.recorded_speech()
        counts = {
            name: sum(1 for _ in (self.data / name).rglob("*.wav"))
            for name in ("LibriTTS", "AudioSet", "SpeechCommands", "LibriCount")
        }
        return {
            "counts": counts,
            "recorded": recorded,
            "line": ", ".join(f"{name} {n} wavs" for name, n in counts.items()) + f"; {recorded}",
        }

    def recorded_speech(self):
        """Adds Debian's real recordings to the LibriTTS corpus when they are installed.

        Without them the demo still runs on generated speech, and says what they
        would add.
        """
        from speechbrain_dsl.data import recordings

        try:
            recordings.check_sources(RECORDINGS_ROOT)
        except FileNotFoundError as err:
            return (
                f"recorded speech not added ({err}); it would add real human recordings "
                f"(up to 41 speakers, ~20 languages, 1.4 h) to codec training and a "
                f"held-out recorded test set"
            )
        subsets = recordings.build_corpus(
            self.data, seed=0, source_root=RECORDINGS_ROOT, **self.size["recorded"]
        )["subsets"]
        speakers, utterances, _ = subsets["train-recorded"]
        return (
            f"recorded speech added: {utterances} training utterances of {speakers} speakers, "
            f"{subsets['test-recorded'][1]} held-out test utterances"
        )

    def libritts_subsets(self):
        """Recipe arguments training on generated and (when built) recorded speech."""
        if not (self.data / "LibriTTS" / "train-recorded").is_dir():
            return []
        return [
            "--train_subsets=[train-clean-100,train-recorded]",
            "--valid_subsets=[dev-clean,dev-recorded]",
            "--test_subsets=[test-clean,test-recorded]",
        ]

    def _train(self, stage, yaml, name):
        recipe = ROOT / "recipes" / "LibriTTS" / "codec"
        folder = self.out / "train" / name
        self.command(
            stage,
            [
                "train.py",
                f"hparams/{yaml}",
                f"--data_folder={self.data}",
                f"--output_folder={folder}",
                *self.libritts_subsets(),
                *self.size["train"],
            ],
            recipe,
        )
        test = json.loads((folder / "test_metrics.json").read_text())
        line = f"test mel distance full {test['mel_full']:.2f}"
        if "mel_mixed" in test:
            line += (
                f", mixed {test['mel_mixed']:.2f} with {test['light_share']:.0%} light; "
                f"ViSQOL full {test.get('visqol_full', float('nan')):.2f}"
            )
        return {"test": test, "folder": str(folder), "line": line}

    def stage_train_dsl(self):
        return self._train("train_dsl", "codec_dsl.yaml", "dsl")

    def stage_train_baseline(self):
        return self._train("train_baseline", "codec_baseline.yaml", "baseline")

    def stage_sweep(self):
        folder = self.out / "sweep"
        self.command(
            "sweep",
            [
                ROOT / "recipes" / "AudioSet" / "routing" / "sweep.py",
                "--out",
                folder,
                *self.size["sweep"],
            ],
            ROOT,
        )
        sweep = json.loads((folder / "sweep.json").read_text())
        placements = sweep.get("placement", {})
        names = {"0": "after first conv", "1": "after block 1", "2": "after block 2"}
        line = f"Fig. 6 and Fig. 8 analogues ({sweep.get('steps')} steps per run)" + (
            "; switch Spearman "
            + ", ".join(
                f"{names.get(k, k)} {v.get('spearman', float('nan')):.2f}"
                for k, v in placements.items()
            )
            if placements
            else ""
        )
        return {"sweep": sweep, "line": line}

    def stage_routing(self):
        codec, source, model_yaml = self.eval_codec()
        folder = self.out / "routing"
        n = self.size["routing_clips"]
        self.command(
            "routing",
            [
                "evaluate.py",
                "hparams/evaluate.yaml",
                f"--data_folder={self.data / 'AudioSet'}",
                f"--codec_checkpoint={codec}",
                f"--model_yaml={model_yaml}",
                f"--output_folder={folder}",
                f"--max_clips_per_class={n}",
                f"--sweep_max_clips_per_class={min(n, 4)}",
                f"--wall_repeats={self.size['bench_repeats']}",
            ],
            ROOT / "recipes" / "AudioSet" / "routing",
        )
        results = json.loads((folder / "results.json").read_text())
        c = results["classes"]
        line = (
            f"light share silence {c['silence']['light_share']:.0%}, speech "
            f"{c['speech']['light_share']:.0%}; ViSQOL speech full/mixed "
            f"{c['speech']['full'].get('visqol', float('nan')):.2f}/"
            f"{c['speech']['mixed'].get('visqol', float('nan')):.2f}"
        )
        return {"results": results, "codec": source, "line": line}

    def _probe(self, stage, recipe, data, extra):
        codec, source, model_yaml = self.eval_codec()
        folder = self.out / stage
        self.command(
            stage,
            [
                "train.py",
                "hparams/probe.yaml",
                f"--data_folder={data}",
                f"--codec_checkpoint={codec}",
                f"--model_yaml={model_yaml}",
                f"--output_folder={folder}",
                f"--number_of_epochs={self.size['probe_epochs']}",
                *extra,
            ],
            ROOT / "recipes" / recipe / "probe",
        )
        results = json.loads((folder / "results.json").read_text())["results"]
        line = ", ".join(f"{m} {results[m]['accuracy']:.1%}" for m in ("full", "light", "mixed"))
        return {
            "results": results,
            "codec": source,
            "folder": str(folder),
            "line": f"accuracy {line}",
        }

    def stage_probe_kws(self):
        return self._probe("probe_kws", "SpeechCommands", self.data / "SpeechCommands", [])

    def stage_probe_count(self):
        return self._probe(
            "probe_count",
            "LibriCount",
            self.data / "LibriCount",
            [
                f"--folds={self.size['folds']}",
                f"--max_count={self.size['libricount']['max_count']}",
            ],
        )

    def stage_benchmarks(self):
        from speechbrain_dsl.evaluation.efficiency import load_encoder, part_costs

        encoder, sample_rate = load_encoder(ROOT / "hparams" / "soundstream_dsl.yaml")
        costs = part_costs(encoder, sample_rate)
        result = subprocess.run(
            [
                sys.executable,
                ROOT / "benchmarks" / "encoder_routing.py",
                "--json",
                "--no-placements",
                f"--repeats={self.size['bench_repeats']}",
            ],
            capture_output=True,
            text=True,
        )
        write_text(self.out / "logs" / "benchmarks.log", result.stdout + result.stderr)
        try:
            rows = json.loads(result.stdout) if result.returncode == 0 else None
            at80 = next(
                r for r in rows if r["mode"] == "mixed" and abs(r["light_share"] - 0.8) < 1e-6
            )
        except (TypeError, ValueError, StopIteration):
            raise RuntimeError(
                f"stage benchmarks failed (exit {result.returncode}); see "
                f"{self.out / 'logs' / 'benchmarks.log'}:\n{result.stderr[-2000:]}"
            ) from None
        p, m = costs["params"], costs["macs_per_second"]
        line = (
            f"tails {p['full_tail']:,} -> {p['light_tail']:,} params "
            f"({p['full_tail'] / p['light_tail']:.1f}x), {m['full_tail'] / 1e6:.1f} -> "
            f"{m['light_tail'] / 1e6:.2f} MMAC/s; mixed at 80% light: wall "
            f"{at80['wall_ratio']:.2f}x of full"
        )
        return {"costs": costs, "routing_benchmark": rows, "line": line}

    def stage_report(self):
        path = write_report(self)
        return {"line": f"wrote {path}"}


_BAR = re.compile(rb"(\d+)/(\d+) \[")
_EPOCH = re.compile(rb"Going into epoch (\d+)")


def _follow(process, log, stage):
    """Waits for ``process``, mirroring the progress bars it writes to ``log`` in one bar."""
    bar = tqdm(desc=f"  {stage}", unit="batch", file=sys.stdout, leave=False)
    try:
        while process.poll() is None:
            time.sleep(1.0)
            with open(log, "rb") as f:
                f.seek(max(0, log.stat().st_size - 20000))
                tail = f.read()
            steps, epochs = _BAR.findall(tail), _EPOCH.findall(tail)
            if steps:
                done, total = map(int, steps[-1])
                bar.total, bar.n = total, done
            if epochs:
                bar.set_postfix_str(f"epoch {int(epochs[-1])}", refresh=False)
            bar.refresh()
    finally:
        bar.close()
    return process.returncode


def _fmt(value, pattern="{:.2f}"):
    if value is None:
        return "-"
    return "undefined" if value != value else pattern.format(value)  # NaN: e.g. AUROC of one class


def write_report(demo):
    """REPORT.md from the stage summaries: paper vs ours, figures, software versions."""
    get = demo.summary
    bench, routing = get("benchmarks"), get("routing")
    kws, count = get("probe_kws"), get("probe_count")
    dsl, base, sweep = get("train_dsl"), get("train_baseline"), get("sweep")
    out = demo.out
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    rows = []
    if bench:
        p, m = bench["costs"]["params"], bench["costs"]["macs_per_second"]
        rows.append(
            (
                "Switchable sub-model params (full -> light tail)",
                PAPER["tail_params"],
                f"{p['full_tail']:,} -> {p['light_tail']:,} "
                f"({p['full_tail'] / p['light_tail']:.1f}x)",
                "model definition",
            )
        )
        rows.append(
            (
                "Sub-model MACs",
                PAPER["tail_macs"],
                f"{m['full_tail'] / 1e6:.1f} -> {m['light_tail'] / 1e6:.2f} MMAC/s "
                f"({m['full_tail'] / m['light_tail']:.1f}x)",
                "model definition",
            )
        )
    if routing:
        c, src = routing["results"]["classes"], f"synthetic AudioSet, {routing['codec']}"
        rows.append(
            (
                "Light share, silence",
                PAPER["silence_light"],
                f"{c['silence']['light_share']:.0%}",
                src,
            )
        )
        rows.append(
            ("Light share, speech", PAPER["speech_light"], f"{c['speech']['light_share']:.0%}", src)
        )
        for cls in ("silence", "speech"):
            full, mixed = c[cls]["full"].get("visqol"), c[cls]["mixed"].get("visqol")
            rows.append(
                (
                    f"ViSQOL full vs mixed, {cls}",
                    PAPER["visqol_gap"] + " gap",
                    f"{_fmt(full)} vs {_fmt(mixed)}",
                    src,
                )
            )
            rows.append(
                (
                    f"Encoder latency, mixed vs full, {cls}",
                    PAPER[f"latency_{cls}"],
                    f"{c[cls]['wall_ratio'] - 1:+.1%}",
                    f"{src}; CPU wall time, this machine",
                )
            )
        s = routing["results"]["switch"]
        rows.append(
            ("Switch AUROC: segments the light path handles well", "-", _fmt(s.get("auroc")), src)
        )
        for cls in ("silence", "speech"):
            rows.append(
                (
                    f"Mel distance full vs mixed, {cls}",
                    "-",
                    f"{_fmt(c[cls]['full'].get('mel'))} vs {_fmt(c[cls]['mixed'].get('mel'))}",
                    src,
                )
            )
    if kws:
        r = kws["results"]
        rows.append(
            (
                "Keyword accuracy full / light / mixed",
                PAPER["kws"],
                " / ".join(f"{r[m]['accuracy']:.1%}" for m in ("full", "light", "mixed")),
                f"synthetic Speech Commands (12 classes), {kws['codec']}",
            )
        )
        gc = r.get("gated_compression")
        if gc:
            rows.append(
                (
                    "Gated Compression KWS: early exit, probe MACs saved, accuracy gated vs open",
                    "GC: negatives exit early",
                    f"{gc['early_exit_share']:.0%}, {gc['probe_macs_saved']:.0%}, "
                    f"{gc['accuracy']:.1%} vs {gc['accuracy_no_gate']:.1%}",
                    f"synthetic Speech Commands, {gc['mode']} embeddings",
                )
            )
    if count:
        r = count["results"]
        rows.append(
            (
                "Speaker-count accuracy full / light / mixed",
                PAPER["count"],
                " / ".join(f"{r[m]['accuracy']:.1%}" for m in ("full", "light", "mixed")),
                f"synthetic LibriCount, k-fold, {count['codec']}",
            )
        )
    lines = [
        "# speechbrain-dsl demo report",
        "",
        f"Size: `{demo.size_name}`. Every number below was produced by `make demo"
        f"{' QUICK=1' if demo.size_name == 'quick' else ''}` on this machine "
        f"({platform.machine()}, {platform.processor() or 'CPU'}), except the reference "
        "models' table, read from their training records; the *data* column says where "
        "each comes from. The demo's corpora are generated look-alikes with espeak-ng speech "
        "in the real datasets' layouts: the only real speech is the reference models' "
        "held-out recordings (`test-recorded`).",
        "",
        "## The paper's numbers next to ours",
        "",
        "| quantity | paper | ours | data |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
    ]
    records = {
        name: PRETRAINED_DSL.parent / name for name in ("dsl-codec-16k", "baseline-codec-16k")
    }
    records = {
        n: json.loads((f / "record.json").read_text())
        for n, f in records.items()
        if (f / "record.json").is_file()
    }
    if records:
        subsets = sorted(
            {
                k.split("@", 1)[1]
                for rec in records.values()
                for k in (rec.get("test") or {})
                if k.startswith("visqol_full@")
            }
        )
        lines += [
            "## Reference models (`pretrained/`, held-out speakers of the LibriTTS look-alike)",
            "",
            "| model | steps | CPU hours | pass | mel distance | ViSQOL |"
            + "".join(f" ViSQOL {s} |" for s in subsets)
            + " light share |",
            "|---|---|---|---|---|---|" + "---|" * len(subsets) + "---|",
        ]
        for name, rec in records.items():
            for mode in ("full", "light", "mixed"):
                test = rec.get("test") or {}
                if f"mel_{mode}" in test:
                    share = test.get("light_share") if mode == "mixed" else None
                    lines.append(
                        f"| {name} | {rec['steps']} | {rec['wall_hours']:.1f} | {mode} | "
                        f"{test[f'mel_{mode}']:.3f} | {_fmt(test.get(f'visqol_{mode}'))} |"
                        + "".join(f" {_fmt(test.get(f'visqol_{mode}@{s}'))} |" for s in subsets)
                        + f" {_fmt(share, '{:.1%}')} |"
                    )
        lines += ["", "Full records: `pretrained/*/TRAINING.md`.", ""]
    if dsl:
        lines += [
            "## The demo's own short training (pipeline check, not a listening model)",
            "",
            "| codec | test mel full | test mel mixed | light share | ViSQOL full |",
            "|---|---|---|---|---|",
        ]
        for name, s in (("DSL", dsl), ("baseline", base)):
            if s:
                t = s["test"]
                lines.append(
                    f"| {name} | {t['mel_full']:.3f} | {_fmt(t.get('mel_mixed'), '{:.3f}')}"
                    f" | {_fmt(t.get('light_share'), '{:.0%}')} | "
                    f"{_fmt(t.get('visqol_full'))} |"
                )
        lines.append("")
    figures = []
    if routing:
        figures += [
            ("Fig. 3a: predicted distance per class", "routing/fig3a_predicted_distance.png"),
            ("Fig. 3b/3c: ViSQOL per class and pass", "routing/fig3bc_visqol.png"),
            ("Fig. 3b/3c: mel distance per class and pass", "routing/fig3bc_mel.png"),
            ("Fig. 4: routes on a speech clip", "routing/fig4_routes_speech.png"),
            ("Fig. 4: routes on a silence clip", "routing/fig4_routes_silence.png"),
            ("Fig. 7: predicted vs true distance", "routing/fig7_predicted_vs_true.png"),
            ("Quality vs compute, with random and oracle routing", "routing/tradeoff.png"),
        ]
    if sweep:
        figures += [
            ("Fig. 6: activation sparsity vs alpha", "sweep/fig6_sparsity_vs_alpha.png"),
            ("Fig. 8: switch placement vs prediction quality", "sweep/fig8_switch_placement.png"),
        ]
    for stage, title in ((kws, "Keyword spotting"), (count, "Speaker counting")):
        if stage:
            folder = Path(stage["folder"])
            figures += [
                (f"{title}: confusion matrix, {m}", rel(folder / f"confusion_{m}.png"))
                for m in ("full", "light", "mixed")
            ]
            if (folder / "confusion_gc.png").is_file():
                figures.append(
                    (f"{title}: Gated Compression variant", rel(folder / "confusion_gc.png"))
                )
    lines += ["## Figures", ""]
    for title, path in figures:
        if (out / path).is_file():
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    detail = [
        ("routing", "routing/report.md"),
        ("probe_kws", "probe_kws/results.md"),
        ("probe_count", "probe_count/results.md"),
    ]
    lines += ["## Details", ""] + [f"- `{p}`" for _, p in detail if (out / p).is_file()] + [""]
    lines += [
        "## Software",
        "",
        "| package | version |",
        "|---|---|",
        f"| python | {platform.python_version()} |",
    ]
    for package in (
        "torch",
        "torchaudio",
        "speechbrain",
        "vector-quantize-pytorch",
        "visqol-python",
        "numpy",
        "scikit-learn",
        "espeakng-loader",
    ):
        try:
            lines.append(f"| {package} | {metadata.version(package)} |")
        except metadata.PackageNotFoundError:
            lines.append(f"| {package} | not installed |")
    timings = [(s, demo.summary(s)) for s in STAGES[:-1]]
    lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s} | {r['seconds']:.0f} |" for s, r in timings if r]
    return write_text(out / "REPORT.md", "\n".join(lines) + "\n")


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "demo"))
    parser.add_argument(
        "--quick", action="store_true", help="smoke-run sizes (~3 minutes on a quiet 2-core CPU)"
    )
    parser.add_argument("--force", action="store_true", help="rerun finished stages")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=STAGES,
        default=None,
        help="rerun these stages (others are skipped if finished)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.quick and args.out == parser.get_default("out"):
        out = out.with_name("demo_quick")
    size = "quick" if args.quick else "default"
    recorded = out / "stages" / "size.txt"
    if recorded.is_file() and recorded.read_text().strip() != size:
        if not args.force:
            print(
                f"error: {out} holds a '{recorded.read_text().strip()}' demo; use --force or "
                f"another --out",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(out)  # another size: start from nothing rather than mix corpora
    write_text(recorded, size)
    start = time.time()
    try:
        report = Demo(out, size, args.force, args.only).run()
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"report: {report} ({(time.time() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
