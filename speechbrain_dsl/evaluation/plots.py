"""The paper's figures from evaluation outputs (matplotlib, PNG).

Each function takes plain arrays/dicts and a path, writes one PNG atomically and
returns the path. Numbering follows the paper: Fig. 3a (predicted distance per
class), 3b/3c (quality per class and pass), 4 (a waveform coloured by route),
7 (predicted vs true distance); plus the quality-vs-compute trade-off.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from speechbrain_dsl.atomic import atomic_path  # noqa: E402

COLORS = {
    "silence": "tab:blue",
    "speech": "tab:orange",
    "full": "tab:gray",
    "light": "tab:green",
    "mixed": "tab:purple",
    "switch": "tab:purple",
    "random": "tab:red",
    "oracle": "tab:olive",
}


def _save(fig, path):
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def distance_histograms(predicted_by_class, threshold, path):
    """Fig. 3a: histograms of predicted distance per class, with the threshold.

    Example
    -------
    >>> import tempfile, os
    >>> p = distance_histograms({"silence": [0.1, 0.2], "speech": [0.5, 0.9]}, 0.3,
    ...                         os.path.join(tempfile.mkdtemp(), "h.png"))
    >>> p.exists()
    True
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = np.concatenate([np.asarray(v, float) for v in predicted_by_class.values()])
    bins = np.linspace(values.min(), values.max() + 1e-9, 30)
    for name, pred in predicted_by_class.items():
        ax.hist(pred, bins=bins, alpha=0.6, label=name, color=COLORS.get(name))
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("predicted distance (switch)")
    ax.set_ylabel("segments")
    ax.set_title("Switch predictions per class (Fig. 3a)")
    ax.legend()
    return _save(fig, path)


def quality_bars(quality, metric, path, title=None):
    """Fig. 3b/3c: ``quality[class][pass]`` as grouped bars."""
    classes = list(quality)
    passes = list(next(iter(quality.values())))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(passes)
    for i, name in enumerate(passes):
        heights = [quality[c][name] for c in classes]
        bars = ax.bar(
            np.arange(len(classes)) + i * width, heights, width, label=name, color=COLORS.get(name)
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(classes)) + width * (len(passes) - 1) / 2, classes)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per class and pass (Fig. 3b/3c)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def routed_waveform(wav, sample_rate, route, segment_seconds, path, title=""):
    """Fig. 4: a waveform with each segment shaded by the path it took."""
    wav = np.asarray(wav, float)
    t = np.arange(len(wav)) / sample_rate
    fig, ax = plt.subplots(figsize=(8, 2.5))
    for s, light in enumerate(route):
        ax.axvspan(
            s * segment_seconds,
            min((s + 1) * segment_seconds, t[-1]),
            color=COLORS["light" if light else "full"],
            alpha=0.25,
            lw=0,
        )
    ax.plot(t, wav, color="k", lw=0.4)
    ax.set_xlabel("time (s)")
    ax.set_title(title + "  (green: light path, grey: full path)")
    return _save(fig, path)


def predicted_vs_true(predicted, true, path):
    """Fig. 7: switch prediction against the true light/full distance."""
    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, predicted, s=6, alpha=0.5)
    low, high = min(true.min(), predicted.min()), max(true.max(), predicted.max())
    ax.plot([low, high], [low, high], "k--", lw=1)
    ax.set_xlabel("true distance (MAE of embeddings)")
    ax.set_ylabel("predicted distance")
    ax.set_title("Switch vs truth (Fig. 7)")
    return _save(fig, path)


def tradeoff_curve(curves, metric, path):
    """Quality vs executed MACs for each routing strategy: ``{name: (macs, quality)}``."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (macs, quality) in curves.items():
        ax.plot(macs, quality, "o-", label=name, color=COLORS.get(name), ms=4)
    ax.set_xlabel("encoder MACs (fraction of full pass)")
    ax.set_ylabel(metric)
    ax.set_title("Quality vs compute")
    ax.legend()
    return _save(fig, path)


def sparsity_curves(curves, path):
    """Fig. 6: activation sparsity against training steps, one line per alpha."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (steps, sparsity) in curves.items():
        ax.plot(steps, np.asarray(sparsity) * 100, "o-", label=name, ms=3)
    ax.set_xlabel("training step")
    ax.set_ylabel("activation sparsity (%)")
    ax.set_title("Mask output sparsity vs compression weight (Fig. 6)")
    ax.legend()
    return _save(fig, path)


def confusion_matrix(matrix, labels, path, title="Confusion matrix"):
    """Row-normalised confusion matrix (true class per row) with counts in the cells.

    Example
    -------
    >>> import tempfile, os
    >>> out = confusion_matrix([[3, 1], [0, 4]], ["yes", "no"], os.path.join(tempfile.mkdtemp(), "c.png"))
    >>> out.is_file()
    True
    """
    matrix = np.asarray(matrix, dtype=float)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 1.0 + 0.45 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(labels) <= 15:  # counts stay legible
        for i, j in np.ndindex(matrix.shape):
            ax.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def per_class_bars(values_by_mode, labels, path, ylabel, title=""):
    """Grouped bars: one group per class, one bar per mode (``{mode: [value per class]}``)."""
    fig, ax = plt.subplots(figsize=(max(5.5, 0.5 * len(labels) * len(values_by_mode)), 3.8))
    width = 0.8 / max(1, len(values_by_mode))
    for i, (mode, values) in enumerate(values_by_mode.items()):
        ax.bar(
            np.arange(len(labels)) + i * width, values, width, label=mode, color=COLORS.get(mode)
        )
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)
