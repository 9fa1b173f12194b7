"""What a :class:`~speechbrain_dsl.lobes.codec.DSLCodec` call returns: the training
pass's tensors (:class:`CodecOutput`), the routes of an encode call (:class:`Routing`)
and tokens with their routes (:class:`Encoding`).
"""

import math
from dataclasses import dataclass
from typing import List, Optional

import torch

from speechbrain_dsl.nnet.dsl_output import DSLOutput

__all__ = ["CodecOutput", "Encoding", "Routing"]


@dataclass
class CodecOutput:
    """Everything a training step needs from one codec forward pass.

    Attributes
    ----------
    wav_hat : torch.Tensor
        Reconstruction ``[B, 1, S_padded]`` (``S`` padded to a multiple of the hop).
    emb : torch.Tensor
        Encoder output ``[B, T, D]`` (before quantization).
    quantized : torch.Tensor
        ``[B, T, D]``.
    tokens : torch.Tensor
        ``[B, T, K]``.
    commitment : torch.Tensor
        Scalar RVQ commitment loss.
    dsl : DSLOutput or None
        The DSL's outputs (None for a baseline encoder).
    """

    wav_hat: torch.Tensor
    emb: torch.Tensor
    quantized: torch.Tensor
    tokens: torch.Tensor
    commitment: torch.Tensor
    dsl: Optional[DSLOutput]


@dataclass
class Routing:
    """Which segments of one encode call took the light tail, and why.

    What an encode call hands back about its routing (:meth:`DSLCodec.encode_with_routing`,
    :meth:`DSLCodec.routing`); a codec without a DSL routes everything full.

    Attributes
    ----------
    mode : str
        The mode the call ran in (``full``, ``light``, ``mixed``, ``oracle``).
    threshold : float or None
        The threshold it used (None without a DSL).
    route : torch.Tensor
        Bool ``[batch, segments]``: True where the light tail ran.
    predicted : torch.Tensor or None
        The switch's predicted distance per segment (``mixed`` and ``oracle``).
    segment_mask : torch.Tensor
        Bool ``[batch, segments]``: False for segments that are all padding.
    segment_frames : int
        Encoder frames per segment.

    Example
    -------
    >>> r = Routing("mixed", 0.5, torch.tensor([[True, False], [True, True]]),
    ...             None, torch.tensor([[True, True], [True, False]]), 50)
    >>> round(r.light_share, 4), r.light_shares()
    (0.6667, [0.5, 1.0])
    """

    mode: str
    threshold: Optional[float]
    route: torch.Tensor
    predicted: Optional[torch.Tensor]
    segment_mask: torch.Tensor
    segment_frames: int

    @property
    def light_share(self) -> float:
        """Share of the valid segments that took the light tail (NaN for none)."""
        valid = self.route[self.segment_mask]
        return float(valid.float().mean()) if valid.numel() else math.nan

    def light_shares(self) -> List[float]:
        """Light share of each item's own (valid) segments."""
        return [
            float(r[m].float().mean()) if bool(m.any()) else math.nan
            for r, m in zip(self.route, self.segment_mask)
        ]


@dataclass
class Encoding:
    """What :meth:`DSLCodec.encode_with_routing` returns.

    Attributes
    ----------
    tokens : torch.Tensor
        ``[B, T, num_codebooks]`` long.
    emb : torch.Tensor or None
        Continuous encoder output ``[B, T, D]`` (before quantization).
    routing : Routing
    """

    tokens: torch.Tensor
    emb: Optional[torch.Tensor]
    routing: Routing
