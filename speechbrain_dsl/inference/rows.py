"""Encoder rows: cutting audio into routing segments with their past, and running them.

The encoder graph (and its eager twin) takes one routing segment per row with
the receptive field of past audio before it (:func:`plan_rows`), so any cut at a
segment boundary gives the frames that encoding the whole recording gives;
memory then grows with the piece, not the recording. :func:`encode_in_pieces`
encodes a batch a piece at a time, :class:`SegmentStream` a stream chunk by
chunk, both through any :data:`RowEncoder` (an onnxruntime session's
:meth:`~speechbrain_dsl.inference.runtime.OnnxCodec.encode_rows` or
:func:`~speechbrain_dsl.inference.export.torch_row_encoder`). :class:`Geometry`
holds the sizes rows are cut with, :class:`Encoded` what comes back, and
:func:`agreement` compares two encodings. Like the runtime, this module imports
neither PyTorch nor the rest of the package at module level.
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from speechbrain_dsl.nnet import routing

__all__ = [
    "Encoded",
    "Geometry",
    "RowEncoder",
    "SegmentStream",
    "agreement",
    "encode_in_pieces",
    "plan_rows",
    "run_rows",
    "segment_levels",
    "valid_frames",
    "valid_steps",
]

# encode_rows(segments [N, 1, S], threshold, context [N, 1, C], lengths [N], levels [N])
#   -> (embeddings [N, D, S / hop], tokens [N, S / hop, K], predicted [N])
# levels: each row's relative level (routing.relative_levels), read by switches that use it
RowEncoder = Callable[
    [np.ndarray, float, np.ndarray, np.ndarray, np.ndarray],
    Tuple[np.ndarray, np.ndarray, np.ndarray],
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


def segment_levels(
    wavs: np.ndarray, segment_samples: int, valid: np.ndarray, before=(0.0, 0.0)
) -> np.ndarray:
    """Relative level of each routing segment of ``wavs`` ``[B, S]``, ``[B, segments]``.

    The numpy twin of :func:`speechbrain_dsl.nnet.segments.segment_levels`: the
    formula itself is :func:`~speechbrain_dsl.nnet.routing.relative_levels`.

    Arguments
    ---------
    wavs : numpy.ndarray
        ``[B, S]`` samples (the hop padding included).
    segment_samples : int
    valid : numpy.ndarray
        ``[B]`` valid samples per item (:func:`valid_steps` over the samples).
    before : tuple of float
        ``(energy, samples)`` of the stream before ``wavs`` (one item): a stream's
        levels are relative to everything it has carried so far.

    Example
    -------
    >>> wav = np.concatenate([np.ones(4), np.full(4, 0.1)])[None]
    >>> segment_levels(wav, 4, np.array([8])).round(4)
    array([[ 0.    , -1.7033]], dtype=float32)
    """
    batch, samples = wavs.shape
    n_seg = math.ceil(samples / segment_samples)
    keep = np.arange(n_seg * segment_samples)[None] < np.asarray(valid)[:, None]
    padded = np.zeros((batch, n_seg * segment_samples), np.float32)
    padded[:, :samples] = wavs
    energy = (np.square(padded) * keep).reshape(batch, n_seg, -1).sum(-1)
    counts = keep.reshape(batch, n_seg, -1).sum(-1).astype(np.float32)
    if before[1] > 0:  # the stream so far as one segment in front, then dropped
        energy = np.concatenate([np.full((batch, 1), before[0], np.float32), energy], 1)
        counts = np.concatenate([np.full((batch, 1), before[1], np.float32), counts], 1)
        return routing.relative_levels(energy, counts)[:, 1:]
    return routing.relative_levels(energy, counts)


@dataclass
class _Row:
    item: int
    segment: int
    start: int  # first sample of the segment
    end: int  # end sample (exclusive)
    context: int  # context samples before start
    length: float  # valid share of the segment's switch steps
    level: float = 0.0  # relative level (switches that read it)


def plan_rows(
    geometry: Geometry,
    samples: int,
    steps: np.ndarray,
    segments: range,
    levels: Optional[np.ndarray] = None,
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
    levels : numpy.ndarray, optional
        ``[B, segments]`` relative levels (:func:`segment_levels`).

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
            level = 0.0 if levels is None else float(levels[b, i])
            yield _Row(b, i, start, end, context, rows_valid / own, level)


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
                np.array([row.level for row in batch], np.float32),
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
        The graph's threshold input (see :func:`~speechbrain_dsl.inference.runtime.threshold_for`).
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
    padded_wavs = np.pad(wavs, ((0, 0), (0, padded - samples)))
    levels = segment_levels(
        padded_wavs, geometry.segment_samples, valid_steps(lengths, batch, padded)
    )
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
        rows = list(plan_rows(geometry, padded, steps, piece, levels))
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
        The graph's threshold input (see :func:`~speechbrain_dsl.inference.runtime.threshold_for`).
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
        self.energy = (0.0, 0.0)  # squared samples and samples carried so far (levels)

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
        levels = segment_levels(audio[None], seg, np.array([len(audio)]), self.energy)[0]
        rows = [
            _Row(0, n, offset + start, offset + start + seg, min(ctx, offset + start), 1.0, lv)
            for n, (start, lv) in enumerate(zip(range(0, len(audio), seg), levels.tolist()))
        ]
        total = float(np.square(audio, dtype=np.float64).sum())
        self.energy = (self.energy[0] + total, self.energy[1] + len(audio))

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
