"""The DSL's switch (Eq. 3): per-segment statistics of the masked features -> a distance.

:class:`SegmentStatsHead` pools each routing segment (mean and log-std per channel,
optionally the segment's relative level) and scores it with a small MLP;
:class:`Switch` makes the score a non-negative predicted distance. The pooling
reads the features once (:func:`segment_sums`); exported graphs use the masked form
(:func:`masked_segment_sums`), which has no data-dependent control flow.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SegmentStatsHead", "Switch", "masked_segment_sums", "segment_sums"]


class SegmentStatsHead(nn.Module):
    """Pools features per segment (mean and log-std per channel), then an MLP.

    Cheap on purpose: it runs on every segment before the routing decision.

    Arguments
    ---------
    in_channels : int
    hidden : int
    level_input : bool
        Also reads each segment's level relative to its utterance
        (:func:`~speechbrain_dsl.nnet.routing.relative_levels`), so a head
        trained under random gain can tell a pause from quiet speech.
    sub_blocks : int
        With more than 1, also reads, per channel, how much the log energy of
        ``sub_blocks`` equal parts of the segment varies (their standard
        deviation): speech is modulated within 160 ms, stationary noise is not,
        and the segment's mean and spread alone barely tell them apart. The
        pooling still reads the features once; the segment's length must be a
        multiple of ``sub_blocks``. These inputs come after the level's.

    Example
    -------
    >>> head = SegmentStatsHead(4, hidden=8)
    >>> head(torch.randn(2, 4, 100), segment_len=30).shape
    torch.Size([2, 4])
    >>> head = SegmentStatsHead(4, hidden=8, level_input=True)
    >>> head(torch.randn(2, 4, 100), segment_len=30, levels=torch.zeros(2, 4)).shape
    torch.Size([2, 4])
    >>> head = SegmentStatsHead(4, hidden=8, sub_blocks=3)
    >>> head(torch.randn(2, 4, 100), segment_len=30).shape, head.mlp[0].in_features
    (torch.Size([2, 4]), 12)
    """

    def __init__(
        self, in_channels: int, hidden: int = 32, level_input: bool = False, sub_blocks: int = 1
    ) -> None:
        super().__init__()
        if sub_blocks < 1:
            raise ValueError(f"SegmentStatsHead: sub_blocks={sub_blocks}, expected 1 or more")
        self.level_input = level_input
        self.sub_blocks = sub_blocks
        inputs = 2 * in_channels + int(level_input) + in_channels * (sub_blocks > 1)
        self.mlp = nn.Sequential(nn.Linear(inputs, hidden), nn.ELU(), nn.Linear(hidden, 1))

    @property
    def input_widths(self) -> Tuple[int, ...]:
        """Where an older head's inputs may end: after the statistics, the level, the
        modulation (those this head reads), in the order the inputs come.

        Example
        -------
        >>> SegmentStatsHead(4, level_input=True, sub_blocks=2).input_widths
        (8, 9, 13)
        """
        channels = self.mlp[0].in_features - int(self.level_input)
        channels = channels // (3 if self.sub_blocks > 1 else 2)
        widths = [2 * channels]
        if self.level_input:
            widths.append(widths[-1] + 1)
        if self.sub_blocks > 1:
            widths.append(widths[-1] + channels)
        return tuple(widths)

    def forward(
        self,
        x: torch.Tensor,
        segment_len: int,
        lengths: Optional[torch.Tensor] = None,
        levels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Returns one raw score per segment, ``[batch, ceil(time / segment_len)]``.

        Arguments
        ---------
        x : torch.Tensor
            Features ``[batch, channels, time]``.
        segment_len : int
            Time steps per segment.
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1]; padded steps are left out of the statistics.
        levels : torch.Tensor, optional
            ``[batch, segments]`` relative levels; required with ``level_input``.
        """
        if self.level_input and levels is None:
            raise ValueError(
                "SegmentStatsHead: this head reads relative levels (level_input=True); "
                "pass levels [batch, segments]"
            )
        batch, channels, time = x.shape
        n_seg = math.ceil(time / segment_len)
        if lengths is None:
            steps = torch.full((batch,), float(time), device=x.device)
        else:
            steps = torch.round(lengths.to(x.device, torch.float32) * time).clamp(min=1)
        parts = self.sub_blocks
        if segment_len % parts:
            raise ValueError(
                f"SegmentStatsHead: segments of {segment_len} steps do not split into "
                f"sub_blocks={parts} equal parts"
            )
        sums = masked_segment_sums if torch.compiler.is_compiling() else segment_sums
        total, square = sums(x, segment_len // parts, steps)
        if parts > 1:  # [batch, channels, parts] per segment; the segment's sums add them
            sub_total, sub_square = (
                F.pad(t, (0, n_seg * parts - t.shape[-1])).reshape(batch, channels, n_seg, parts)
                for t in (total, square)
            )
            total, square = sub_total.sum(-1), sub_square.sum(-1)
        # valid steps per segment, as SpeechBrain's length mask counts them
        first = torch.arange(n_seg, device=x.device, dtype=steps.dtype) * segment_len
        count = (steps[:, None] - first[None]).clamp(min=1, max=segment_len)
        count = count.to(x.dtype)[:, None]
        mean = total / count
        mean_square = square / count
        var = (mean_square - mean.square()).clamp(min=0)
        stats = torch.cat([mean, 0.5 * torch.log(var + 1e-6)], dim=1)
        if self.level_input:
            stats = torch.cat([stats, levels[:, None].to(stats.dtype)], dim=1)
        if parts > 1:
            stats = torch.cat([stats, self._modulation(sub_square, steps, segment_len)], dim=1)
        return self.mlp(stats.transpose(1, 2)).squeeze(-1)

    def _modulation(self, sub_square, steps, segment_len):
        """Per channel and segment: std of the sub-blocks' log energy (padding left out).

        Each part's energy is floored 40 dB below the segment's mean, so the
        spread is a difference of logs that does not move with the input's level.
        """
        batch, _, n_seg, parts = sub_square.shape
        sub_len = segment_len // parts
        first = torch.arange(n_seg * parts, device=steps.device, dtype=steps.dtype) * sub_len
        count = (steps[:, None] - first[None]).clamp(min=0, max=sub_len)
        count = count.to(sub_square.dtype).reshape(batch, 1, n_seg, parts)
        valid = (count > 0).to(sub_square.dtype)
        power = sub_square / count.clamp(min=1)
        floor = 1e-4 * sub_square.sum(-1, keepdim=True) / count.sum(-1, keepdim=True).clamp(min=1)
        energy = 0.5 * torch.log(power + floor + 1e-12)
        blocks = valid.sum(-1).clamp(min=1)
        centre = (energy * valid).sum(-1) / blocks
        spread = ((energy - centre[..., None]).square() * valid).sum(-1) / blocks
        return torch.sqrt(spread + 1e-6)


def masked_segment_sums(
    x: torch.Tensor, segment_len: int, steps: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-segment sums of ``x`` and of its squares, ``[batch, channels, segments]``,
    steps at or after ``steps`` (per item) left out, by masking the whole tensor.

    The form an exported graph takes (no data-dependent control flow).
    """
    batch, channels, time = x.shape
    keep = torch.arange(time, device=x.device, dtype=steps.dtype)[None] < steps[:, None]
    x = F.pad(x * keep[:, None].to(x.dtype), (0, -time % segment_len))
    x = x.reshape(batch, channels, -1, segment_len)
    # sum and vector_norm are one fast pass each; torch.var_mean is ~20x slower.
    return x.sum(-1), torch.linalg.vector_norm(x, dim=-1).square()


def segment_sums(
    x: torch.Tensor, segment_len: int, steps: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """What :func:`masked_segment_sums` returns, in one read of ``x``.

    Whole segments are summed as a view (no padded copy); only each item's
    boundary segment is summed again over its valid steps, and segments past
    it are zeroed. A padded batch of long utterances thus costs the switch no
    extra pass over the base features.

    Example
    -------
    >>> x, steps = torch.randn(3, 2, 50), torch.tensor([50.0, 23.0, 20.0])
    >>> fast, masked = segment_sums(x, 8, steps), masked_segment_sums(x, 8, steps)
    >>> all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast, masked))
    True
    """
    batch, channels, time = x.shape
    whole = time // segment_len
    body = x[..., : whole * segment_len].reshape(batch, channels, whole, segment_len)
    totals, squares = [body.sum(-1)], [torch.linalg.vector_norm(body, dim=-1).square()]
    if time % segment_len:
        rest = x[..., whole * segment_len :]
        totals.append(rest.sum(-1, keepdim=True))
        squares.append(torch.linalg.vector_norm(rest, dim=-1, keepdim=True).square())
    total, square = torch.cat(totals, -1), torch.cat(squares, -1)
    short = (steps < time).nonzero().flatten().tolist()
    if short:
        total, square = total.clone(), square.clone()  # outputs of autograd nodes
    for b, end in zip(short, steps[short].long().tolist()):
        k = end // segment_len
        piece = x[b, :, k * segment_len : end]
        total[b, :, k:] = 0
        square[b, :, k:] = 0
        if piece.shape[-1]:
            total[b, :, k] = piece.sum(-1)
            square[b, :, k] = piece.square().sum(-1)
    return total, square


class Switch(SegmentStatsHead):
    """Predicts, per segment, the distance between the light and full tail outputs.

    The prediction is non-negative (softplus). Trained by :class:`DSLLoss` against
    the true distance with stop-gradient (Eq. 3).

    Example
    -------
    >>> switch = Switch(4)
    >>> d = switch(torch.randn(2, 4, 100), segment_len=50)
    >>> d.shape, bool((d >= 0).all())
    (torch.Size([2, 2]), True)
    """

    def forward(
        self,
        x: torch.Tensor,
        segment_len: int,
        lengths: Optional[torch.Tensor] = None,
        levels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predicted distance per segment, ``[batch, segments]``."""
        return F.softplus(super().forward(x, segment_len, lengths, levels))
