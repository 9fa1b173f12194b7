"""Activations with a graph-friendly form for exported encoders and decoders."""

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from speechbrain_dsl.nnet.conv import in_export_layout

__all__ = ["elu", "kernel_elu"]

_kernel_elu = False  # set by kernel_elu(): exported graphs keep onnxruntime's Elu


@contextlib.contextmanager
def kernel_elu() -> Iterator[None]:
    """Inside the block, :func:`elu` exports as one ``Elu`` node (to compare the forms)."""
    global _kernel_elu
    previous, _kernel_elu = _kernel_elu, True
    try:
        yield
    finally:
        _kernel_elu = previous


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU with alpha 1, as SoundStream's blocks use it.

    Inside :func:`~speechbrain_dsl.nnet.conv.export_layout` it is written as
    ``max(x, exp(min(x, 0)) - 1)``: the same function (``exp(x) - 1 >= x`` for
    every ``x``, with equality at 0), which onnxruntime runs with its vectorised
    ``Exp``, ``Min`` and ``Max``. Its ``Elu`` kernel took 26-37% of the exported
    encoder's time in mixed and full routing; the rewrite makes those 7-11% faster
    on an AVX-512 Intel Xeon (``benchmarks/encoder_ops.py``,
    ``docs/results/encoder_ops_dsl-codec-16k.json``). Eager PyTorch keeps
    ``F.elu``, which is vectorised there.

    Example
    -------
    >>> from speechbrain_dsl.nnet.conv import export_layout
    >>> x = torch.linspace(-6, 6, 101)
    >>> with export_layout():
    ...     graph_friendly = elu(x)
    >>> bool(torch.allclose(graph_friendly, elu(x), atol=1e-6))
    True
    """
    if in_export_layout() and not _kernel_elu:
        return torch.maximum(x, torch.exp(torch.minimum(x, x.new_zeros(()))) - 1)
    return F.elu(x)
