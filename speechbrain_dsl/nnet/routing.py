"""The routing planner: routes, lengths and receptive-field context -> each tail's work.

Plain Python and numpy (no torch), so every engine shares one algorithm: the torch
DSL layer executes a :class:`TailPlan` with one gather and one scatter, and the
evaluations and benchmarks count its cost without running a model.

Vocabulary (every count is in *frames* of the routed tail's output):

- a *route* is one bool per routing segment, True where the light tail runs;
- a *window* is a stretch of one utterance that one tail computes: the frames it
  writes (``first`` to ``end``) plus ``context`` frames before them that the tail
  needs (its receptive field) and whose outputs are thrown away;
- a *plan* packs a tail's windows into rows of equal length, runs the tail once on
  them and scatters the written frames back.

Why packing is subtle: a causal tail pads every layer with zeros at the start of a
row, so a window that starts its utterance (``start == 0``) must open a row of its
own; any other window may sit anywhere in a row, since its context makes what comes
before it irrelevant. Rows have one length, so uneven rows would compute padding.
The planner therefore gives each row an even share of the work and splits windows
at row ends (the continuation carries its context), so a tail computes its frames,
its windows' context and at most about ``context + 1`` frames more per row.
Padding beyond each utterance's length is never computed.

Example
-------
>>> route = np.array([[False, True, True, False]])  # 4 segments of 2 frames, one utterance
>>> plan = plan_routes(route, segment_frames=2, frames=8, contexts={"light": 1, "full": 1})
>>> [(w.first, w.end, w.context) for w in plan["full"].windows]
[(0, 2, 0), (6, 8, 1)]
>>> plan["light"].computed_frames, plan["full"].computed_frames
(5, 5)
"""

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # annotations only: this module runs without torch
    import torch

__all__ = [
    "MODES",
    "ENGINE_MODES",
    "Window",
    "TailPlan",
    "context_frames",
    "threshold_for",
    "decide",
    "LEVEL_RANGE",
    "relative_levels",
    "valid_frame_counts",
    "windows_of",
    "pack_windows",
    "plan_routes",
    "route_runs",
]

MODES = ("full", "light", "mixed", "oracle")
"""Routing modes. ``oracle`` routes by the true distance and runs both tails (analysis)."""

ENGINE_MODES = ("full", "light", "mixed")
"""The modes an exported engine runs (``oracle`` needs both tails' outputs)."""


def context_frames(lookback: int, hop: int) -> int:
    """Whole frames of left context a causal module needs for exact outputs.

    A frame depends on ``lookback`` input steps before its own last step; the
    frames before it that cover them are ``ceil((lookback + 1) / hop) - 1``.

    Example
    -------
    >>> context_frames(lookback=0, hop=4), context_frames(4, 4), context_frames(9, 4)
    (0, 1, 2)
    """
    return max(0, math.ceil((lookback + 1) / hop) - 1)


def threshold_for(
    mode: str, threshold: Union[float, "torch.Tensor"]
) -> Union[float, "torch.Tensor"]:
    """The threshold that makes ``score < threshold`` route as ``mode`` does.

    ``full``: -inf (nothing light); ``light``: +inf (everything light);
    ``mixed`` and ``oracle``: ``threshold`` unchanged (a 0-dim tensor stays one,
    so an exported graph keeps it as an input).

    Example
    -------
    >>> threshold_for("full", 0.5), threshold_for("light", 0.5), threshold_for("mixed", 0.5)
    (-inf, inf, 0.5)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return {"full": -math.inf, "light": math.inf}.get(mode, threshold)


def decide(
    scores: Union[np.ndarray, "torch.Tensor"], mode: str, threshold: Union[float, "torch.Tensor"]
) -> Union[np.ndarray, "torch.Tensor"]:
    """Routes from per-segment scores: the one rule every engine and evaluation uses.

    A score below the threshold goes light. Works on numpy arrays and torch
    tensors alike (``scores < threshold``).

    Arguments
    ---------
    scores : numpy.ndarray or torch.Tensor
        Switch predictions (``mixed``) or true distances (``oracle``); only their
        shape matters in ``full`` and ``light`` mode.
    mode : str
        One of :data:`MODES`.
    threshold : float or 0-dim tensor

    Example
    -------
    >>> decide(np.array([0.2, 0.7]), "mixed", 0.5), decide(np.array([0.2, 0.7]), "full", 0.5)
    (array([ True, False]), array([False, False]))
    """
    return scores < threshold_for(mode, threshold)


LEVEL_RANGE = (-6.0, 3.0)
"""Bounds of :func:`relative_levels`, in units of 10 dB: digital silence stays finite."""


def relative_levels(
    energy: Union[np.ndarray, "torch.Tensor"], counts: Union[np.ndarray, "torch.Tensor"]
) -> Union[np.ndarray, "torch.Tensor"]:
    """Each segment's level relative to its utterance so far, in units of 10 dB.

    The switch reads it beside the features, so what it learns does not depend on
    how loud the utterance is: a pause is quiet *relative to the speech before it*.
    The reference is causal (the mean power of the utterance up to and including
    the segment), so offline, streaming and exported engines compute the same
    value. One formula for numpy arrays (the runtimes) and torch tensors (the
    model): only methods both share are used.

    Arguments
    ---------
    energy : numpy.ndarray or torch.Tensor
        ``[..., segments]`` sum of squared samples of each segment's valid audio.
    counts : numpy.ndarray or torch.Tensor
        ``[..., segments]`` valid samples per segment (0 for padding).

    Returns
    -------
    Same type, ``[..., segments]``: ``(level - reference) / 10 dB``, clipped to
    :data:`LEVEL_RANGE`.

    Example
    -------
    >>> energy = np.array([[1.0, 1.0, 0.01, 1.0]])  # a pause 20 dB down in the third
    >>> relative_levels(energy, np.ones((1, 4))).round(2)
    array([[ 0.  ,  0.  , -1.83,  0.12]])
    >>> relative_levels(100 * energy, np.ones((1, 4))).round(2)  # 20 dB louder: the same
    array([[ 0.  ,  0.  , -1.83,  0.12]])
    """
    floor = 1e-10  # power of digital silence (-100 dBFS)
    counts = counts.clip(1, None)
    own = energy / counts + floor
    reference = energy.cumsum(-1) / counts.cumsum(-1) + floor
    ratio = own / reference
    log10 = ratio.log10() if hasattr(ratio, "log10") else np.log10(ratio)
    return log10.clip(*LEVEL_RANGE)


def valid_frame_counts(lengths: Optional[Sequence[float]], batch: int, frames: int) -> np.ndarray:
    """Frames per item that hold audio: every frame any consumer keeps.

    SpeechBrain's masks keep ``round(length * frames)`` steps (at least one) and
    ``clean_padding_`` keeps ``t < length * frames``; the larger of the two is
    computed, the rest is padding no tail needs to run on.

    Example
    -------
    >>> valid_frame_counts([1.0, 0.5, 0.01], 3, 10)
    array([10,  5,  1])
    """
    if lengths is None:
        return np.full(batch, frames, dtype=np.int64)
    product = np.asarray(lengths, dtype=np.float32) * np.float32(frames)
    counts = np.maximum(np.ceil(product), np.maximum(np.round(product), 1))
    return np.clip(counts, 1, frames).astype(np.int64)


@dataclass(frozen=True)
class Window:
    """Frames ``first`` to ``end`` of utterance ``item``, computed after ``context`` more."""

    item: int
    first: int
    end: int
    context: int

    @property
    def start(self) -> int:
        """First frame the tail computes (context included)."""
        return self.first - self.context

    @property
    def frames(self) -> int:
        """Frames the tail computes for this window (context included)."""
        return self.end - self.start


def route_runs(
    selected: np.ndarray, segment_frames: int, valid: Sequence[int]
) -> List[Tuple[int, int, int]]:
    """Maximal runs of selected segments as ``(item, first, end)`` frames, within ``valid``.

    Example
    -------
    >>> route_runs(np.array([[True, True, False, True]]), 2, [7])
    [(0, 0, 4), (0, 6, 7)]
    """
    runs = []
    selected = np.asarray(selected, dtype=bool)
    for item, row in enumerate(selected):
        limit = int(valid[item])
        segments = min(len(row), math.ceil(limit / segment_frames))
        padded = np.concatenate([[False], row[:segments], [False]])
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        for s0, s1 in zip(edges[::2], edges[1::2]):
            runs.append((item, int(s0) * segment_frames, min(int(s1) * segment_frames, limit)))
    return runs


def windows_of(runs: Iterable[Tuple[int, int, int]], context: int) -> List[Window]:
    """Each run with the left context its tail needs (less at an utterance's start).

    Example
    -------
    >>> windows_of([(0, 0, 4), (0, 6, 7)], context=2)
    [Window(item=0, first=0, end=4, context=0), Window(item=0, first=6, end=7, context=2)]
    """
    return [Window(b, f0, f1, min(context, f0)) for b, f0, f1 in runs]


@dataclass(frozen=True)
class TailPlan:
    """Where one tail's windows sit in its packed rows, and where their outputs go.

    Attributes
    ----------
    rows, row_frames : int
        The tail runs once on ``[rows, channels, row_frames * hop]``.
    gather : numpy.ndarray
        ``[rows * row_frames]`` int64: the source frame of each packed frame as
        ``item * frames + frame``, or ``-1`` for zeros (the unused end of a row).
    source, target : numpy.ndarray
        int64 of equal length: packed output frame ``source[i]`` (flat over rows)
        is output frame ``target[i]`` (flat ``item * frames + frame``).
    windows : tuple of Window
        The windows as placed (split where a row ended).
    whole_batch : bool
        The plan is the identity: every frame of every item, in place; running the
        tail on the batch as it is gives the same output, with no gather.
    """

    rows: int
    row_frames: int
    gather: np.ndarray
    source: np.ndarray
    target: np.ndarray
    windows: Tuple[Window, ...]
    whole_batch: bool = False

    @property
    def computed_frames(self) -> int:
        """Frames the tail runs on: the cost of the plan."""
        return self.rows * self.row_frames

    @property
    def written_frames(self) -> int:
        """Frames whose outputs are kept."""
        return int(self.source.size)

    @property
    def context_frames(self) -> int:
        """Frames computed as context only (outputs discarded)."""
        return sum(w.context for w in self.windows)


def _split(window: Window, frames: int, context: int) -> Tuple[Window, Optional[Window]]:
    """The first ``frames`` computed frames of ``window`` and the rest (with its context)."""
    if window.frames <= frames:
        return window, None
    cut = window.start + frames
    return Window(window.item, window.first, cut, window.context), Window(
        window.item, cut, window.end, min(context, cut)
    )


def _fill(
    starts: Sequence[Window], others: Iterable[Window], row_frames: int, context: int
) -> List[List[Tuple[int, Window]]]:
    """Places windows into rows of ``row_frames``; returns ``[[(offset, window), ...], ...]``."""
    rows, queue = [], deque(others)
    for window in starts:  # each opens a row (causal zero padding at the row start)
        head, rest = _split(window, row_frames, context)
        rows.append([(0, head)])
        if rest is not None:
            queue.appendleft(rest)
    if not rows:
        rows.append([])
    r = 0
    while queue:
        if r == len(rows):
            rows.append([])
        used = sum(w.frames for _, w in rows[r])
        room = row_frames - used
        window = queue[0]
        if window.frames <= room:
            rows[r].append((used, queue.popleft()))
        elif room > context:  # fill the row; the rest continues with its own context
            head, rest = _split(queue.popleft(), room, context)
            rows[r].append((used, head))
            queue.appendleft(rest)
        else:
            r += 1
    return rows


def pack_windows(
    windows: Sequence[Window],
    context: int,
    frames: int,
    batch: int,
    max_rows: int = 0,
    max_row_frames: int = 0,
) -> TailPlan:
    """Packs ``windows`` into rows of one length with little padding (see the module doc).

    Arguments
    ---------
    windows : sequence of Window
    context : int
        The tail's left context in frames (:func:`context_frames`).
    frames : int
        Frames per item of the batch the windows index.
    batch : int
    max_rows : int
        Rows to spread the work over when no window starts an utterance (0: as
        many as the batch has items).
    max_row_frames : int
        Longest row (0: no limit). A longer window is cut, each piece computed
        after its own context, so that an executor can run the rows a few at a
        time with every call's activations in cache (:func:`~speechbrain_dsl.nnet.plan_runner.run_plan`).

    Example
    -------
    >>> w = [Window(0, 0, 8, 0), Window(1, 0, 2, 0), Window(1, 5, 8, 1)]
    >>> plan = pack_windows(w, context=1, frames=8, batch=2)
    >>> plan.rows, plan.row_frames, plan.computed_frames
    (2, 8, 16)
    >>> plan.gather.reshape(2, 8)  # item * 8 + frame; -1: zeros
    array([[ 0,  1,  2,  3,  4,  5,  6,  7],
           [ 8,  9, 12, 13, 14, 15, -1, -1]])
    >>> long = pack_windows([Window(0, 0, 8, 0)], context=1, frames=8, batch=1, max_row_frames=5)
    >>> long.gather.reshape(long.rows, long.row_frames)  # frame 4 computed twice
    array([[ 0,  1,  2,  3,  4],
           [ 4,  5,  6,  7, -1]])
    """
    if not windows:
        empty = np.zeros(0, np.int64)
        return TailPlan(0, 0, empty, empty, empty, ())
    cap = max(max_row_frames, context + 1) if max_row_frames else 0
    if (
        (not cap or frames <= cap)
        and all(w.first == 0 and w.end == frames for w in windows)
        and sorted(w.item for w in windows) == list(range(batch))
    ):
        rows_of_items = np.arange(batch * frames, dtype=np.int64)
        return TailPlan(
            batch, frames, rows_of_items, rows_of_items, rows_of_items, tuple(windows), True
        )
    starts = [w for w in windows if w.start == 0]
    others = [w for w in windows if w.start != 0]
    total = sum(w.frames for w in windows)
    rows = len(starts) or min(max_rows or batch, len(others))
    if cap:
        rows = max(rows, math.ceil(total / cap))
    # An even share of the work per row. A row may end in an unusable gap of at most
    # `context` frames and each split adds one context, so the rows may overflow:
    # then try longer rows (up to the cap) and keep the cheapest layout.
    row_frames = max(math.ceil(total / rows), context + 1)
    if cap:
        row_frames = min(row_frames, cap)
    placed, best_frames = None, row_frames
    for _ in range(16):
        candidate = _fill(starts, others, row_frames, context)
        if placed is None or len(candidate) * row_frames < len(placed) * best_frames:
            placed, best_frames = candidate, row_frames
        if len(candidate) <= rows or row_frames == cap:
            break
        overflow = sum(w.frames for row in candidate[rows:] for _, w in row)
        row_frames += math.ceil(overflow / rows)
        if cap:
            row_frames = min(row_frames, cap)
    row_frames = best_frames
    gather = np.full((len(placed), row_frames), -1, dtype=np.int64)
    source, target, kept = [], [], []
    for r, row in enumerate(placed):
        for offset, w in row:
            gather[r, offset : offset + w.frames] = w.item * frames + np.arange(w.start, w.end)
            first = r * row_frames + offset + w.context
            source.append(np.arange(first, first + w.end - w.first))
            target.append(w.item * frames + np.arange(w.first, w.end))
            kept.append(w)
    return TailPlan(
        len(placed),
        row_frames,
        gather.reshape(-1),
        np.concatenate(source).astype(np.int64),
        np.concatenate(target).astype(np.int64),
        tuple(kept),
    )


def plan_routes(
    route: np.ndarray,
    segment_frames: int,
    frames: int,
    contexts: Dict[str, int],
    valid: Optional[Sequence[int]] = None,
    max_row_frames: int = 0,
) -> Dict[str, TailPlan]:
    """The plan of each tail for ``route`` ``[batch, segments]`` (True = light).

    Arguments
    ---------
    route : numpy.ndarray
        Bool ``[batch, segments]``.
    segment_frames : int
        Frames per routing segment.
    frames : int
        Frames per item (the padded batch length).
    contexts : dict
        ``{"light": frames, "full": frames}``: each tail's left context.
    valid : sequence of int, optional
        Frames per item that hold audio (:func:`valid_frame_counts`); all by default.
    max_row_frames : int
        Longest row of either plan (see :func:`pack_windows`; 0: no limit).

    Returns
    -------
    dict
        ``{"light": TailPlan, "full": TailPlan}``.
    """
    route = np.asarray(route, dtype=bool)
    batch = route.shape[0]
    valid = np.full(batch, frames) if valid is None else np.asarray(valid)
    plans = {}
    for name, selected in (("light", route), ("full", ~route)):
        runs = route_runs(selected, segment_frames, valid)
        plans[name] = pack_windows(
            windows_of(runs, contexts[name]),
            contexts[name],
            frames,
            batch,
            max_row_frames=max_row_frames,
        )
    return plans
