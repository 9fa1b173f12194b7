"""How a routing plan runs: gather each tail's rows, run the tail a block at a time,
scatter the outputs.

The planner (:mod:`~speechbrain_dsl.nnet.routing`, numpy only) says which frames each
tail computes and where its outputs go; :func:`run_plan` executes that with one
gather and one scatter. Rows run in blocks of at most :data:`BLOCK_FRAMES` frames:
a tail's first layers run at the sample rate, and on CPU a call whose activations
outgrow the cache costs two to three times as much per frame
(``benchmarks/encoder_blocks.py``).
"""

from typing import Optional

import torch
from torch import nn

from speechbrain_dsl.nnet.routing import TailPlan

#: Frames (of the tails' hop) per call of a tail at inference: a block's activations at
#: the sample rate stay in a CPU's cache (``benchmarks/encoder_blocks.py``).
BLOCK_FRAMES = 300

__all__ = ["BLOCK_FRAMES", "exporting", "run_in_blocks", "run_plan"]


def run_plan(
    tail: nn.Module,
    x: torch.Tensor,
    plan: TailPlan,
    out: Optional[torch.Tensor] = None,
    block_frames: int = 0,
) -> Optional[torch.Tensor]:
    """Runs ``tail`` on the rows of ``plan`` gathered from ``x`` and scatters the outputs.

    The rows run a block at a time, each block at most ``block_frames`` frames
    (one row at least): a tail's first layers run at the sample rate, and on CPU
    a call whose activations outgrow the cache costs ~3x as much per frame
    (``benchmarks/encoder_blocks.py``).

    Arguments
    ---------
    tail : nn.Module
        Causal, with ``hop``: ``[rows, C, L * hop] -> [rows, D, L]``.
    x : torch.Tensor
        ``[batch, C, frames * hop]``.
    plan : TailPlan
    out : torch.Tensor, optional
        ``[batch, D, frames]`` to write into; zeros when None.
    block_frames : int
        Frames per call of ``tail`` (0: all rows in one call).

    Returns
    -------
    torch.Tensor or None
        ``out`` (None when both ``out`` and the plan are empty).

    Example
    -------
    >>> from speechbrain_dsl.nnet.conv import CausalConv1d
    >>> from speechbrain_dsl.nnet.routing import pack_windows, Window
    >>> tail, x = CausalConv1d(2, 3, 3, stride=2), torch.randn(2, 2, 16)
    >>> plan = pack_windows([Window(1, 4, 8, 1)], context=1, frames=8, batch=2)
    >>> out = run_plan(tail, x, plan)
    >>> torch.allclose(out[1, :, 4:], tail(x)[1, :, 4:]), bool((out[0] == 0).all())
    (True, True)
    """
    if plan.rows == 0:
        return out
    batch, channels, time = x.shape
    hop = tail.hop
    frames = time // hop
    if plan.whole_batch:
        y = run_in_blocks(tail, x, max(1, block_frames // frames) if block_frames else 0)
        return y if out is None else out.copy_(y)
    # One gather straight into [rows, channels, row_frames, hop]. Unused row ends (-1)
    # may hold any frame: the tail is causal, so they never reach a kept output.
    index = torch.as_tensor(plan.gather, device=x.device).clamp(min=0)
    index = index.view(plan.rows, 1, plan.row_frames)
    channel = torch.arange(channels, device=x.device).view(1, channels, 1)
    by_frame = x.view(batch, channels, frames, hop)
    rows = by_frame[index // frames, channel, index % frames]
    rows = rows.view(plan.rows, channels, plan.row_frames * hop)
    y = run_in_blocks(tail, rows, max(1, block_frames // plan.row_frames) if block_frames else 0)
    dim = y.shape[1]
    if out is None:
        out = y.new_zeros(batch, dim, frames)
    flat_out = out.transpose(0, 1).reshape(dim, batch * frames)
    flat_y = y.transpose(0, 1).reshape(dim, -1)
    source = torch.as_tensor(plan.source, device=x.device)
    target = torch.as_tensor(plan.target, device=x.device)
    flat_out.index_copy_(1, target, flat_y.index_select(1, source))
    return flat_out.view(dim, batch, frames).transpose(0, 1)


def exporting() -> bool:
    """Tracing, exporting or compiling: a graph must not bake in one batch's blocks."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def run_in_blocks(tail: nn.Module, rows: torch.Tensor, rows_per_call: int) -> torch.Tensor:
    """``tail(rows)``, ``rows_per_call`` rows at a time (at least one; 0: one call).

    Example
    -------
    >>> from speechbrain_dsl.nnet.conv import CausalConv1d
    >>> tail, rows = CausalConv1d(2, 3, 3, stride=2), torch.randn(5, 2, 16)
    >>> torch.allclose(run_in_blocks(tail, rows, 2), tail(rows), atol=1e-6)
    True
    """
    if not rows_per_call or rows_per_call >= rows.shape[0]:
        return tail(rows)
    return torch.cat([tail(block) for block in rows.split(rows_per_call)])
