"""Streaming encoding with per-segment routing, equal to offline encoding.

:class:`StreamingEncoder` takes audio chunks of any size. Whenever whole routing
segments (``segment_frames`` frames, 1 s by default) have arrived, it encodes
them, each together with just enough past audio to cover the encoder's
receptive field, routes each (the switch needs the whole segment), runs only the
chosen tail and emits the segments' frames and tokens. Because every layer is
causal with a known receptive field, the frames are the ones offline encoding of
the whole stream produces. :meth:`StreamingEncoder.flush` emits the last,
partial segment.

The segments go through the exported encoder's rows
(:class:`speechbrain_dsl.inference.export.ExportableEncoder`), in onnxruntime or in eager
PyTorch (``engine``): one routing implementation for both. Latency is one
segment (plus compute): the price of routing per segment.
"""

import logging
import tempfile
from typing import List, Optional

import torch

from speechbrain_dsl.inference.export import (
    ENCODER_FILE,
    ExportableEncoder,
    export_onnx,
    metadata,
    torch_row_encoder,
)
from speechbrain_dsl.inference.runtime import Geometry, OnnxCodec, SegmentStream, threshold_for
from speechbrain_dsl.lobes.codec import DSLCodec

ENGINES = ("torch", "onnxruntime")  # what runs the encoder rows: eager PyTorch or the ONNX graph
logger = logging.getLogger(__name__)


def resolve_engine(source, engine: Optional[str] = None, precision: str = "fp32"):
    """``(engine, DSLCodec or None, OnnxCodec or None)`` for a codec, interface or runtime.

    ``engine=None`` picks onnxruntime when ``source`` comes with exported graphs
    (an :class:`OnnxCodec`, an interface or tokenizer loaded with them), else
    torch. ``engine="onnxruntime"`` for a plain ``DSLCodec`` exports its encoder
    to a temporary folder first (tens of seconds).
    """
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES} or None, got {engine!r}")
    if isinstance(source, OnnxCodec):
        if engine == "torch":
            raise ValueError(
                "engine: an OnnxCodec runs in onnxruntime only; give a DSLCodec for engine='torch'"
            )
        return "onnxruntime", None, source
    codec = getattr(source, "codec", source) if not isinstance(source, DSLCodec) else source
    if not isinstance(codec, DSLCodec):
        raise ValueError(
            f"codec: expected a DSLCodec, DSLCodecInterface or OnnxCodec, got "
            f"{type(source).__name__}"
        )
    runtime = None
    for holder in (source, codec):  # an interface or tokenizer in its onnxruntime engine
        if getattr(holder, "engine", None) == "onnxruntime" and holder.runtime is not None:
            runtime = holder.runtime
            break
    if runtime is not None and runtime.precision != precision:
        runtime = None
    if engine is None:
        engine = "onnxruntime" if runtime is not None else "torch"
    if engine == "torch":
        return engine, codec, None
    if runtime is None:
        runtime = export_runtime(codec, precision)
    return engine, codec, runtime


def export_runtime(codec, precision: str = "fp32") -> OnnxCodec:
    """An :class:`OnnxCodec` of ``codec``'s encoder, exported to a temporary folder."""
    if precision != "fp32":
        raise ValueError(
            f"precision: an int8 encoder needs calibration audio; export one with "
            f"speechbrain_dsl.inference.export (got precision={precision!r})"
        )
    if not codec.has_dsl:
        raise ValueError("codec: the onnxruntime engine needs a codec with a DSL encoder")
    logger.info("exporting the encoder to ONNX for the onnxruntime engine")
    folder = tempfile.mkdtemp(prefix="dsl-onnx-")
    path = export_onnx(
        ExportableEncoder(codec.eval()), f"{folder}/{ENCODER_FILE}", metadata(codec, "encoder")
    )
    return OnnxCodec(path, threads=torch.get_num_threads())


class StreamingEncoder:
    """Chunk-by-chunk encoder for one audio stream.

    Arguments
    ---------
    codec : DSLCodec, DSLCodecInterface or OnnxCodec
        With a DSL encoder that routes fixed-size segments.
    engine : str, optional
        ``torch`` or ``onnxruntime``; by default onnxruntime when ``codec`` comes
        with exported graphs, else torch (see :func:`resolve_engine`).
    mode : str, optional
        ``full``, ``light`` or ``mixed``; the codec's current mode by default
        (``mixed`` for an OnnxCodec), read at every push.
    threshold : float, optional
        The codec's current threshold by default.
    precision : str
        ``fp32`` or ``int8`` (onnxruntime with an int8 encoder).

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
    >>> stream = StreamingEncoder(codec)
    >>> wav = torch.randn(40000) * 0.1
    >>> parts = [stream.push(chunk) for chunk in wav.split(7000)] + [stream.flush()]
    >>> emb = torch.cat(parts)
    >>> offline, _ = codec.encode_features(wav[None, None])
    >>> emb.shape, torch.allclose(emb, offline[0].T, atol=1e-5)
    (torch.Size([125, 64]), True)
    >>> stream.last_tokens.shape  # tokens of the frames the last call returned
    torch.Size([25, 8])
    """

    def __init__(
        self,
        codec,
        engine: Optional[str] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
        precision: str = "fp32",
    ):
        self.engine, self.codec, self.runtime = resolve_engine(codec, engine, precision)
        if self.codec is not None:
            if not self.codec.has_dsl:
                raise ValueError("codec: StreamingEncoder needs a codec with a DSL encoder")
            if self.codec.encoder.dsl.segment_frames is None:
                raise ValueError(
                    "codec: streaming needs fixed-size routing segments (segment_frames)"
                )
        self._mode, self._threshold = mode, threshold
        if self.runtime is not None:
            rows, self.geometry = self.runtime.encode_rows, self.runtime.geometry
        else:
            rows = torch_row_encoder(ExportableEncoder(self.codec.eval()))
            self.geometry = Geometry.from_metadata(metadata(self.codec, "encoder"))
        self.hop = self.geometry.hop
        self.segment_samples = self.geometry.segment_samples
        self.context_samples = self.geometry.context_samples
        self.stream = SegmentStream(rows, self.geometry, 0.0)
        self.last_tokens = torch.zeros(0, self.geometry.num_codebooks, dtype=torch.long)

    @property
    def mode(self) -> str:
        """The routing mode pushes use: the one given, else the codec's (scope or default)."""
        if self.codec is not None:
            return self.codec.resolve_routing(self._mode, self._threshold)[0]
        return "mixed" if self._mode is None else self._mode

    @property
    def threshold(self) -> float:
        """The switch threshold pushes use (mixed mode)."""
        if self.codec is not None:
            return self.codec.resolve_routing(self._mode, self._threshold)[1]
        return self.runtime.threshold if self._threshold is None else float(self._threshold)

    @property
    def routes(self) -> List[bool]:
        """Per emitted segment: True where the light tail ran."""
        return self.stream.routes

    @property
    def predicted(self) -> List[float]:
        """Per emitted segment: the switch's predicted distance."""
        return self.stream.predicted

    def reset(self):
        """Starts a new stream."""
        self.stream.reset()

    def push(self, chunk) -> torch.Tensor:
        """Adds samples ``[S]`` (or ``[1, S]``); returns the frames completed ``[T, D]``.

        Their tokens are in :attr:`last_tokens` ``[T, K]``.
        """
        if torch.is_tensor(chunk):
            chunk = chunk.detach().cpu().float().numpy()
        self.stream.threshold = threshold_for(self.mode, self.threshold)
        return self._output(self.stream.push(chunk))

    def flush(self) -> torch.Tensor:
        """Encodes what is left (zero-padded to a hop, as offline); ends the stream."""
        self.stream.threshold = threshold_for(self.mode, self.threshold)
        return self._output(self.stream.flush())

    def _output(self, out):
        emb, tokens = out
        self.last_tokens = torch.from_numpy(tokens)
        return torch.from_numpy(emb)
