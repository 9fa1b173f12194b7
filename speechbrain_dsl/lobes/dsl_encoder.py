"""A SoundStream encoder with a Dynamic Switch Layer after one of its blocks.

``wav -> base (first blocks, always runs) -> DSL (mask, switch, full or light tail)``

The full tail *is* the rest of the given :class:`SoundStreamEncoder` (shared
parameters), so in ``full`` mode this encoder computes exactly what the baseline
encoder computes.
"""

from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
from speechbrain_dsl.nnet.dsl import DynamicSwitchLayer, Switch
from speechbrain_dsl.nnet.dsl_output import DSLOutput
from speechbrain_dsl.nnet.plan_runner import exporting
from speechbrain_dsl.nnet.segments import segment_levels

__all__ = ["DSLEncoder", "baseline_to_dsl_state"]


class DSLEncoder(nn.Module):
    """``base -> DynamicSwitchLayer(full tail, light tail)``.

    Arguments
    ---------
    encoder : SoundStreamEncoder
        The full encoder; it is split after block ``split_after``.
    light_tail : nn.Module
        Causal lightweight tail taking the base's output channels (for example a
        narrow :class:`SoundStreamEncoder` with ``in_channels`` set accordingly).
    switch : Switch
    mask : Mask or None
    split_after : int
        1-based index of the block the DSL follows.
    segment_frames, mode, threshold, distance
        See :class:`~speechbrain_dsl.nnet.dsl.DynamicSwitchLayer`.

    Example
    -------
    >>> import torch
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
    >>> from speechbrain_dsl.nnet.dsl import Switch, Mask
    >>> full = SoundStreamEncoder(channels=4, multipliers=(2, 4), strides=(2, 4), emb_dim=8)
    >>> light = SoundStreamEncoder(8, channels=2, multipliers=(1,), strides=(4,), emb_dim=8)
    >>> enc = DSLEncoder(full, light, Switch(8), Mask(8), split_after=1, segment_frames=10)
    >>> enc.eval()(torch.randn(2, 1, 800)).features.shape
    torch.Size([2, 8, 100])
    """

    def __init__(
        self,
        encoder: SoundStreamEncoder,
        light_tail: nn.Module,
        switch: Switch,
        mask: Optional[nn.Module] = None,
        split_after: int = 1,
        segment_frames: Optional[int] = 50,
        mode: str = "mixed",
        threshold: float = 0.5,
        distance: str = "mae",
    ) -> None:
        super().__init__()
        self.base, full_tail = encoder.split(split_after)
        base_channels = encoder.output_channels(split_after)
        light_in = _input_channels(light_tail)
        if light_in is not None and light_in != base_channels:
            raise ValueError(
                f"DSLEncoder: light_tail takes {light_in} input channels but the base "
                f"(split after block {split_after}) outputs {base_channels}"
            )
        self.dsl = DynamicSwitchLayer(
            full_tail, light_tail, switch, mask, segment_frames, mode, threshold, distance
        )
        self.hop = encoder.hop
        self.emb_dim = encoder.emb_dim
        self.split_after = split_after

    def forward(
        self,
        wav: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        route: Optional[torch.Tensor] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> DSLOutput:
        """Encodes ``wav`` [batch, 1, samples]; returns a :class:`DSLOutput`.

        The waveform is zero-padded on the right to a multiple of the hop, so
        ``out.features`` is ``[batch, emb_dim, ceil(samples / hop)]``. ``route``,
        ``mode`` and ``threshold`` as in
        :meth:`~speechbrain_dsl.nnet.dsl.DynamicSwitchLayer.forward`.
        """
        wav = F.pad(wav, (0, -wav.shape[-1] % self.hop))
        batch, block = wav.shape[0], self.dsl.block_frames
        per_call = max(1, block // max(1, wav.shape[-1] // self.hop)) if block else batch
        if not self.training and per_call < batch and not exporting():
            # a few items at a time: base, mask and switch run in cache too (see run_plan)
            return DSLOutput.cat(
                [
                    self.forward(
                        wav[i : i + per_call],
                        None if lengths is None else lengths[i : i + per_call],
                        None if route is None else route[i : i + per_call],
                        mode,
                        threshold,
                    )
                    for i in range(0, batch, per_call)
                ]
            )
        # the switch runs when training, routing or forced to a route (see the layer)
        switching = (
            self.training or route is not None or self.dsl.check_mode(mode) in ("mixed", "oracle")
        )
        levels = self.levels(wav, lengths) if switching else None
        return self.dsl(self.base(wav), lengths, route, mode, threshold, levels)

    def predict_distances(
        self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Switch predictions ``[batch, segments]`` from base, mask and switch only."""
        wav = F.pad(wav, (0, -wav.shape[-1] % self.hop))
        return self.dsl.predict_distances(self.base(wav), lengths, self.levels(wav, lengths))

    def levels(
        self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> Optional[torch.Tensor]:
        """Relative segment levels of ``wav`` (hop-padded) when the switch reads them."""
        if not getattr(self.dsl.switch, "level_input", False):
            return None
        frames = wav.shape[-1] // self.hop
        segment = self.dsl.segment_length(frames) * self.hop
        return segment_levels(wav, segment, lengths)


def _input_channels(module: nn.Module) -> Optional[int]:
    """Input channels of the first conv in ``module``, or None if there is none."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            return m.in_channels
    return None


def baseline_to_dsl_state(
    state: Mapping[str, Any], split_after: int, prefix: str = "encoder."
) -> Dict[str, Any]:
    """Renames a baseline codec's encoder weights to those of a :class:`DSLEncoder`.

    A baseline encoder stores stage ``i`` as ``stages.i``; a DSL encoder split
    after block ``split_after`` stores the same tensors as ``base.i`` (stages up to
    the split) and ``dsl.full_tail.j`` (the rest). Other keys pass unchanged. With
    the mask at its identity init, the DSL codec's full pass then computes exactly
    what the baseline computed: the starting point of the retrofit recipe.

    Arguments
    ---------
    state : dict
        A baseline codec's state dict.
    split_after : int
    prefix : str
        Where the encoder's keys start.

    Example
    -------
    >>> import torch
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
    >>> from speechbrain_dsl.nnet.dsl import Switch, Mask
    >>> baseline = SoundStreamEncoder(channels=2, multipliers=(2, 4), strides=(2, 4), emb_dim=8)
    >>> full = SoundStreamEncoder(channels=2, multipliers=(2, 4), strides=(2, 4), emb_dim=8)
    >>> light = SoundStreamEncoder(2, channels=2, multipliers=(1,), strides=(8,), emb_dim=8)
    >>> enc = DSLEncoder(full, light, Switch(2), Mask(2), split_after=0, segment_frames=10)
    >>> state = baseline_to_dsl_state(baseline.state_dict(), split_after=0, prefix="")
    >>> missing, unexpected = enc.load_state_dict(state, strict=False)
    >>> unexpected
    []
    >>> x = torch.randn(1, 1, 800)
    >>> torch.equal(enc.eval()(x, mode="full").features, baseline(x))
    True
    """
    cut = 1 + split_after
    renamed = {}
    for key, value in state.items():
        if key.startswith(prefix + "stages."):
            index, rest = key[len(prefix + "stages.") :].split(".", 1)
            index = int(index)
            key = (
                f"{prefix}base.{index}.{rest}"
                if index < cut
                else f"{prefix}dsl.full_tail.{index - cut}.{rest}"
            )
        renamed[key] = value
    return renamed
