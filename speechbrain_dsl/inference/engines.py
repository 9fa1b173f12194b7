"""What runs a tokenizer's encode and decode calls: eager PyTorch or onnxruntime.

An engine takes a tokenizer call at the tensor level and returns what the
model's own methods return: ``encode(...) -> Encoding`` (tokens, embeddings and
the :class:`~speechbrain_dsl.lobes.codec.Routing` of the call) and
``decode(tokens, length) -> [B, 1, S]``.

- :class:`TorchEngine`: the :class:`~speechbrain_dsl.lobes.codec.DSLCodec`'s own
  methods.
- :class:`OnnxRuntimeEngine`: the exported graphs of a packaged folder, run by an
  :class:`~speechbrain_dsl.inference.runtime.OnnxCodec` through the same row
  planner (:func:`encode_with_runtime`); ``oracle`` mode (both tails, for
  analysis) runs in PyTorch.

Both give the same tokens and routes (see :mod:`speechbrain_dsl.inference.interface`
for the rounding caveat). :func:`make_engine` picks one by name.

Example
-------
>>> from hyperpyyaml import load_hyperpyyaml
>>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
>>> engine = make_engine("torch", codec)
>>> out = engine.encode(torch.randn(2, 16000) * 0.1, None, None, "full", None)
>>> out.tokens.shape, engine.decode(out.tokens, None).shape
(torch.Size([2, 50, 8]), torch.Size([2, 1, 16000]))
"""

from typing import Optional, Union

import numpy as np
import torch

from speechbrain_dsl.inference import runtime as rt
from speechbrain_dsl.inference.export import ExportableEncoder, metadata, torch_row_encoder
from speechbrain_dsl.inference.streaming import ENGINES
from speechbrain_dsl.lobes.codec import DSLCodec, Encoding, Routing

__all__ = [
    "ENGINES",
    "Engine",
    "OnnxRuntimeEngine",
    "TorchEngine",
    "encode_with_runtime",
    "make_engine",
]


def encode_with_runtime(
    codec: DSLCodec,
    runtime: Optional[rt.OnnxCodec],
    wavs: torch.Tensor,
    lengths: Optional[torch.Tensor],
    piece_segments: int = 60,
    embeddings: bool = False,
    mode: Optional[str] = None,
    threshold: Optional[float] = None,
) -> Encoding:
    """Encodes checked ``wavs`` ``[B, 1, S]`` through encoder rows: an :class:`Encoding`.

    ``runtime`` (an :class:`~speechbrain_dsl.inference.runtime.OnnxCodec`) runs
    the rows in onnxruntime; None runs them in eager PyTorch
    (:func:`speechbrain_dsl.inference.export.torch_row_encoder`). Either way the input is
    cut into pieces of ``piece_segments`` segments
    (:func:`~speechbrain_dsl.inference.runtime.encode_in_pieces`). The tokens are
    ``[B, T, num_codebooks]``; with ``embeddings`` the embeddings ``[B, T, D]``
    come too. ``mode`` and ``threshold`` as in ``DSLCodec.resolve_routing``; the
    call's :class:`Routing` goes to an open ``codec.routing()`` scope.
    """
    if runtime is None:
        rows = torch_row_encoder(ExportableEncoder(codec))
        geometry = rt.Geometry.from_metadata(metadata(codec, "encoder"))
    else:
        rows, geometry = runtime.encode_rows, runtime.geometry
    mode, threshold = codec.resolve_routing(mode, threshold)
    out = rt.encode_in_pieces(
        rows,
        geometry,
        wavs[:, 0].detach().cpu().float().numpy(),
        None if lengths is None else lengths.cpu().numpy(),
        rt.threshold_for(mode, threshold),
        piece_segments,
        embeddings,
    )
    tokens = torch.from_numpy(out.tokens[..., : codec.num_codebooks])
    emb = None if out.embeddings is None else torch.from_numpy(out.embeddings).transpose(1, 2)
    routing = Routing(
        mode,
        threshold,
        torch.from_numpy(out.route),
        torch.from_numpy(out.predicted),
        torch.from_numpy(out.segment_mask),
        geometry.segment_samples // geometry.hop,
    )
    return Encoding(tokens, emb, codec.record_routing(routing))


class TorchEngine:
    """Runs encode and decode calls with the codec's own (eager PyTorch) methods.

    Arguments
    ---------
    codec : DSLCodec
    """

    name = "torch"
    runtime = None

    def __init__(self, codec: DSLCodec):
        self.codec = codec

    def encode(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor],
        sample_rate: Optional[int],
        mode: Optional[str],
        threshold: Optional[float],
        tokens: bool = True,
    ) -> Encoding:
        """:meth:`DSLCodec.encode_with_routing <speechbrain_dsl.lobes.codec.DSLCodec.encode_with_routing>`."""
        return self.codec.encode_with_routing(inputs, length, sample_rate, mode, threshold, tokens)

    def decode(self, tokens: torch.Tensor, length: Optional[torch.Tensor]) -> torch.Tensor:
        """:meth:`DSLCodec.decode <speechbrain_dsl.lobes.codec.DSLCodec.decode>`: ``[B, 1, S]``."""
        return self.codec.decode(tokens, length)


class OnnxRuntimeEngine:
    """Runs encode and decode calls in onnxruntime (``oracle`` mode in PyTorch).

    Inputs and tokens are checked by the codec's checks, so errors are those of
    the PyTorch engine; results come back on the input's device.

    Arguments
    ---------
    codec : DSLCodec
        The model the graphs were exported from (checks, routing defaults and
        scopes, and the PyTorch fallback).
    runtime : OnnxCodec
    piece_segments : int
        Long inputs are encoded this many routing segments at a time.
    """

    name = "onnxruntime"

    def __init__(self, codec: DSLCodec, runtime: rt.OnnxCodec, piece_segments: int = 60):
        self.codec = codec
        self.runtime = runtime
        self.piece_segments = piece_segments

    def encode(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor],
        sample_rate: Optional[int],
        mode: Optional[str],
        threshold: Optional[float],
        tokens: bool = True,
    ) -> Encoding:
        """As :class:`TorchEngine`'s; ``Encoding.emb`` only with ``tokens=False``.

        Embeddings are computed only when asked for: tokens-only calls keep
        memory bounded.
        """
        codec = self.codec
        mode, threshold = codec.resolve_routing(mode, threshold)
        if mode not in rt.MODES:  # oracle: both tails, PyTorch only
            return codec.encode_with_routing(inputs, length, sample_rate, mode, threshold, tokens)
        wav = codec.check_input(inputs, sample_rate, check_range=True)
        length = codec.check_length(length, wav.shape[0])
        out = encode_with_runtime(
            codec,
            self.runtime,
            wav,
            length,
            self.piece_segments,
            embeddings=not tokens,
            mode=mode,
            threshold=threshold,
        )
        out.tokens = out.tokens.to(wav.device) if tokens else None
        out.emb = None if out.emb is None else out.emb.to(wav.device)
        return out

    def decode(self, tokens: torch.Tensor, length: Optional[torch.Tensor]) -> torch.Tensor:
        """Waveform ``[B, 1, T * hop]`` from ``decoder.onnx`` (PyTorch when it has none)."""
        if self.runtime.decoder is None:
            return self.codec.decode(tokens, length)
        tokens = self.codec.check_tokens(tokens)
        length = self.codec.check_length(length, tokens.shape[0])
        lengths = None if length is None else length.cpu().numpy()
        audio = self.runtime.decode(tokens.cpu().numpy(), lengths)
        return torch.from_numpy(audio)[:, None].to(tokens.device)


Engine = Union[TorchEngine, OnnxRuntimeEngine]


def make_engine(name: str, codec: DSLCodec, runtime: Optional[rt.OnnxCodec] = None) -> Engine:
    """The engine called ``name`` (``torch`` or ``onnxruntime``) for ``codec``.

    Raises
    ------
    ValueError
        For another name, or ``onnxruntime`` without a ``runtime``.
    """
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {name!r}")
    if name == "torch":
        return TorchEngine(codec)
    if runtime is None:
        raise ValueError(
            "engine: this tokenizer was loaded without exported graphs "
            "(load_tokenizer(..., engine='onnxruntime') loads them)"
        )
    return OnnxRuntimeEngine(codec, runtime)
