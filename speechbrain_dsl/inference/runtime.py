"""A DSL codec deployed with onnxruntime and numpy only: encode -> tokens -> decode, no PyTorch.

:class:`OnnxCodec` loads the graphs :mod:`speechbrain_dsl.inference.export` writes
(``encoder.onnx`` or ``encoder.int8.onnx``, ``decoder.onnx``); everything else it
needs (rates, segment and context sizes, the calibrated threshold) is in their
metadata. This module imports neither PyTorch nor the rest of the package at
module level, so a device holding only onnxruntime and numpy runs it.

Long inputs are encoded in pieces. The encoder graph takes one routing segment
per row with the receptive field of past audio before it (:func:`plan_rows`),
so any cut at a segment boundary gives the frames that encoding the whole
recording gives; memory then grows with the piece, not the recording. The same
rows serve streams (:class:`SegmentStream`) and, with the encoder run in eager
PyTorch, the ``torch`` engine of the interface for long inputs.

Example
-------
>>> codec = OnnxCodec.from_folder("my-dsl-codec")                       # doctest: +SKIP
>>> out = codec.encode(np.zeros((1, 48000), np.float32), mode="mixed")  # doctest: +SKIP
>>> out.tokens.shape, codec.decode(out.tokens).shape                    # doctest: +SKIP
((1, 150, 8), (1, 48000))
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from speechbrain_dsl.inference.manifest import verify_manifest
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

# encode_rows(segments [N, 1, S], threshold, context [N, 1, C], lengths [N])
#   -> (embeddings [N, D, S / hop], tokens [N, S / hop, K], predicted [N])
RowEncoder = Callable[
    [np.ndarray, float, np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]
]


@dataclass
class Geometry:
    """Sizes an encoder's rows are cut with (from the ONNX metadata or the codec).

    Attributes
    ----------
    sample_rate, hop : int
        Samples per second and per token frame.
    base_hop : int
        Samples per step of the features the switch pools (before the tails).
    segment_samples : int
        Samples per routing segment.
    context_samples : int
        Past samples a segment's frames depend on (whole hops).
    emb_dim, num_codebooks : int
    threshold : float
        The calibrated switch threshold.
    zero_tokens : list of int
        Tokens of an all-zero embedding (what padded frames get).
    """

    sample_rate: int
    hop: int
    base_hop: int
    segment_samples: int
    context_samples: int
    emb_dim: int
    num_codebooks: int
    threshold: float
    zero_tokens: List[int]

    @classmethod
    def from_metadata(cls, info: Dict) -> "Geometry":
        """From an encoder's :func:`speechbrain_dsl.inference.export.metadata`."""
        return cls(*(info[name] for name in cls.__dataclass_fields__))

    @property
    def segment_frames(self) -> int:
        """Frames per routing segment."""
        return self.segment_samples // self.hop


@dataclass
class Encoded:
    """What :meth:`OnnxCodec.encode` returns (numpy arrays).

    Attributes
    ----------
    tokens : numpy.ndarray
        ``[B, T, K]`` int64, ``T = ceil(samples / hop)``.
    embeddings : numpy.ndarray or None
        ``[B, D, T]`` (zeros on padding) when asked for.
    predicted : numpy.ndarray
        The switch's prediction per segment ``[B, segments]`` (NaN where a
        segment is all padding and was not run).
    route : numpy.ndarray
        Bool ``[B, segments]``, True where the light tail ran.
    segment_mask : numpy.ndarray
        Bool ``[B, segments]``, False for segments that are all padding.
    """

    tokens: np.ndarray
    embeddings: Optional[np.ndarray]
    predicted: np.ndarray
    route: np.ndarray
    segment_mask: np.ndarray


def agreement(reference, other) -> Dict[str, float]:
    """How far encodings ``other`` are from ``reference`` (int8 from fp32, one engine from another).

    Arguments
    ---------
    reference, other : Encoded or sequence of Encoded
        The same inputs encoded twice (routes compared on valid segments).

    Returns
    -------
    dict
        ``segments``, ``route_changes``, ``route_agreement``; ``tokens``,
        ``token_changes``, ``token_agreement``; ``frames_changed`` (share of
        frames with any token changed) and ``first_codebook_changes`` (share of
        frames whose first token changed).

    Example
    -------
    >>> tokens = np.zeros((1, 4, 2), np.int64)
    >>> valid = np.ones((1, 2), bool)
    >>> a = Encoded(tokens, None, np.zeros((1, 2)), np.array([[True, False]]), valid)
    >>> changed = tokens.copy(); changed[0, 3, 1] = 5
    >>> b = Encoded(changed, None, np.zeros((1, 2)), np.array([[True, True]]), valid)
    >>> m = agreement(a, b)
    >>> m["route_changes"], m["route_agreement"], m["token_changes"], m["frames_changed"]
    (1, 0.5, 1, 0.25)
    """
    reference = [reference] if isinstance(reference, Encoded) else list(reference)
    other = [other] if isinstance(other, Encoded) else list(other)
    if len(reference) != len(other) or any(
        a.tokens.shape != b.tokens.shape for a, b in zip(reference, other)
    ):
        raise ValueError(
            "other: expected encodings of the same inputs as reference (same count "
            "and token shapes)"
        )
    routes = np.concatenate(
        [a.route[a.segment_mask] == b.route[a.segment_mask] for a, b in zip(reference, other)]
    )
    same = [a.tokens == b.tokens for a, b in zip(reference, other)]
    tokens = np.concatenate([s.ravel() for s in same])
    frames = np.concatenate([s.all(-1).ravel() for s in same])
    first = np.concatenate([s[..., 0].ravel() for s in same])
    return {
        "segments": int(routes.size),
        "route_changes": int((~routes).sum()),
        "route_agreement": float(routes.mean()) if routes.size else 1.0,
        "tokens": int(tokens.size),
        "token_changes": int((~tokens).sum()),
        "token_agreement": float(tokens.mean()),
        "frames_changed": float(1 - frames.mean()),
        "first_codebook_changes": float(1 - first.mean()),
    }


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


def valid_steps(lengths: Optional[np.ndarray], batch: int, steps: int) -> np.ndarray:
    """Valid steps per item out of ``steps``, rounded as ``DSLCodec`` masks them.

    ``round(length * steps)`` in float32, at least 1 (SpeechBrain's rule in
    :func:`speechbrain_dsl.nnet.segments.length_mask`).

    Example
    -------
    >>> valid_steps(np.array([1.0, 0.5], np.float32), 2, 5)
    array([5, 2])
    """
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    product = np.asarray(lengths, np.float32) * np.float32(steps)
    return np.maximum(np.round(product), 1).astype(np.int64)


def valid_frames(lengths: Optional[np.ndarray], batch: int, frames: int) -> np.ndarray:
    """Bool ``[batch, frames]``: the frames ``clean_padding_`` keeps (``t < length * T``)."""
    if lengths is None:
        return np.ones((batch, frames), dtype=bool)
    limit = np.asarray(lengths, np.float32) * np.float32(frames)
    return np.arange(frames, dtype=np.float32)[None] < limit[:, None]


@dataclass
class _Row:
    item: int
    segment: int
    start: int  # first sample of the segment
    end: int  # end sample (exclusive)
    context: int  # context samples before start
    length: float  # valid share of the segment's switch steps


def plan_rows(
    geometry: Geometry, samples: int, steps: np.ndarray, segments: range
) -> Iterator[_Row]:
    """Encoder rows for ``segments`` of a batch ``samples`` long (a multiple of the hop).

    Arguments
    ---------
    geometry : Geometry
    samples : int
    steps : numpy.ndarray
        Valid switch steps per item (:func:`valid_steps` of the whole batch).
    segments : range
        The segment indices to plan (a piece).

    Yields
    ------
    _Row
        One per item and segment holding valid audio.
    """
    seg, base = geometry.segment_samples, geometry.base_hop
    for i in segments:
        start = i * seg
        end = min(start + seg, samples)
        own = (end - start) // base
        for b, valid in enumerate(steps.tolist()):
            rows_valid = min(valid - start // base, own)
            if rows_valid <= 0:
                continue  # all padding: zero embeddings and zero tokens
            context = min(geometry.context_samples, start)
            yield _Row(b, i, start, end, context, rows_valid / own)


def run_rows(
    encode_rows: RowEncoder,
    rows: List[_Row],
    audio: Callable[[_Row], Tuple],
    threshold: float,
    max_rows: int = 16,
):
    """Runs ``rows`` through ``encode_rows`` in batches of one shape; yields ``(row, outputs)``.

    ``audio(row)`` returns the row's ``(segment, context)`` samples.
    """
    groups: Dict[Tuple[int, int], List[_Row]] = {}
    for row in rows:
        groups.setdefault((row.context, row.end - row.start), []).append(row)
    for group in groups.values():
        for first in range(0, len(group), max_rows):
            batch = group[first : first + max_rows]
            pairs = [audio(row) for row in batch]
            emb, tokens, predicted = encode_rows(
                np.stack([s for s, _ in pairs])[:, None],
                threshold,
                np.stack([c for _, c in pairs])[:, None],
                np.array([row.length for row in batch], np.float32),
            )
            for n, row in enumerate(batch):
                yield row, (emb[n], tokens[n], predicted[n])


def encode_in_pieces(
    encode_rows: RowEncoder,
    geometry: Geometry,
    wavs: np.ndarray,
    lengths: Optional[np.ndarray] = None,
    threshold: float = 0.5,
    piece_segments: int = 60,
    embeddings: bool = False,
    progress: Optional[Callable] = None,
) -> Encoded:
    """Encodes a batch ``[B, S]`` a piece of ``piece_segments`` segments at a time.

    Each row carries its receptive field of past audio, so the result equals
    encoding the whole batch at once (``DSLCodec.encode`` with the same
    ``lengths``, padding tokens included); only one piece's rows are in memory
    besides the input and the outputs.

    Arguments
    ---------
    encode_rows : callable
        The encoder graph's signature (an onnxruntime session or the eager module).
    geometry : Geometry
    wavs : numpy.ndarray
        ``[B, S]`` float32 at ``geometry.sample_rate``.
    lengths : numpy.ndarray, optional
        Relative lengths ``[B]`` in (0, 1].
    threshold : float
        The graph's threshold input (see :func:`threshold_for`).
    piece_segments : int
    embeddings : bool
        Also return the embeddings ``[B, D, T]``.
    progress : callable, optional
        Called with the number of pieces and returns a tqdm-like bar (``update``,
        ``close``), e.g. ``functools.partial(tqdm, unit="piece")``.
    """
    if piece_segments < 1:
        raise ValueError(f"piece_segments: expected >= 1, got {piece_segments!r}")
    wavs = np.asarray(wavs, dtype=np.float32)
    batch, samples = wavs.shape
    hop = geometry.hop
    padded = samples + (-samples % hop)
    frames = padded // hop
    n_seg = math.ceil(frames / geometry.segment_frames)
    steps = valid_steps(lengths, batch, padded // geometry.base_hop)
    keep = valid_frames(lengths, batch, frames)
    zero = np.asarray(geometry.zero_tokens, np.int64)
    tokens = np.broadcast_to(zero, (batch, frames, len(zero))).copy()
    emb = np.zeros((batch, geometry.emb_dim, frames), np.float32) if embeddings else None
    predicted = np.full((batch, n_seg), np.nan, np.float32)
    route = np.zeros((batch, n_seg), bool)
    # a segment counts when a frame of it is within round(length * frames), as DSLOutput's
    segment_mask = (
        np.arange(n_seg)[None] * geometry.segment_frames
        < valid_steps(lengths, batch, frames)[:, None]
    )
    frame_steps = geometry.segment_frames

    def audio(row):
        segment = wavs[row.item, row.start : min(row.end, samples)]
        if row.end > samples:  # the hop padding of the last frame
            segment = np.pad(segment, (0, row.end - samples))
        return segment, wavs[row.item, row.start - row.context : row.start]

    pieces = math.ceil(n_seg / piece_segments)
    bar = progress(pieces) if progress is not None else None
    for p in range(pieces):
        piece = range(p * piece_segments, min((p + 1) * piece_segments, n_seg))
        rows = list(plan_rows(geometry, padded, steps, piece))
        for row, (e, t, pred) in run_rows(encode_rows, rows, audio, threshold):
            f0 = row.segment * frame_steps
            f1 = f0 + t.shape[0]
            own = keep[row.item, f0:f1]
            tokens[row.item, f0:f1][own] = t[own]
            if emb is not None:
                emb[row.item, :, f0:f1] = e * own
            predicted[row.item, row.segment] = pred
            route[row.item, row.segment] = routing.decide(pred, "mixed", threshold)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Encoded(tokens, emb, predicted, route, segment_mask)


class SegmentStream:
    """Chunk-by-chunk encoding of one stream into rows (numpy; see ``StreamingEncoder``).

    Whenever whole routing segments have arrived they are encoded in one call
    of ``encode_rows``, each with its receptive field of past audio, so the
    frames equal offline encoding of the whole stream; :meth:`flush` encodes the
    last, partial segment (zero-padded to a hop, as offline).

    Arguments
    ---------
    encode_rows : callable
    geometry : Geometry
    threshold : float
        The graph's threshold input (see :func:`threshold_for`).
    """

    def __init__(self, encode_rows: RowEncoder, geometry: Geometry, threshold: float):
        self.encode_rows = encode_rows
        self.geometry = geometry
        self.threshold = threshold
        self.reset()

    def reset(self):
        """Starts a new stream."""
        self.history = np.zeros(0, np.float32)
        self.pending = np.zeros(0, np.float32)
        self.routes: List[bool] = []
        self.predicted: List[float] = []

    def push(self, chunk: np.ndarray):
        """Adds samples; returns ``(embeddings [T, D], tokens [T, K])`` of completed segments."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not np.isfinite(chunk).all():
            raise ValueError("chunk: contains NaN or inf values")
        self.pending = np.concatenate([self.pending, chunk])
        seg = self.geometry.segment_samples
        whole = len(self.pending) // seg * seg
        if whole == 0:
            return self._empty()
        out = self._encode(self.pending[:whole], seg)
        self.pending = self.pending[whole:]
        return out

    def flush(self):
        """Encodes what is left (zero-padded to a hop); ends the stream."""
        if len(self.pending) == 0:
            return self._empty()
        segment = np.pad(self.pending, (0, -len(self.pending) % self.geometry.hop))
        out = self._encode(segment, len(segment))
        self.pending = np.zeros(0, np.float32)
        return out

    def _empty(self):
        g = self.geometry
        return np.zeros((0, g.emb_dim), np.float32), np.zeros((0, g.num_codebooks), np.int64)

    def _encode(self, audio: np.ndarray, seg: int):
        ctx = self.geometry.context_samples
        window = np.concatenate([self.history, audio])
        offset = len(self.history)
        rows = [
            _Row(0, n, offset + start, offset + start + seg, min(ctx, offset + start), 1.0)
            for n, start in enumerate(range(0, len(audio), seg))
        ]

        def row_audio(row):
            return window[row.start : row.end], window[row.start - row.context : row.start]

        results = sorted(
            run_rows(self.encode_rows, rows, row_audio, self.threshold),
            key=lambda pair: pair[0].segment,
        )
        for _, (_, _, pred) in results:
            self.predicted.append(float(pred))
            self.routes.append(bool(routing.decide(pred, "mixed", self.threshold)))
        self.history = window[max(0, len(window) - ctx) :]
        emb = np.concatenate([e.T for _, (e, _, _) in results])
        tokens = np.concatenate([t for _, (_, t, _) in results])
        return emb, tokens


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

    def encode_rows(self, segments, threshold, context, lengths):
        """One run of the encoder graph (see :mod:`speechbrain_dsl.inference.export` for the rows)."""
        return self.encoder.run(
            None,
            {
                "segments": np.ascontiguousarray(segments, dtype=np.float32),
                "threshold": np.array(threshold, np.float32),
                "context": np.ascontiguousarray(context, dtype=np.float32),
                "lengths": np.ascontiguousarray(lengths, dtype=np.float32),
            },
        )

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
