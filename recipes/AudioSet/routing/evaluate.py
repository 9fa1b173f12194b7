#!/usr/bin/env python3
"""Routing evaluation on AudioSet Speech vs Silence: does easy audio go light, and
does quality hold?

    python evaluate.py hparams/evaluate.yaml --data_folder=/path/to/AudioSet \
        --codec_checkpoint=/path/to/recipe/save

For every clip and 1-s segment: the switch's predicted distance, the true
light/full distance and the route. Per class: light share at the calibrated
threshold; mel distance, SI-SNR and ViSQOL of full, light and mixed decoding, and
of random and oracle routing at the same light share; executed encoder MACs per
second and encoder wall time, mixed vs full. Switch quality: Spearman correlation
and AUROC at recovering the oracle's light segments. A sweep of light shares gives
the quality-vs-compute curve. Writes ``report.md``, ``segments.json`` and the PNG
figures to ``output_folder``.
"""

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import speechbrain as sb
import torch
import torchaudio
from hyperpyyaml import load_hyperpyyaml
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from speechbrain_dsl.atomic import write_json, write_text
from speechbrain_dsl.data.audio import audio_info, read_json
from speechbrain_dsl.evaluation import plots
from speechbrain_dsl.evaluation.calibration import threshold_for_quality_drop, threshold_for_share
from speechbrain_dsl.evaluation.efficiency import executed_macs, part_costs, predicted_mac_ratio
from speechbrain_dsl.evaluation.metrics import mel_distance, segment_mel_distance, si_snr, visqol
from speechbrain_dsl.nnet.routing import decide
from speechbrain_dsl.training.checkpoints import find_codec_checkpoint, load_codec
from speechbrain_dsl.training.recipe_utils import (
    boolean,
    check_hparams_file,
    integer,
    list_of,
    number,
    optional,
    quiet_third_party_loggers,
    text,
)

sys.path.append(str(Path(__file__).resolve().parents[1]))
from audioset_prepare import prepare_audioset  # noqa: E402

CLASSES = ("silence", "speech")  # AudioSet's; "recorded" joins them when recorded_folder is set
SPEECH_CLASSES = ("speech", "recorded")
HPARAM_RULES = {
    "recorded_folder": optional(text()),
    "recorded_subset": text(),
    "seed": integer(),
    "model_yaml": optional(text()),
    "codec_checkpoint": text(),
    "threshold": optional(number()),
    "clip_seconds": number(above=0),
    "max_clips_per_class": integer(low=1),
    "batch_size": integer(low=1),
    "cpu_threads": integer(low=1),
    "visqol": boolean(),
    "wall_repeats": integer(low=1),
    "max_mel_drop": number(above=0),
    "sweep_shares": list_of(number(low=0, high=1)),
    "sweep_max_clips_per_class": integer(low=1),
    "level_check_dbfs": list_of(number(high=0)),
}


def _auroc(positive, score):
    """ROC AUC of ``score`` for the bool labels ``positive`` (NaN when one class is empty)."""
    if not 0 < int(positive.sum()) < positive.numel():
        return float("nan")
    return float(roc_auc_score(positive.numpy(), score.numpy()))


def load_clips(manifest, sample_rate, seconds, max_per_class, seed):
    """``{class: (ids, [N, S] waveforms)}``, clips cut or padded to ``seconds``."""
    entries = read_json(manifest, "AudioSet manifest", expect=dict)
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    clips = {}
    for label in CLASSES:
        ids = sorted(k for k, e in entries.items() if e["label"] == label)
        if len(ids) > max_per_class:
            ids = sorted(rng.choice(ids, max_per_class, replace=False).tolist())
        waves = []
        for utt in ids:
            audio_info(entries[utt]["wav"])  # a ValueError naming an empty, truncated, bad file
            audio, sr = sf.read(entries[utt]["wav"], dtype="float32", always_2d=True)
            audio = torch.from_numpy(audio).mean(1)
            if sr != sample_rate:
                audio = torchaudio.functional.resample(audio, sr, sample_rate)
            waves.append(torch.nn.functional.pad(audio[:n], (0, max(0, n - audio.shape[0]))))
        if not waves:
            raise ValueError(f"{manifest}: no {label} clips to evaluate")
        clips[label] = (ids, torch.stack(waves))
    return clips


def load_recorded_clips(folder, subset, sample_rate, seconds, max_clips, pause=0.3):
    """``(ids, [N, S])``: clips of real recorded speech from a LibriTTS-layout ``subset``.

    Each speaker's utterances (in file order, ``pause`` seconds apart) are joined and
    cut into clips of ``seconds``, so a clip holds one voice, as AudioSet's do; the
    last, shorter piece of a speaker is dropped. Speakers take turns, so the first
    ``max_clips`` clips cover as many speakers as possible.
    """
    root = Path(folder)
    root = root / "LibriTTS" if (root / "LibriTTS" / subset).is_dir() else root
    wavs = sorted((root / subset).rglob("*.wav"))
    if not wavs:
        raise ValueError(
            f"recorded_folder: no wavs under {root / subset} (expected the "
            f"LibriTTS layout of python -m speechbrain_dsl.data.recordings)"
        )
    n, gap = int(seconds * sample_rate), torch.zeros(int(pause * sample_rate))
    per_speaker = {}
    for path in wavs:
        audio_info(path)  # a ValueError naming an empty, truncated, bad file
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = torch.from_numpy(audio).mean(1)
        if sr != sample_rate:
            audio = torchaudio.functional.resample(audio, sr, sample_rate)
        per_speaker.setdefault(path.relative_to(root / subset).parts[0], []).extend([audio, gap])
    pieces = {}
    for speaker, parts in sorted(per_speaker.items()):
        joined = torch.cat(parts)
        pieces[speaker] = [joined[i : i + n] for i in range(0, len(joined) - n + 1, n)]
    ids, waves = [], []
    for turn in range(max(map(len, pieces.values()), default=0)):
        for speaker, clips in pieces.items():
            if turn < len(clips) and len(ids) < max_clips:
                ids.append(f"{subset}/{speaker}/{turn}")
                waves.append(clips[turn])
    if not waves:
        raise ValueError(
            f"recorded_folder: {root / subset} holds no speaker with {seconds} s of speech"
        )
    return ids, torch.stack(waves)


@torch.no_grad()
def encode_all_ways(codec, wav, batch_size):
    """Full and light embeddings, switch predictions and routes for ``wav`` [N, S]."""
    parts = {"full": [], "light": [], "predicted": [], "route": []}
    for chunk in wav.split(batch_size):
        for mode in ("full", "light"):
            parts[mode].append(codec.encode_features(chunk[:, None], mode=mode)[0])
        _, out = codec.encode_features(chunk[:, None], mode="mixed")
        parts["predicted"].append(out.predicted)
        parts["route"].append(out.route)
    result = {k: torch.cat(v) for k, v in parts.items()}
    dsl = codec.encoder.dsl
    result["true"] = dsl.segment_distance(result["light"], result["full"])
    result["segment_frames"] = dsl.segment_length(result["full"].shape[-1])
    return result


@torch.no_grad()
def decode_routed(codec, enc, route, length, batch_size):
    """Waveforms decoded from full/light embeddings mixed by ``route`` [N, segments]."""
    emb = codec.encoder.dsl.stitch(enc["light"], enc["full"], route)
    out = []
    for chunk in emb.split(batch_size):
        _, tokens, _ = codec.quantizer(chunk.transpose(1, 2))
        out.append(codec.decode(tokens)[..., :length].squeeze(1))
    return torch.cat(out)


def same_share_routes(enc, share, generator):
    """Random and oracle routes sending ``share`` of all segments light."""
    true = enc["true"]
    count = round(share * true.numel())
    random_route = torch.zeros(true.numel(), dtype=torch.bool)
    random_route[torch.randperm(true.numel(), generator=generator)[:count]] = True
    oracle_route = torch.zeros(true.numel(), dtype=torch.bool)
    oracle_route[true.flatten().argsort()[:count]] = True
    return random_route.view_as(true), oracle_route.view_as(true)


def quality(wav_hat, wav, use_visqol):
    """Mean mel distance, SI-SNR and (optionally) ViSQOL of a batch."""
    row = {
        "mel": float(mel_distance(wav_hat, wav).mean()),
        "sisnr": float(si_snr(wav_hat, wav).mean()),
    }
    if use_visqol:
        scores = visqol(wav_hat, wav)
        scores = scores[~scores.isnan()]
        row["visqol"] = float(scores.mean()) if scores.numel() else float("nan")
    return row


def wall_ratio(codec, wav, repeats, batch_size):
    """Median encoder wall time, mixed / full, timed round-robin."""

    def run(mode):
        start = time.perf_counter()
        with torch.no_grad():
            for chunk in wav.split(batch_size):
                codec.encode_features(chunk[:, None], mode=mode)
        return time.perf_counter() - start

    times = {"full": [], "mixed": []}
    run("full"), run("mixed")  # warm-up
    for _ in range(repeats):
        for mode in times:
            times[mode].append(run(mode))
    return statistics.median(times["mixed"]) / statistics.median(times["full"])


@torch.no_grad()
def light_share_by_input_level(codec, wav, levels_dbfs, batch_size):
    """``{level: light share}`` of the mixed pass with every clip of ``wav`` [N, S] set
    to each RMS level (dB re full scale; peaks capped at 1, as
    :func:`~speechbrain_dsl.evaluation.metrics.level_errors_db` does).

    The same speech at another level should route the same way.
    """
    rms = wav.square().mean(-1, keepdim=True).sqrt().clamp(min=1e-8)
    peak = wav.abs().amax(-1, keepdim=True).clamp(min=1e-8)
    shares = {}
    for dbfs in levels_dbfs:
        scaled = wav * torch.minimum(10 ** (dbfs / 20) / rms, 1.0 / peak)
        routes = [
            codec.encode_features(chunk[:, None], mode="mixed")[1].route
            for chunk in scaled.split(batch_size)
        ]
        shares[f"{dbfs:g}"] = float(torch.cat(routes).float().mean())
    return shares


def evaluate(codec, clips, hp, out_dir):
    """All numbers of the report, as a dict; writes the figures."""
    gen = torch.Generator().manual_seed(hp["seed"])
    bs, sr = hp["batch_size"], codec.sample_rate
    costs = part_costs(codec.encoder, sr)
    results = {"classes": {}, "threshold": codec.threshold}
    encoded, segments = {}, []
    for label, (ids, wav) in clips.items():
        enc = encode_all_ways(codec, wav, bs)
        encoded[label] = enc
        share = float(enc["route"].float().mean())
        random_route, oracle_route = same_share_routes(enc, share, gen)
        routes = {
            "full": torch.zeros_like(enc["route"]),
            "light": torch.ones_like(enc["route"]),
            "mixed": enc["route"],
            "random": random_route,
            "oracle": oracle_route,
        }
        row = {"clips": len(ids), "segments": enc["route"].numel(), "light_share": share}
        decoded = {}
        for name, route in routes.items():
            decoded[name] = decode_routed(codec, enc, route, wav.shape[-1], bs)
            row[name] = quality(decoded[name], wav, hp["visqol"])
        seconds = wav.shape[0] * wav.shape[-1] / sr
        row["mmacs_per_s_full"] = executed_macs(codec, wav[:, None], "full") / seconds / 1e6
        row["mmacs_per_s_mixed"] = executed_macs(codec, wav[:, None], "mixed") / seconds / 1e6
        row["wall_ratio"] = wall_ratio(codec, wav, hp["wall_repeats"], bs)
        seg_samples = enc["segment_frames"] * codec.hop_length
        row["segment_mel_drop"] = segment_mel_distance(
            decoded["light"], wav, seg_samples
        ) - segment_mel_distance(decoded["full"], wav, seg_samples)
        if label in SPEECH_CLASSES and hp["level_check_dbfs"]:
            row["light_share_by_level"] = light_share_by_input_level(
                codec, wav, hp["level_check_dbfs"], bs
            )
        results["classes"][label] = row
        for i, utt in enumerate(ids):
            for s in range(enc["route"].shape[1]):
                segments.append(
                    {
                        "clip": utt,
                        "class": label,
                        "segment": s,
                        "predicted": float(enc["predicted"][i, s]),
                        "true": float(enc["true"][i, s]),
                        "light": bool(enc["route"][i, s]),
                    }
                )
        plots.routed_waveform(
            wav[0].numpy(),
            sr,
            enc["route"][0].tolist(),
            seg_samples / sr,
            out_dir / f"fig4_routes_{label}.png",
            title=f"{label}: {ids[0]}",
        )

    classes = list(clips)
    predicted = torch.cat([encoded[c]["predicted"].flatten() for c in classes])
    true = torch.cat([encoded[c]["true"].flatten() for c in classes])
    routed = torch.cat([encoded[c]["route"].flatten() for c in classes])
    oracle = torch.zeros_like(routed)
    oracle[true.argsort()[: int(routed.sum())]] = True
    is_speech = torch.cat(
        [torch.full_like(encoded[c]["predicted"].flatten(), c in SPEECH_CLASSES) for c in classes]
    )
    results["switch"] = {
        "class_auroc": float(roc_auc_score(is_speech.numpy(), predicted.numpy())),
        "silence_light_at_speech_30": float(
            (encoded["silence"]["predicted"] < torch.quantile(encoded["speech"]["predicted"], 0.3))
            .float()
            .mean()
        ),
        "spearman": float(spearmanr(predicted, true).statistic),
        # the switch's own decision: is the true distance under the threshold?
        "auroc": _auroc(true < codec.threshold, -predicted),
        "auroc_same_share": _auroc(oracle, -predicted),
        "overall_light_share": float(routed.float().mean()),
        "light_ok_share": float((true < codec.threshold).float().mean()),
    }
    drops = torch.cat([results["classes"][c].pop("segment_mel_drop").flatten() for c in classes])
    thr, share = threshold_for_quality_drop(predicted, drops, hp["max_mel_drop"])
    results["quality_calibration"] = {
        "max_mel_drop": hp["max_mel_drop"],
        "threshold": thr,
        "light_share": share,
    }
    results["sweep"] = sweep(codec, clips, encoded, predicted, costs, hp, gen)

    plots.distance_histograms(
        {c: encoded[c]["predicted"].flatten().numpy() for c in classes},
        codec.threshold,
        out_dir / "fig3a_predicted_distance.png",
    )
    for metric in ("visqol", "mel") if hp["visqol"] else ("mel",):
        plots.quality_bars(
            {
                c: {p: results["classes"][c][p][metric] for p in ("full", "light", "mixed")}
                for c in classes
            },
            metric,
            out_dir / f"fig3bc_{metric}.png",
        )
    plots.predicted_vs_true(predicted.numpy(), true.numpy(), out_dir / "fig7_predicted_vs_true.png")
    curves = {
        k: ([p["mac_ratio"] for p in results["sweep"]], [p[k] for p in results["sweep"]])
        for k in ("switch", "random", "oracle")
    }
    plots.tradeoff_curve(curves, "mel distance (lower is better)", out_dir / "tradeoff.png")
    write_text(out_dir / "segments.json", json.dumps(segments))
    return results


def sweep(codec, clips, encoded, predicted, costs, hp, gen):
    """Mel distance of switch / random / oracle routing over a range of light shares."""
    points = []
    n = hp["sweep_max_clips_per_class"]
    for share in hp["sweep_shares"]:
        threshold = threshold_for_share(predicted, share)
        point = {"share": share, "mac_ratio": predicted_mac_ratio(costs, share)}
        sums = {"switch": 0.0, "random": 0.0, "oracle": 0.0}
        for label in clips:
            enc = {k: (v[:n] if torch.is_tensor(v) else v) for k, v in encoded[label].items()}
            wav = clips[label][1][:n]
            random_route, oracle_route = same_share_routes(enc, share, gen)
            for name, route in (
                ("switch", decide(enc["predicted"], "mixed", threshold)),
                ("random", random_route),
                ("oracle", oracle_route),
            ):
                decoded = decode_routed(codec, enc, route, wav.shape[-1], hp["batch_size"])
                sums[name] += float(mel_distance(decoded, wav).mean()) / len(clips)
        point.update(sums)
        points.append(point)
    return points


def write_report(results, hp, counts, checkpoint, out_dir):
    """``report.md``: tables, targets and figure links."""
    fmt = lambda v: "n/a" if v != v else f"{v:.3f}"  # noqa: E731
    metrics = ["visqol", "mel", "sisnr"] if hp["visqol"] else ["mel", "sisnr"]
    c = results["classes"]
    lines = [
        "# Routing on AudioSet Speech vs Silence"
        + (" (and real recorded speech)" if "recorded" in c else ""),
        "",
        f"- codec checkpoint: `{checkpoint}`",
        f"- data: `{hp['segments_csv']}` ({counts}); clips cut to {hp['clip_seconds']} s, "
        f"at most {hp['max_clips_per_class']} per class",
        f"- switch threshold: {results['threshold']:.4f} "
        f"({'calibrated in the checkpoint' if hp['threshold'] is None else 'set in YAML'})",
        f"- software: python {platform.python_version()}, torch {torch.__version__}, "
        f"speechbrain {sb.__version__}",
        "",
        "## Light share and quality per class",
        "",
        "| class | clips | light share | "
        + " | ".join(
            f"{m} {p}" for m in metrics for p in ("full", "light", "mixed", "random", "oracle")
        )
        + " |",
        "|---" * (3 + 5 * len(metrics)) + "|",
    ]
    for label in c:
        r = c[label]
        lines.append(
            f"| {label} | {r['clips']} | {r['light_share']:.1%} | "
            + " | ".join(
                fmt(r[p][m])
                for m in metrics
                for p in ("full", "light", "mixed", "random", "oracle")
            )
            + " |"
        )
    lines += [
        "",
        "Random and oracle route the same share of segments light as the switch did.",
        "",
        "## Compute",
        "",
        "| class | MMAC/s full | MMAC/s mixed | MAC ratio | encoder wall time mixed/full |",
        "|---|---|---|---|---|",
    ]
    for label in c:
        r = c[label]
        lines.append(
            f"| {label} | {r['mmacs_per_s_full']:.2f} | {r['mmacs_per_s_mixed']:.2f} | "
            f"{r['mmacs_per_s_mixed'] / r['mmacs_per_s_full']:.3f} | {r['wall_ratio']:.3f} |"
        )
    s, q = results["switch"], results["quality_calibration"]
    lines += [
        "",
        "## Switch",
        "",
        f"- Spearman correlation of predicted and true distance: {s['spearman']:.3f}",
        f"- AUROC at telling apart segments the light path handles well (true distance "
        f"under the threshold: {s['light_ok_share']:.1%} of segments): {s['auroc']:.3f}",
        f"- AUROC at recovering the oracle's light segments (same share): "
        f"{s['auroc_same_share']:.3f}",
        f"- AUROC of the prediction at telling speech from silence segments: {s['class_auroc']:.3f}",
        f"- At the threshold sending 30% of speech segments light (the paper's operating "
        f"point), {s['silence_light_at_speech_30']:.1%} of silence segments go light",
        f"- Threshold for a mean mel-distance drop <= {q['max_mel_drop']}: {q['threshold']:.4f} "
        f"(light share {q['light_share']:.1%})",
        "",
        "## Targets",
        "",
        "| target | paper | ours | met |",
        "|---|---|---|---|",
    ]
    sil = c["silence"]["light_share"]
    lines.append(
        f"| silence segments light >= 80% | ~80% | {sil:.1%} | {'yes' if sil >= 0.8 else 'no'} |"
    )
    for label in (x for x in SPEECH_CLASSES if x in c):
        sp = c[label]["light_share"]
        lines.append(
            f"| {label} segments light >= 25% | ~30% | {sp:.1%} | {'yes' if sp >= 0.25 else 'no'} |"
        )
    if hp["visqol"]:
        for label in c:
            gap = c[label]["full"]["visqol"] - c[label]["mixed"]["visqol"]
            ok = "n/a" if gap != gap else ("yes" if abs(gap) <= 0.05 else "no")
            lines.append(f"| {label}: ViSQOL full - mixed within 0.05 | 0.01 | {fmt(gap)} | {ok} |")
    for label in (x for x in SPEECH_CLASSES if "light_share_by_level" in c.get(x, {})):
        by_level = c[label]["light_share_by_level"]
        spread = max(by_level.values()) - min(by_level.values())
        lines.append(
            f"| {label}: light share at {' and '.join(by_level)} dBFS within 20 points | n/a | "
            f"{' vs '.join(f'{v:.1%}' for v in by_level.values())} | "
            f"{'yes' if spread <= 0.2 else 'no'} |"
        )
    lines.append(
        f"| switch AUROC >= 0.85 | n/a | {fmt(s['auroc'])} | "
        f"{'yes' if s['auroc'] >= 0.85 else 'no'} |"
    )
    lines += [
        "",
        "## Quality vs compute",
        "",
        "| light share | MAC ratio | mel switch | mel random | mel oracle |",
        "|---|---|---|---|---|",
    ]
    for p in results["sweep"]:
        lines.append(
            f"| {p['share']:.0%} | {p['mac_ratio']:.3f} | {p['switch']:.3f} | "
            f"{p['random']:.3f} | {p['oracle']:.3f} |"
        )
    lines += ["", "## Figures", "", "![Fig. 3a](fig3a_predicted_distance.png)", ""]
    lines += [
        f"![Fig. 3b/3c {m}](fig3bc_{m}.png)"
        for m in (("visqol", "mel") if hp["visqol"] else ("mel",))
    ]
    lines += [""] + [f"![Fig. 4 {label}](fig4_routes_{label}.png)\n" for label in c]
    lines += ["![Fig. 7](fig7_predicted_vs_true.png)", "", "![Trade-off](tradeoff.png)", ""]
    return write_text(out_dir / "report.md", "\n".join(lines))


def main(argv):
    """Prepares the data, loads the codec, evaluates and writes the report."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    check_hparams_file(hparams_file, overrides, HPARAM_RULES)
    quiet_third_party_loggers()
    with open(hparams_file) as fin:
        hp = load_hyperpyyaml(fin, overrides)
    torch.set_num_threads(hp["cpu_threads"])
    out_dir = Path(hp["output_folder"])
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = prepare_audioset(
        hp["segments_csv"], hp["class_labels_csv"], hp["audio_folder"], out_dir / "manifest.json"
    )
    checkpoint = find_codec_checkpoint(hp["codec_checkpoint"])  # the run's best_by
    codec = load_codec(hp["model_yaml"], checkpoint)
    if hp["threshold"] is not None:
        codec.threshold = hp["threshold"]
    clips = load_clips(
        out_dir / "manifest.json",
        codec.sample_rate,
        hp["clip_seconds"],
        hp["max_clips_per_class"],
        hp["seed"],
    )
    if hp["recorded_folder"]:
        clips["recorded"] = load_recorded_clips(
            hp["recorded_folder"],
            hp["recorded_subset"],
            codec.sample_rate,
            hp["clip_seconds"],
            hp["max_clips_per_class"],
        )
    results = evaluate(codec, clips, hp, out_dir)
    write_json(out_dir / "results.json", results)
    report = write_report(results, hp, counts, checkpoint, out_dir)
    print(report.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
