"""The Dynamic Switch Layer (DSL): mask, switch, routed tails and the DSL loss.

Paper: "Dynamic Switch Layers For Unsupervised Learning", §2.2. A DSL sits after a
*base* network ``B`` and before the rest of the model, the *full tail* ``F``::

    m = M(B(x))                    Mask: per-channel gain, L1 on its output (Eq. 2)
    d_hat = S(m)                   Switch: predicted distance(L(m), F(m)) per segment
    y = L(m) if d_hat < tau else F(m)

``L`` is the *lightweight tail*: same input and output shapes as ``F``, far fewer
filters, distilled from ``F`` (Eq. 4). The switch regresses the true distance with
a stop-gradient target (Eq. 3). The loss is Eq. 5::

    L_DSL = alpha * L_compression + beta * (L_switch + L_light)

Routing unit: a *segment* of ``segment_frames`` output frames (or the whole
utterance). At inference each segment runs exactly one tail: segments are gathered
per path into packed rows, only that path runs on them, and results are scattered
back. A tail is causal with a finite receptive field, so each gathered window
carries just enough left context of the base features (``ctx`` frames) for its
outputs to equal running the tail on the whole utterance.

Training runs both tails on everything (the losses need both) and returns the full
tail's output.

This module holds the layer; its parts have modules of their own:
:mod:`~speechbrain_dsl.nnet.plan_runner` (how a route runs),
:mod:`~speechbrain_dsl.nnet.dsl_output` (what a forward returns),
:mod:`~speechbrain_dsl.nnet.mask`,
:mod:`~speechbrain_dsl.nnet.switch`, :mod:`~speechbrain_dsl.nnet.distances` and
:mod:`~speechbrain_dsl.nnet.dsl_loss`.

Layout: features ``[batch, channels, time]``; per-segment tensors ``[batch, segments]``.
"""

from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from speechbrain_dsl.nnet.distances import (
    DISTANCES,
    RELATIVE_FLOOR,
    mean_absolute_error,
    mean_squared_error,
    segment_distance,
)
from speechbrain_dsl.nnet.dsl_loss import DSLLoss
from speechbrain_dsl.nnet.dsl_output import DSLOutput
from speechbrain_dsl.nnet.mask import Mask, activation_sparsity
from speechbrain_dsl.nnet.plan_runner import BLOCK_FRAMES, run_plan
from speechbrain_dsl.nnet.routing import (
    MODES,
    TailPlan,
    context_frames,
    plan_routes,
    valid_frame_counts,
)
from speechbrain_dsl.nnet.routing import decide as decide_routes
from speechbrain_dsl.nnet.segments import length_mask, segment_mean
from speechbrain_dsl.nnet.switch import SegmentStatsHead, Switch

# The parts live in modules of their own; their names stay importable from here,
# as YAML files and packaged models name them (speechbrain_dsl.nnet.dsl.Switch).
__all__ = [
    "Mask",
    "SegmentStatsHead",
    "Switch",
    "mean_absolute_error",
    "mean_squared_error",
    "DISTANCES",
    "RELATIVE_FLOOR",
    "DSLOutput",
    "DynamicSwitchLayer",
    "run_plan",
    "DSLLoss",
    "activation_sparsity",
]


class DynamicSwitchLayer(nn.Module):
    """Mask, Switch and a routed choice between a full and a lightweight tail.

    Arguments
    ---------
    full_tail : nn.Module
        Causal module ``[B, C, T] -> [B, D, T / hop]`` exposing ``hop`` and
        ``lookback`` (see :mod:`speechbrain_dsl.nnet.conv`).
    light_tail : nn.Module
        Same interface and output shape, far fewer filters.
    switch : Switch
    mask : Mask or None
        None skips the mask (no compression).
    segment_frames : int or None
        Routing unit in output frames (50 = 1 s at 50 Hz); None routes whole
        utterances.
    mode : str
        Inference mode: ``full``, ``light``, ``mixed`` (predicted distance below
        ``threshold`` goes light) or ``oracle`` (true distance below ``threshold``
        goes light; runs both tails, for analysis only).
    threshold : float
        Switch threshold on the (predicted or true) distance.
    distance : str
        ``mae``, ``mse``, ``relative_mae`` or ``utterance_mae`` (see
        :data:`DISTANCES`): the distance behind the switch target and distillation.

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
    >>> full = SoundStreamEncoder(4, channels=8, multipliers=(2,), strides=(4,), emb_dim=6)
    >>> light = SoundStreamEncoder(4, channels=2, multipliers=(1,), strides=(4,), emb_dim=6)
    >>> dsl = DynamicSwitchLayer(full.stages, light.stages, Switch(4), Mask(4),
    ...                          segment_frames=5, mode="mixed", threshold=0.5).eval()
    >>> out = dsl(torch.randn(2, 4, 80))
    >>> out.features.shape, out.route.shape
    (torch.Size([2, 6, 20]), torch.Size([2, 4]))
    """

    def __init__(
        self,
        full_tail: nn.Module,
        light_tail: nn.Module,
        switch: Switch,
        mask: Optional[nn.Module] = None,
        segment_frames: Optional[int] = 50,
        mode: str = "mixed",
        threshold: float = 0.5,
        distance: str = "mae",
        block_frames: int = BLOCK_FRAMES,
    ) -> None:
        super().__init__()
        if full_tail.hop != light_tail.hop:
            raise ValueError(
                f"DynamicSwitchLayer: light tail hop {light_tail.hop} must equal the "
                f"full tail hop {full_tail.hop} (same output shape)"
            )
        if distance not in DISTANCES:
            raise ValueError(
                f"DynamicSwitchLayer: distance must be one of {sorted(DISTANCES)}, got {distance!r}"
            )
        if segment_frames is not None and segment_frames < 1:
            raise ValueError(
                f"DynamicSwitchLayer: segment_frames must be >= 1 or None, got {segment_frames}"
            )
        self.full_tail = full_tail
        self.light_tail = light_tail
        self.switch = switch
        self.mask = mask if mask is not None else nn.Identity()
        self.segment_frames = segment_frames
        self.mode = mode
        # A buffer, so a calibrated threshold is saved with the checkpoint.
        self.register_buffer("calibrated_threshold", torch.tensor(float(threshold)))
        self.distance_name = distance
        self.hop = full_tail.hop
        if block_frames < 0:
            raise ValueError(
                f"DynamicSwitchLayer: block_frames must be >= 0 (0: no blocks), got {block_frames}"
            )
        self.block_frames = block_frames
        for tail in (full_tail, light_tail):
            if hasattr(tail, "block_frames"):
                tail.block_frames = 0  # the layer runs its tails' rows in blocks itself

    @property
    def mode(self) -> str:
        """Inference mode, one of :data:`MODES`."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {value!r}")
        self._mode = value

    @property
    def threshold(self) -> float:
        """Switch threshold: segments with a distance below it take the light tail."""
        return float(self.calibrated_threshold)

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.calibrated_threshold.fill_(float(value))

    def predict_distances(
        self,
        x: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        levels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Switch predictions per segment for base features ``x``; runs no tail."""
        seg = self.segment_length(x.shape[-1] // self.hop)
        return self.switch(self.mask(x), seg * self.hop, lengths, levels)

    def segment_distance(
        self, light: torch.Tensor, full: torch.Tensor, frame_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Distance(light, full) per segment, ``[batch, segments]``.

        Example
        -------
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
        >>> tail = SoundStreamEncoder(4, channels=2, multipliers=(1,), strides=(4,), emb_dim=6)
        >>> dsl = DynamicSwitchLayer(tail.stages, tail.stages, Switch(4), segment_frames=2,
        ...                          distance="relative_mae")
        >>> full, light = torch.ones(1, 6, 4), torch.full((1, 6, 4), 1.5)
        >>> dsl.segment_distance(light, full), dsl.segment_distance(10 * light, 10 * full)
        (tensor([[0.4995, 0.4995]]), tensor([[0.4999, 0.4999]]))
        >>> dsl.distance_name = "utterance_mae"  # a pause in the second segment
        >>> full = torch.tensor([[[1.0, 1.0, 0.1, 0.1]]])
        >>> dsl.segment_distance(1.5 * full, full), dsl.segment_distance(15 * full, 10 * full)
        (tensor([[0.9074, 0.0907]]), tensor([[0.9089, 0.0909]]))
        """
        return segment_distance(
            self.distance_name, light, full, self.segment_length(full.shape[-1]), frame_mask
        )

    def segment_length(self, frames: int) -> int:
        """Frames per routing segment for an input of ``frames`` frames."""
        return self.segment_frames or max(frames, 1)

    def valid_segments(
        self,
        lengths: Optional[torch.Tensor],
        frames: int,
        batch: int,
        device: Union[str, torch.device],
    ) -> torch.Tensor:
        """Bool ``[batch, segments]``: False for segments that are all padding."""
        frame_mask = length_mask(lengths, frames, device, batch)
        return segment_mean(frame_mask.float(), self.segment_length(frames)) > 0

    def check_mode(self, mode: Optional[str]) -> str:
        """``mode`` if it is one of :data:`MODES`, the layer's default mode for None."""
        if mode is None:
            return self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return mode

    def decide(
        self,
        scores: torch.Tensor,
        mode: Optional[str] = None,
        threshold: Union[float, torch.Tensor, None] = None,
    ) -> torch.Tensor:
        """Routes from per-segment scores: the one place a route is decided.

        Every routed pass calls it: the layer itself, the exported row encoder
        (and so streaming and onnxruntime) and the evaluation's oracle routes.

        Arguments
        ---------
        scores : torch.Tensor
            Distances per segment, any shape: the switch's predictions, or the
            true distances for ``oracle`` routing. Only their shape is used in
            ``full`` and ``light`` mode.
        mode : str, optional
            ``full`` (nothing light), ``light`` (everything light), ``mixed`` or
            ``oracle`` (a score below ``threshold`` goes light); the layer's
            default mode when None.
        threshold : float or torch.Tensor, optional
            The layer's calibrated threshold when None; a 0-dim tensor keeps it a
            graph input when exported.

        Returns
        -------
        torch.Tensor
            Bool, the shape of ``scores``: True where the light tail runs.

        Example
        -------
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
        >>> tail = SoundStreamEncoder(4, channels=2, multipliers=(1,), strides=(4,), emb_dim=6)
        >>> dsl = DynamicSwitchLayer(tail.stages, tail.stages, Switch(4), threshold=0.5)
        >>> scores = torch.tensor([[0.2, 0.7]])
        >>> dsl.decide(scores), dsl.decide(scores, "full"), dsl.decide(scores, threshold=1.0)
        (tensor([[ True, False]]), tensor([[False, False]]), tensor([[True, True]]))
        """
        mode = self.check_mode(mode)
        return decide_routes(scores, mode, self.threshold if threshold is None else threshold)

    def forward(
        self,
        x: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        route: Optional[torch.Tensor] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
        levels: Optional[torch.Tensor] = None,
    ) -> DSLOutput:
        """Applies mask, switch and the tails to base features ``x`` [B, C, T].

        Arguments
        ---------
        x : torch.Tensor
            Base features; ``T`` must be a multiple of the tails' hop.
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1].
        route : torch.Tensor, optional
            Bool ``[batch, segments]`` forcing the route (True = light) in inference,
            e.g. for benchmarks at a fixed light share. The switch still runs.
        mode : str, optional
            Routing mode of this call (see :meth:`decide`); the layer's default
            mode when None.
        threshold : float, optional
            Threshold of this call; the calibrated one when None.
        levels : torch.Tensor, optional
            ``[batch, segments]`` relative levels for a switch that reads them
            (:func:`~speechbrain_dsl.nnet.routing.relative_levels`).

        Returns
        -------
        DSLOutput
        """
        if x.shape[-1] % self.hop:
            raise ValueError(
                f"DynamicSwitchLayer: input length {x.shape[-1]} must be a multiple "
                f"of the tail hop {self.hop}"
            )
        mode = self.check_mode(mode)
        batch, frames = x.shape[0], x.shape[-1] // self.hop
        seg = self.segment_length(frames)
        frame_mask = length_mask(lengths, frames, x.device, batch)
        segment_mask = self.valid_segments(lengths, frames, batch, x.device)
        masked = self.mask(x)

        if self.training:
            full = self.full_tail(masked)
            light = self.light_tail(masked)
            return DSLOutput(
                features=full,
                masked=masked,
                predicted=self.switch(masked, seg * self.hop, lengths, levels),
                distance=self.segment_distance(light, full.detach(), frame_mask),
                route=None,
                segment_mask=segment_mask,
                light_features=light,
            )

        predicted = distance = light = None
        if route is not None:
            if route.shape != segment_mask.shape:
                raise ValueError(
                    f"route must have shape {tuple(segment_mask.shape)} (batch, segments), "
                    f"got {tuple(route.shape)}"
                )
            mode, route = "mixed", route.bool()
        if mode in ("mixed", "oracle"):
            predicted = self.switch(masked, seg * self.hop, lengths, levels)
        if mode == "oracle":
            full = self.full_tail(masked)
            light = self.light_tail(masked)
            distance = self.segment_distance(light, full, frame_mask)
            route = self.decide(distance, mode, threshold)
            emb = self.stitch(light, full, route)
        else:
            if route is None:
                route = self.decide(
                    segment_mask if predicted is None else predicted, mode, threshold
                )
            emb = self.routed_forward(masked, route, lengths)
        return DSLOutput(emb, masked, predicted, distance, route, segment_mask, light)

    def stitch(self, light: torch.Tensor, full: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Frames of ``light`` where ``route`` is True and of ``full`` elsewhere.

        For outputs of both tails computed on every frame (``oracle`` routing and
        evaluations that compare several routes of the same audio).

        Arguments
        ---------
        light, full : torch.Tensor
            ``[batch, emb_dim, frames]`` outputs of the two tails.
        route : torch.Tensor
            Bool ``[batch, segments]``, True = light.
        """
        frames = full.shape[-1]
        per_frame = route.repeat_interleave(self.segment_length(frames), dim=1)
        return torch.where(per_frame[:, None, :frames], light, full)

    @property
    def contexts(self) -> Dict[str, int]:
        """Frames of left context each tail needs for exact outputs: ``{"light", "full"}``."""
        return {
            "light": context_frames(self.light_tail.lookback, self.hop),
            "full": context_frames(self.full_tail.lookback, self.hop),
        }

    def plan(
        self, route: torch.Tensor, frames: int, lengths: Optional[torch.Tensor] = None
    ) -> Dict[str, TailPlan]:
        """Each tail's work for ``route`` (see :func:`~speechbrain_dsl.nnet.routing.plan_routes`).

        Arguments
        ---------
        route : torch.Tensor
            Bool ``[batch, segments]``, True = light.
        frames : int
            Output frames per item.
        lengths : torch.Tensor, optional
            Relative lengths: padding beyond them is not computed.

        Returns
        -------
        dict
            ``{"light": TailPlan, "full": TailPlan}``.
        """
        batch = route.shape[0]
        rel = None if lengths is None else lengths.detach().float().cpu().numpy()
        return plan_routes(
            route.detach().cpu().numpy(),
            self.segment_length(frames),
            frames,
            self.contexts,
            valid_frame_counts(rel, batch, frames),
            max_row_frames=self.block_frames,
        )

    def routed_forward(
        self,
        x: torch.Tensor,
        route: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Runs each segment through exactly one tail and stitches the outputs.

        The routing planner packs each tail's runs of segments (with their left
        context) into rows, so a batch computes each tail's frames, their context
        and little more; padding beyond ``lengths`` is not computed (zeros).

        Arguments
        ---------
        x : torch.Tensor
            Masked base features ``[batch, channels, time]``.
        route : torch.Tensor
            Bool ``[batch, segments]``, True = light.
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1].

        Returns
        -------
        torch.Tensor
            ``[batch, emb_dim, time / hop]``.
        """
        frames = x.shape[-1] // self.hop
        plans = self.plan(route, frames, lengths)
        out = None
        for tail, name in ((self.light_tail, "light"), (self.full_tail, "full")):
            out = run_plan(tail, x, plans[name], out, self.block_frames)
        return out

    def run_rows(self, x: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
        """Runs each row of ``x`` through one tail, chosen per row by ``light``.

        Index-based (``nonzero``, ``index_select``, ``index_copy``), with no
        Python branch on the routes, so an exported graph keeps the routing and
        skips the other tail for every row.

        Arguments
        ---------
        x : torch.Tensor
            Masked base features ``[rows, channels, time]``.
        light : torch.Tensor
            Bool ``[rows]``: True = light tail.

        Returns
        -------
        torch.Tensor
            ``[rows, emb_dim, time / hop]``.
        """
        out = None
        for tail, rows in (
            (self.light_tail, light.nonzero().flatten()),
            (self.full_tail, (~light).nonzero().flatten()),
        ):
            y = tail(x.index_select(0, rows))
            if out is None:
                out = y.new_zeros(x.shape[0], y.shape[1], x.shape[-1] // self.hop)
            out = out.index_copy(0, rows, y)
        return out


def __getattr__(name: str) -> Any:
    # names that moved in the 0.2 layout keep importing from here for one release
    from speechbrain_dsl._moved import moved_attribute

    return moved_attribute(__name__, name)
