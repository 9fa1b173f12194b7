"""A DSL codec deployed with onnxruntime and numpy only: encode -> tokens -> decode, no PyTorch.

:class:`OnnxCodec` loads the graphs :mod:`speechbrain_dsl.inference.export` writes
(``encoder.onnx`` or ``encoder.int8.onnx``, ``decoder.onnx``); everything else it
needs (rates, segment and context sizes, the calibrated threshold) is in their
metadata. This module imports neither PyTorch nor the rest of the package at
module level, so a device holding only onnxruntime and numpy runs it.

Long inputs are encoded in pieces and streams chunk by chunk, in encoder rows
(one routing segment with its past audio each): the row planning is in
:mod:`speechbrain_dsl.inference.rows` (re-exported here), shared with the
``torch`` engine of the interface, which runs the encoder in eager PyTorch.

Example
-------
>>> codec = OnnxCodec.from_folder("my-dsl-codec")                       # doctest: +SKIP
>>> out = codec.encode(np.zeros((1, 48000), np.float32), mode="mixed")  # doctest: +SKIP
>>> out.tokens.shape, codec.decode(out.tokens).shape                    # doctest: +SKIP
((1, 150, 8), (1, 48000))
"""

import json
import math
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from speechbrain_dsl.inference.manifest import verify_manifest
from speechbrain_dsl.inference.rows import (
    Encoded,
    Geometry,
    RowEncoder,
    SegmentStream,
    agreement,
    encode_in_pieces,
    plan_rows,
    run_rows,
    valid_frames,
    valid_steps,
)
from speechbrain_dsl.nnet import routing
from speechbrain_dsl.nnet.routing import ENGINE_MODES as MODES

# The graph format: written by speechbrain_dsl.inference.export, read here.
ENCODER_FILE = "encoder.onnx"
ENCODER_INT8_FILE = "encoder.int8.onnx"
DECODER_FILE = "decoder.onnx"
ONNX_FILES = (ENCODER_FILE, DECODER_FILE, ENCODER_INT8_FILE)
METADATA_KEY = "speechbrain_dsl"  # ONNX metadata_props key holding the model's JSON
FORMAT_VERSION = 2
PRECISIONS = {"fp32": ENCODER_FILE, "int8": ENCODER_INT8_FILE}

__all__ = [
    "DECODER_FILE",
    "ENCODER_FILE",
    "ENCODER_INT8_FILE",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "MODES",
    "ONNX_FILES",
    "PRECISIONS",
    "Encoded",
    "Geometry",
    "OnnxCodec",
    "RowEncoder",
    "SegmentStream",
    "agreement",
    "encode_in_pieces",
    "plan_rows",
    "run_rows",
    "threshold_for",
    "valid_frames",
    "valid_steps",
]


def threshold_for(mode: str, threshold: float) -> float:
    """The graph's threshold input for a routing ``mode`` (full: -inf, light: +inf).

    The exported graph routes by :func:`speechbrain_dsl.nnet.routing.decide`'s
    rule (a prediction below the threshold goes light); ``oracle`` needs both
    tails' outputs and is refused.

    Example
    -------
    >>> threshold_for("full", 0.5), threshold_for("mixed", 0.5)
    (-inf, 0.5)
    """
    if mode not in MODES:
        raise ValueError(
            f"mode: the exported encoder runs {', '.join(MODES)}, got {mode!r} "
            f"(oracle runs both tails: use the torch engine)"
        )
    return float(routing.threshold_for(mode, threshold))


def _session(path, threads: Optional[int]):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
    options.log_severity_level = 3  # unused-initializer notes after graph optimisation
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _metadata(session, path, kind: str) -> Dict:
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise ValueError(
            f"{path} holds no {METADATA_KEY} metadata (not exported by "
            f"speechbrain_dsl.inference.export, or by an older version: export it again)"
        )
    info = json.loads(raw)
    if info.get("format_version") != FORMAT_VERSION or info.get("kind") != kind:
        raise ValueError(
            f"{path}: expected a {kind} graph of format {FORMAT_VERSION}, got a "
            f"{info.get('kind')} graph of format {info.get('format_version')} "
            f"(export it again)"
        )
    return info


def _check_manifest(folder: Path, names) -> None:
    """Checks ``names`` against ``folder/SHA256SUMS`` when there is one.

    The one manifest reader (:func:`~speechbrain_dsl.inference.manifest.verify_manifest`):
    a corrupt manifest, an unlisted, missing or changed file is a ``ValueError``
    naming it.
    """
    verify_manifest(folder, names)


class OnnxCodec:
    """Encoder (and decoder) graphs in onnxruntime, numpy in and out.

    Arguments
    ---------
    encoder : str or Path
        An encoder graph (fp32 or int8) written by :mod:`speechbrain_dsl.inference.export`.
    decoder : str or Path, optional
        Its decoder graph (:meth:`decode` needs it).
    threads : int, optional
        onnxruntime's intra- and inter-op threads (its default when None).
    """

    def __init__(self, encoder, decoder=None, threads: Optional[int] = None):
        self.encoder_path = Path(encoder)
        self.decoder_path = None if decoder is None else Path(decoder)
        for path in (self.encoder_path, self.decoder_path):
            if path is not None and not path.is_file():
                raise ValueError(f"ONNX graph {path} does not exist")
        self.encoder = _session(self.encoder_path, threads)
        self.info = _metadata(self.encoder, self.encoder_path, "encoder")
        # graphs of switches that read relative levels take them as an input
        self.reads_levels = any(i.name == "levels" for i in self.encoder.get_inputs())
        self.geometry = Geometry.from_metadata(
            dict(self.info, base_hop=self.info.get("base_hop", 1))
        )
        self.decoder = None
        if self.decoder_path is not None:
            self.decoder = _session(self.decoder_path, threads)
            info = _metadata(self.decoder, self.decoder_path, "decoder")
            if info.get("weights_sha256") != self.info.get("weights_sha256"):
                raise ValueError(
                    f"{self.decoder_path} and {self.encoder_path} were exported "
                    f"from different weights"
                )

    @classmethod
    def from_folder(
        cls, folder, precision: str = "fp32", threads: Optional[int] = None, decoder: bool = True
    ) -> "OnnxCodec":
        """The graphs of a packaged folder (checked against its ``SHA256SUMS`` if it has one).

        Arguments
        ---------
        folder : str or Path
        precision : str
            ``fp32`` (``encoder.onnx``) or ``int8`` (``encoder.int8.onnx``).
        threads : int, optional
        decoder : bool
            Load ``decoder.onnx`` too.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {sorted(PRECISIONS)}, got {precision!r}")
        folder = Path(folder)
        names = [PRECISIONS[precision]] + ([DECODER_FILE] if decoder else [])
        for name in names:
            if not (folder / name).is_file():
                raise ValueError(
                    f"{folder} has no {name} (write it with python -m "
                    f"speechbrain_dsl.inference.package or speechbrain_dsl.inference.export)"
                )
        _check_manifest(folder, names)
        return cls(folder / names[0], folder / DECODER_FILE if decoder else None, threads)

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8`` (the encoder's)."""
        return self.info["precision"]

    @property
    def sample_rate(self) -> int:
        """Samples per second."""
        return self.geometry.sample_rate

    @property
    def threshold(self) -> float:
        """The calibrated switch threshold stored with the graph."""
        return self.geometry.threshold

    def encode_rows(self, segments, threshold, context, lengths, levels=None):
        """One run of the encoder graph (see :mod:`speechbrain_dsl.inference.export` for the rows).

        ``levels`` reaches the graph only where its switch reads them (zero if None).
        """
        feed = {
            "segments": np.ascontiguousarray(segments, dtype=np.float32),
            "threshold": np.array(threshold, np.float32),
            "context": np.ascontiguousarray(context, dtype=np.float32),
            "lengths": np.ascontiguousarray(lengths, dtype=np.float32),
        }
        if self.reads_levels:
            rows = len(feed["lengths"])
            feed["levels"] = np.zeros(rows, np.float32) if levels is None else levels
            feed["levels"] = np.ascontiguousarray(feed["levels"], dtype=np.float32)
        return self.encoder.run(None, feed)

    def encode(
        self,
        wavs: np.ndarray,
        lengths: Optional[np.ndarray] = None,
        mode: str = "mixed",
        threshold: Optional[float] = None,
        piece_segments: int = 60,
        embeddings: bool = False,
        progress: Optional[Callable] = None,
    ) -> Encoded:
        """Tokens (and routes) of ``wavs`` ``[B, S]`` (or ``[S]``), float32 in [-1, 1].

        Arguments
        ---------
        wavs : numpy.ndarray
        lengths : numpy.ndarray, optional
            Relative lengths ``[B]`` in (0, 1].
        mode : str
            ``full``, ``light`` or ``mixed``.
        threshold : float, optional
            For ``mixed`` (the calibrated one by default).
        piece_segments : int
            Segments encoded per piece (memory grows with it).
        embeddings : bool
            Also return the embeddings.
        progress : callable, optional
            See :func:`encode_in_pieces`.
        """
        wavs = np.asarray(wavs, dtype=np.float32)
        if wavs.ndim == 1:
            wavs = wavs[None]
        if wavs.ndim != 2 or wavs.shape[0] == 0 or wavs.shape[1] == 0:
            raise ValueError(f"wavs: expected [batch, samples], got shape {wavs.shape}")
        if not np.isfinite(wavs).all():
            raise ValueError("wavs: contains NaN or inf values")
        limit = threshold_for(mode, self.threshold if threshold is None else threshold)
        return encode_in_pieces(
            self.encode_rows,
            self.geometry,
            wavs,
            lengths,
            limit,
            piece_segments,
            embeddings,
            progress,
        )

    def encode_file(
        self,
        path,
        mode: str = "mixed",
        threshold: Optional[float] = None,
        block_seconds: float = 60.0,
        progress: Optional[Callable] = None,
    ) -> Encoded:
        """Tokens ``[1, T, K]`` (and routes) of an audio file at :attr:`sample_rate`.

        The file is read and encoded ``block_seconds`` at a time through a
        :class:`SegmentStream`: memory holds one block, and the tokens are those
        of encoding the file whole. Channels are averaged. (The PyTorch
        interface's ``encode_file`` also resamples.)
        """
        import soundfile as sf

        try:
            reader = sf.SoundFile(str(path))
        except (RuntimeError, sf.LibsndfileError) as err:
            raise ValueError(f"cannot read audio file {path}: {err}") from None
        with reader:
            if reader.samplerate != self.sample_rate:
                raise ValueError(
                    f"{path}: {reader.samplerate} Hz, this codec takes "
                    f"{self.sample_rate} Hz (resample first, or use "
                    f"DSLCodecInterface.encode_file)"
                )
            stream = self.stream(mode, threshold)
            block = max(1, round(block_seconds * self.sample_rate))
            bar = progress(math.ceil(reader.frames / block)) if progress is not None else None
            tokens = []
            for audio in reader.blocks(blocksize=block, dtype="float32", always_2d=True):
                tokens.append(stream.push(audio.mean(1))[1])
                if bar is not None:
                    bar.update(1)
            tokens.append(stream.flush()[1])
            if bar is not None:
                bar.close()
        routes = np.array(stream.routes, bool)[None]
        predicted = np.array(stream.predicted, np.float32)[None]
        return Encoded(np.concatenate(tokens)[None], None, predicted, routes, np.ones_like(routes))

    def stream(self, mode: str = "mixed", threshold: Optional[float] = None) -> SegmentStream:
        """A :class:`SegmentStream` on this encoder."""
        limit = threshold_for(mode, self.threshold if threshold is None else threshold)
        return SegmentStream(self.encode_rows, self.geometry, limit)

    def decode(self, tokens: np.ndarray, lengths: Optional[np.ndarray] = None) -> np.ndarray:
        """Waveforms ``[B, T * hop]`` of tokens ``[B, T, K]``; ``lengths`` zeroes padding."""
        if self.decoder is None:
            raise ValueError("decode: this OnnxCodec was loaded without a decoder graph")
        tokens = np.asarray(tokens)
        if tokens.ndim != 3 or not 1 <= tokens.shape[-1] <= self.geometry.num_codebooks:
            raise ValueError(
                f"tokens: expected [batch, frames, K] with 1 <= K <= "
                f"{self.geometry.num_codebooks}, got shape {tokens.shape}"
            )
        vocab = self.info["vocab_size"]
        if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
            raise ValueError(
                f"tokens: values must be in [0, {vocab}), got [{tokens.min()}, {tokens.max()}]"
            )
        audio = self.decoder.run(None, {"tokens": tokens.astype(np.int64)})[0][:, 0]
        if lengths is not None:
            audio = audio * valid_frames(lengths, audio.shape[0], audio.shape[1])
        return audio
