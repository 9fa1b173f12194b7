"""Choosing the switch threshold: for a target light share or a maximum quality drop.

A segment takes the light tail when its predicted distance is *below* the
threshold, so the threshold for a light share ``p`` is the ``p``-quantile of the
predictions on a calibration set.

:func:`calibrate` is the whole procedure: a codec, calibration audio and a
policy in, a :class:`Calibration` (the threshold and what was tried) out; it
sets nothing on the codec. The policies:

- :class:`LightShare`: the quantile of the predictions for a target light share;
- :class:`MelBudget`: the largest threshold whose mixed pass loses at most a mean
  segment mel distance against the full pass;
- :class:`VisqolBudget`: one of those, then its light share halved while the
  mixed pass loses more than a ViSQOL budget on any subset of the audio.

The building blocks (:func:`threshold_for_share`, :func:`threshold_for_quality_drop`,
:func:`largest_share_within`) work on predictions and measured drops alone.
"""

import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch

from speechbrain_dsl.evaluation.metrics import segment_mel_distance, visqol

if TYPE_CHECKING:
    from speechbrain_dsl.lobes.codec import DSLCodec

#: One batch of calibration audio: ``(wav, lengths)`` or ``(wav, lengths, subsets)``.
Batch = Union[
    Tuple[torch.Tensor, Optional[torch.Tensor]],
    Tuple[torch.Tensor, Optional[torch.Tensor], Sequence[str]],
]


def threshold_for_share(predicted, share):
    """Threshold sending ``share`` of the segments in ``predicted`` light.

    Arguments
    ---------
    predicted : torch.Tensor
        Predicted distances of calibration segments (any shape).
    share : float
        Target light share in [0, 1].

    Returns
    -------
    float
        ``(predicted < threshold).mean()`` is ``share`` up to ties.

    Example
    -------
    >>> pred = torch.arange(10.0)
    >>> t = threshold_for_share(pred, 0.3)
    >>> round(float((pred < t).float().mean()), 6)
    0.3
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    values = predicted.flatten().double().sort().values
    if values.numel() == 0:
        raise ValueError("threshold_for_share: no predictions to calibrate on")
    count = round(share * values.numel())
    if count == 0:
        return float(values[0]) - 1e-9
    if count == values.numel():
        return float(values[-1]) + 1e-9
    # Midway between the last segment sent light and the first kept full.
    return float((values[count - 1] + values[count]) / 2)


def threshold_for_quality_drop(predicted, quality_drop, max_drop):
    """Largest threshold whose mixed-pass quality drop stays within ``max_drop``.

    Arguments
    ---------
    predicted : torch.Tensor
        ``[N]`` predicted distances of calibration segments.
    quality_drop : torch.Tensor
        ``[N]`` how much each segment loses when it goes light (e.g. light minus
        full mel distance); the drop of a routing is the mean over all segments of
        the drops of those sent light.
    max_drop : float

    Returns
    -------
    threshold : float
    share : float
        Light share at that threshold.

    Example
    -------
    >>> pred = torch.tensor([0.1, 0.2, 0.3, 0.4])
    >>> drop = torch.tensor([0.0, 0.0, 0.4, 1.0])
    >>> threshold_for_quality_drop(pred, drop, max_drop=0.05)[1]
    0.5
    """
    predicted, quality_drop = predicted.flatten(), quality_drop.flatten()
    if predicted.shape != quality_drop.shape:
        raise ValueError("predicted and quality_drop must have the same number of segments")
    order = predicted.argsort()
    # Routing at a threshold sends a prefix of the sorted segments light; its
    # drop is the running sum of their drops over all segments.
    mean_drop = quality_drop[order].cumsum(0) / predicted.numel()
    allowed = (mean_drop <= max_drop).nonzero()
    count = int(allowed.max()) + 1 if allowed.numel() else 0
    share = count / predicted.numel()
    return threshold_for_share(predicted, share), share


def largest_share_within(drop_at, high, max_drop, steps=4):
    """Largest light share in ``[0, high]`` whose quality drop stays within ``max_drop``.

    For a costly measure (e.g. ViSQOL of the mixed pass on a calibration set):
    ``high`` is tried first, then ``steps`` halvings of the interval. The drop is
    taken to grow with the share, and a share of 0 (the full pass) to lose nothing.

    Arguments
    ---------
    drop_at : callable
        ``drop_at(share) -> float``: the quality lost at that light share.
    high : float
        The largest share to consider (e.g. the one a cheaper budget allows).
    max_drop : float
    steps : int
        Halvings after ``high`` failed; the answer is within ``high / 2**steps``.

    Returns
    -------
    share : float
        0 when even the smallest share tried breaks the budget.
    tried : dict
        ``{share: drop}`` of every share measured, in order.

    Example
    -------
    >>> share, tried = largest_share_within(lambda s: s / 2, high=0.4, max_drop=0.05)
    >>> share, [round(s, 3) for s in tried]
    (0.1, [0.4, 0.2, 0.1, 0.15, 0.125])
    >>> largest_share_within(lambda s: 0.0, high=0.4, max_drop=0.05)[0]
    0.4
    """
    if steps < 0:
        raise ValueError(f"largest_share_within: steps must be >= 0, got {steps}")
    tried = {}

    def within(share):
        tried[share] = float(drop_at(share))
        return tried[share] <= max_drop

    if high <= 0 or within(high):
        return max(high, 0.0), tried
    low, up = 0.0, high
    for _ in range(steps):
        middle = (low + up) / 2
        if within(middle):
            low = middle
        else:
            up = middle
    return low, tried


# --- calibrating a codec ------------------------------------------------------


@dataclass(frozen=True)
class LightShare:
    """Policy: send ``share`` of the calibration segments light (a quantile of the predictions).

    Example
    -------
    >>> LightShare(0.5)
    LightShare(share=0.5)
    """

    share: float

    def __post_init__(self):
        if not _is_number(self.share) or not 0.0 <= self.share <= 1.0:
            raise ValueError(f"LightShare: share must be a number in [0, 1], got {self.share!r}")


@dataclass(frozen=True)
class MelBudget:
    """Policy: the largest threshold whose mixed pass loses at most ``max_drop`` mean
    segment mel distance against the full pass (:func:`threshold_for_quality_drop`
    on :func:`segment_mel_drops`).

    Example
    -------
    >>> MelBudget(0.05)
    MelBudget(max_drop=0.05)
    """

    max_drop: float

    def __post_init__(self):
        if not _is_number(self.max_drop) or not math.isfinite(self.max_drop):
            raise ValueError(f"MelBudget: max_drop must be a finite number, got {self.max_drop!r}")


@dataclass(frozen=True)
class VisqolBudget:
    """Policy: the light share ``start`` allows, halved while ViSQOL drops too much.

    ``start`` (a light share or a mel budget) gives the largest share;
    :func:`largest_share_within` then halves it while the mixed pass loses more
    than ``max_drop`` mean ViSQOL against the full pass on any subset of the
    calibration audio (each subset counts on its own: e.g. generated and
    recorded speech). A mel budget is not a ViSQOL budget: on the campaign's
    retrofit, 0.05 mean segment mel cost 0.10 ViSQOL.

    Arguments
    ---------
    max_drop : float
        Largest mean ViSQOL drop (full minus mixed) allowed on any subset.
    start : LightShare or MelBudget
        The policy whose light share is tried first.
    steps : int
        Halvings after the first share failed (see :func:`largest_share_within`).
    every : int
        Score every ``every``-th utterance (rows counted across batches from 0):
        ViSQOL is costly, the predictions of every utterance still count.

    Example
    -------
    >>> VisqolBudget(0.05, start=MelBudget(0.05), every=5)
    VisqolBudget(max_drop=0.05, start=MelBudget(max_drop=0.05), steps=4, every=5)
    """

    max_drop: float
    start: Union[LightShare, MelBudget]
    steps: int = 4
    every: int = 1

    def __post_init__(self):
        if not _is_number(self.max_drop) or not math.isfinite(self.max_drop):
            raise ValueError(
                f"VisqolBudget: max_drop must be a finite number, got {self.max_drop!r}"
            )
        if not isinstance(self.start, (LightShare, MelBudget)):
            raise ValueError(
                f"VisqolBudget: start must be a LightShare or a MelBudget, got {self.start!r}"
            )
        if not _is_int(self.steps) or self.steps < 0:
            raise ValueError(f"VisqolBudget: steps must be an integer >= 0, got {self.steps!r}")
        if not _is_int(self.every) or self.every < 1:
            raise ValueError(f"VisqolBudget: every must be an integer >= 1, got {self.every!r}")


Policy = Union[LightShare, MelBudget, VisqolBudget]


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` chose, and what it tried on the way.

    Attributes
    ----------
    threshold : float
        The switch threshold, in float32 (the precision the DSL layer stores
        it in, so a codec given it routes as measured here).
    share : float
        The light share the threshold was chosen for (``LightShare``: the target;
        ``MelBudget``: the share within the budget; ``VisqolBudget``: the share
        :func:`largest_share_within` kept).
    tried : dict
        ``VisqolBudget``: ``{share: worst subset ViSQOL drop}`` of every share
        measured, in order; empty for the other policies.
    """

    threshold: float
    share: float
    tried: Dict[float, float] = field(default_factory=dict)


@torch.no_grad()
def calibrate(codec: "DSLCodec", batches: Iterable[Batch], policy: Policy) -> Calibration:
    """The switch threshold of ``codec`` on calibration audio, by ``policy``; sets nothing.

    The switch's predictions on every valid segment of ``batches`` are what a
    threshold is chosen among (see :class:`LightShare`, :class:`MelBudget`,
    :class:`VisqolBudget`). The codec is only read: store the result with
    ``codec.encoder.dsl.threshold = calibration.threshold``.

    Arguments
    ---------
    codec : DSLCodec
        A codec with a DSL encoder, in eval mode.
    batches : iterable
        ``(wav, lengths)`` or ``(wav, lengths, subsets)`` per batch: ``wav``
        ``[batch, samples]`` at the codec's rate (on its device), ``lengths``
        relative ``[batch]`` (None: all full length), ``subsets`` a name per row
        (``VisqolBudget`` bounds the drop of each subset; without names, all rows
        are one subset). Iterated once.
    policy : LightShare, MelBudget or VisqolBudget

    Returns
    -------
    Calibration

    Example
    -------
    >>> from speechbrain_dsl.lobes.codec import DSLCodec
    >>> from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamDecoder, SoundStreamEncoder
    >>> from speechbrain_dsl.nnet.dsl import Mask, Switch
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> full = SoundStreamEncoder(channels=4, multipliers=(2, 4), strides=(2, 4), emb_dim=8)
    >>> light = SoundStreamEncoder(8, channels=2, multipliers=(1,), strides=(4,), emb_dim=8)
    >>> codec = DSLCodec(
    ...     DSLEncoder(full, light, Switch(8), Mask(8), split_after=1, segment_frames=10),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2, 4), strides=(2, 4)),
    ... ).eval()
    >>> wav = 0.1 * torch.randn(2, 1600)  # 20 segments of 10 frames (hop 8) each
    >>> calibration = calibrate(codec, [(wav, torch.ones(2))], LightShare(0.25))
    >>> calibration.share, calibration.tried
    (0.25, {})
    >>> int((codec.predict_distances(wav) < calibration.threshold).sum())
    10
    >>> codec.threshold  # untouched
    0.5
    """
    if not getattr(codec, "has_dsl", False):
        raise ValueError("calibrate: expected a codec with a DSL encoder; this one has none")
    if not isinstance(policy, (LightShare, MelBudget, VisqolBudget)):
        raise ValueError(
            f"calibrate: policy must be a LightShare, MelBudget or VisqolBudget, got {policy!r}"
        )
    first = policy.start if isinstance(policy, VisqolBudget) else policy
    every = policy.every if isinstance(policy, VisqolBudget) else None
    dsl = codec.encoder.dsl
    predictions, drops, picked, position = [], [], [], 0
    for batch in batches:
        wav, lengths, subsets = _unpack(batch)
        predicted = codec.predict_distances(wav, lengths)
        valid = dsl.valid_segments(lengths, codec.frames_for(wav.shape[-1]), len(wav), wav.device)
        if isinstance(first, MelBudget):
            drop = segment_mel_drops(codec, wav, lengths)
            count = min(drop.shape[1], predicted.shape[1])
            predicted, valid = predicted[:, :count], valid[:, :count]
            drops.append(drop[:, :count][valid])
        predictions.append(predicted[valid])
        if every is not None:
            rows = [i for i in range(len(wav)) if (position + i) % every == 0]
            position += len(wav)
            if rows:
                picked.append((wav[rows], lengths[rows], [subsets[i] for i in rows]))
    if not predictions:
        raise ValueError("calibrate: no calibration audio (batches was empty)")
    predictions = torch.cat(predictions)
    if isinstance(first, LightShare):
        threshold, share = threshold_for_share(predictions, first.share), first.share
    else:
        threshold, share = threshold_for_quality_drop(predictions, torch.cat(drops), first.max_drop)
    threshold = _stored(threshold)
    if every is None:
        return Calibration(threshold, share)
    high = float((predictions < threshold).float().mean())
    share, tried = largest_share_within(
        _worst_visqol_drop(codec, predictions, picked), high, policy.max_drop, policy.steps
    )
    return Calibration(_stored(threshold_for_share(predictions, share)), share, tried)


@torch.no_grad()
def segment_mel_drops(
    codec: "DSLCodec", wav: torch.Tensor, lengths: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``[batch, segments]``: segment mel distance of the light pass minus the full pass.

    What each routing segment loses when it goes light (:func:`segment_mel_distance`
    of each pass's decode against ``wav``); a segment must span whole mel hops.

    Arguments
    ---------
    codec : DSLCodec
        With a DSL encoder.
    wav : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.

    Example
    -------
    >>> from speechbrain_dsl.lobes.codec import DSLCodec
    >>> from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamDecoder, SoundStreamEncoder
    >>> from speechbrain_dsl.nnet.dsl import Switch
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> full = SoundStreamEncoder(channels=4, multipliers=(2, 4), strides=(2, 4), emb_dim=8)
    >>> light = SoundStreamEncoder(8, channels=2, multipliers=(1,), strides=(4,), emb_dim=8)
    >>> codec = DSLCodec(
    ...     DSLEncoder(full, light, Switch(8), split_after=1, segment_frames=20),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2, 4), strides=(2, 4)),
    ... ).eval()
    >>> segment_mel_drops(codec, 0.1 * torch.randn(2, 1600)).shape  # segments of 160 samples
    torch.Size([2, 10])
    """
    frames = codec.frames_for(wav.shape[-1])
    segment_samples = codec.encoder.dsl.segment_length(frames) * codec.hop_length
    distances = []
    for mode in ("light", "full"):
        tokens = codec.encode_with_routing(wav, lengths, mode=mode).tokens
        wav_hat = codec.decode(tokens, lengths)[..., : wav.shape[-1]].squeeze(1)
        distances.append(segment_mel_distance(wav_hat, wav, segment_samples))
    return distances[0] - distances[1]


def _worst_visqol_drop(codec, predictions, picked):
    """``drop_at(share)`` for :func:`largest_share_within`: the largest mean ViSQOL
    drop of a subset, mixed pass at that share against the full pass."""
    full = [_pass_visqol(codec, wav, lengths, "full") for wav, lengths, _ in picked]
    subsets = [subset for _, _, names in picked for subset in names]

    def worst_drop(share):
        threshold = _stored(threshold_for_share(predictions, share))
        mixed = [
            _pass_visqol(codec, wav, lengths, "mixed", threshold, unless_all_full=scores)
            for (wav, lengths, _), scores in zip(picked, full)
        ]
        drops = torch.cat(full) - torch.cat(mixed)
        by_subset = {}
        for subset, drop in zip(subsets, drops.tolist()):
            if drop == drop:  # NaN: a silent reference
                by_subset.setdefault(subset, []).append(drop)
        return max((sum(d) / len(d) for d in by_subset.values()), default=0.0)

    return worst_drop


def _pass_visqol(codec, wav, lengths, mode, threshold=None, unless_all_full=None):
    """ViSQOL per utterance of one pass; with ``unless_all_full`` (the full pass's
    scores), utterances that route nothing light keep those scores, neither
    decoded nor scored again."""
    encoded = codec.encode_with_routing(wav, lengths, mode=mode, threshold=threshold)
    routing = encoded.routing
    if unless_all_full is None:
        rows = torch.ones(wav.shape[0], dtype=torch.bool, device=wav.device)
        scores = torch.full((wav.shape[0],), float("nan"))
    else:
        rows = (routing.route & routing.segment_mask).flatten(1).any(dim=1)
        scores = unless_all_full.clone()
    if rows.any():
        wav_hat = codec.decode(encoded.tokens[rows], lengths[rows])[..., : wav.shape[-1]]
        scores[rows.cpu()] = visqol(wav_hat.squeeze(1), wav[rows], lengths[rows])
    return scores


def _unpack(batch):
    """``(wav, lengths, subsets)`` of a batch, with the defaults filled in."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            f"calibrate: expected batches of (wav, lengths) or (wav, lengths, subsets), "
            f"got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    wav, lengths, subsets = (*batch, None) if len(batch) == 2 else batch
    if not torch.is_tensor(wav) or wav.dim() != 2:
        shape = tuple(wav.shape) if torch.is_tensor(wav) else type(wav).__name__
        raise ValueError(f"calibrate: expected wav [batch, samples], got {shape}")
    if lengths is None:
        lengths = torch.ones(wav.shape[0], device=wav.device)
    if subsets is None:
        subsets = [""] * wav.shape[0]
    elif len(subsets) != wav.shape[0]:
        raise ValueError(
            f"calibrate: expected a subset name per row ({wav.shape[0]}), got {len(subsets)}"
        )
    return wav, lengths, list(subsets)


def _stored(threshold: float) -> float:
    """``threshold`` in float32, as the DSL layer's buffer holds it."""
    return float(torch.tensor(threshold, dtype=torch.float32))


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
