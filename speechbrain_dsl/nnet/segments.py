"""Per-segment bookkeeping shared by routing, losses and metrics.

A routed encoder works on *segments* of a fixed number of frames. These helpers
turn relative lengths into masks, average per-frame values per segment, and run a
causal module on chosen runs of segments only: gather the runs (each with the
left context the module needs) into packed rows, run once, scatter back.

Layout: features ``[batch, channels, time]``; per-segment tensors ``[batch, segments]``.
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask


def length_mask(lengths, time, device, batch):
    """Boolean ``[batch, time]``: True on steps within each relative length.

    Example
    -------
    >>> length_mask(torch.tensor([1.0, 0.5]), 4, "cpu", 2)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    """
    if lengths is None:
        return torch.ones(batch, time, dtype=torch.bool, device=device)
    steps = torch.round(lengths.to(device) * time).clamp(min=1)
    return length_to_mask(steps, max_len=time, device=device).bool()


def segment_mean(values, segment_frames, frame_mask=None):
    """Averages ``values`` [batch, frames] over segments of ``segment_frames``.

    Padded frames (``frame_mask`` False) are left out. Returns ``[batch, segments]``.

    Example
    -------
    >>> segment_mean(torch.arange(5.0)[None], 2)
    tensor([[0.5000, 2.5000, 4.0000]])
    """
    batch, frames = values.shape
    n_seg = math.ceil(frames / segment_frames)
    pad = n_seg * segment_frames - frames
    if frame_mask is None:
        frame_mask = torch.ones_like(values, dtype=torch.bool)
    weight = F.pad(frame_mask.to(values.dtype), (0, pad)).view(batch, n_seg, -1)
    total = F.pad(values * weight.flatten(1)[:, :frames], (0, pad))
    total = total.view(batch, n_seg, -1).sum(-1)
    return total / weight.sum(-1).clamp(min=1)


def runs_of(selected, segment_frames, frames):
    """Maximal runs of consecutive selected segments as ``(b, first, end)`` frames.

    Example
    -------
    >>> runs_of(torch.tensor([[True, True, False, True]]), segment_frames=2, frames=7)
    [(0, 0, 4), (0, 6, 7)]
    """
    runs = []
    for b, row in enumerate(selected.tolist()):
        start = None
        for s, on in enumerate(row + [False]):
            if on and start is None:
                start = s
            elif not on and start is not None:
                runs.append((b, start * segment_frames, min(s * segment_frames, frames)))
                start = None
    return runs


def run_packed(tail, x, runs, out):
    """Gathers ``runs`` of ``x`` into packed rows, runs ``tail`` once, scatters back.

    Each window is a run plus ``ctx`` frames of left context. A window that starts
    at the beginning of its utterance opens its own row, so the tail's causal zero
    padding matches a whole-utterance pass; other windows are appended to the
    shortest row, where their context makes the earlier row content irrelevant.

    Example
    -------
    >>> from speechbrain_dsl.nnet.conv import CausalConv1d
    >>> tail, x = CausalConv1d(2, 3, 3), torch.randn(1, 2, 8)
    >>> out = run_packed(tail, x, [(0, 4, 8)], None)  # frames 4..7 of utterance 0 only
    >>> torch.allclose(out[..., 4:], tail(x)[..., 4:]), bool((out[..., :4] == 0).all())
    (True, True)
    """
    if not runs:
        return out
    hop = tail.hop
    frames = x.shape[-1] // hop
    if all(f0 == 0 and f1 == frames for _, f0, f1 in runs):
        # Whole utterances (e.g. one segment per clip): one gather, one scatter.
        index = torch.tensor([b for b, _, _ in runs], device=x.device)
        y = tail(x.index_select(0, index))
        if out is None:
            out = y.new_zeros(x.shape[0], y.shape[1], frames)
        return out.index_copy_(0, index, y)
    ctx = max(0, math.ceil((tail.lookback + 1) / hop) - 1)
    windows = []  # (b, first input sample, end input sample, f0, f1, context frames)
    for b, f0, f1 in runs:
        c = min(ctx, f0)
        windows.append((b, (f0 - c) * hop, f1 * hop, f0, f1, c))
    rows = [[w] for w in windows if w[1] == 0]
    rest = sorted((w for w in windows if w[1] != 0), key=lambda w: w[1] - w[2])
    if not rows:
        rows.append([rest.pop(0)])
    row_len = [sum(w[2] - w[1] for w in row) for row in rows]
    for w in rest:
        r = min(range(len(rows)), key=row_len.__getitem__)
        rows[r].append(w)
        row_len[r] += w[2] - w[1]

    packed = x.new_empty(len(rows), x.shape[1], max(row_len))
    placed = []  # (row, offset in input samples, window)
    for r, row in enumerate(rows):
        offset = 0
        for w in row:
            b, s0, s1 = w[:3]
            packed[r, :, offset : offset + s1 - s0] = x[b, :, s0:s1]
            placed.append((r, offset, w))
            offset += s1 - s0
        packed[r, :, offset:] = 0  # right padding; causal, so it never leaks back
    y = tail(packed)
    if out is None:
        out = y.new_zeros(x.shape[0], y.shape[1], frames)
    for r, offset, (b, _, _, f0, f1, c) in placed:
        first = offset // hop + c
        out[b, :, f0:f1] = y[r, :, first : first + f1 - f0]
    return out
