"""Routing of a codec's calls: per call, in a scope, or by the codec's defaults.

Routing is a value, never state that callers save and restore. Each encode call of
a :class:`~speechbrain_dsl.lobes.codec.DSLCodec` runs with its own ``mode`` and
``threshold`` when it names them, else with those of the innermost
:meth:`CodecRouting.routing` scope, else with the codec's defaults (the DSL's mode
and calibrated threshold); and it hands its :class:`Routing` back, to its caller
and to the open scope.

:class:`CodecRouting` is that part of ``DSLCodec``'s API. It reads the host's
``has_dsl`` and ``encoder.dsl`` (the Dynamic Switch Layer), and keeps the open
scopes in ``self._scopes`` (a list the host's ``__init__`` creates).
"""

import contextlib
from typing import Iterator, List, Optional, Tuple

import torch

from speechbrain_dsl.lobes.codec_outputs import Routing
from speechbrain_dsl.nnet.dsl_output import DSLOutput
from speechbrain_dsl.nnet.segments import length_mask

__all__ = ["CodecRouting"]


class CodecRouting:
    """Default routing, routing scopes and the :class:`Routing` of a call, for ``DSLCodec``."""

    @property
    def mode(self) -> str:
        """Default routing mode of the DSL (``full``, ``light``, ``mixed``, ``oracle``).

        The mode of calls that name none, outside :meth:`routing` scopes.
        """
        return self.encoder.dsl.mode if self.has_dsl else "full"

    @mode.setter
    def mode(self, value: str) -> None:
        if not self.has_dsl:
            if value != "full":
                raise ValueError(f"mode={value!r} needs a DSL encoder; this codec has none")
            return
        self.encoder.dsl.mode = value

    @property
    def threshold(self) -> Optional[float]:
        """Switch threshold on the predicted distance (the calibrated one, saved with the weights)."""
        return self.encoder.dsl.threshold if self.has_dsl else None

    @threshold.setter
    def threshold(self, value: float) -> None:
        if not self.has_dsl:
            raise ValueError("threshold needs a DSL encoder; this codec has none")
        self.encoder.dsl.threshold = float(value)

    def resolve_routing(
        self, mode: Optional[str] = None, threshold: Optional[float] = None
    ) -> Tuple[str, Optional[float]]:
        """The ``(mode, threshold)`` a call runs with: its own, else the innermost
        :meth:`routing` scope's, else the codec's defaults.

        Raises
        ------
        ValueError
            For an unknown mode, or a mode other than ``full`` or any threshold
            on a codec without a DSL.
        """
        for scope in reversed(self._scopes):
            mode = scope["mode"] if mode is None else mode
            threshold = scope["threshold"] if threshold is None else threshold
        if not self.has_dsl:
            if mode not in (None, "full") or threshold is not None:
                raise ValueError(
                    f"mode={mode!r}, threshold={threshold!r}: routing needs a DSL "
                    f"encoder; this codec has none"
                )
            return "full", None
        mode = self.encoder.dsl.check_mode(mode)
        return mode, self.threshold if threshold is None else float(threshold)

    @contextlib.contextmanager
    def routing(
        self, mode: Optional[str] = None, threshold: Optional[float] = None
    ) -> Iterator[List[Routing]]:
        """Routes every encode call inside the block with ``mode`` and ``threshold``.

        For callers that cannot pass them per call (a recipe calling
        ``sig_to_tokens``, a probe computing embeddings). Yields a list that
        receives the :class:`Routing` of each call made inside the block. The
        codec's defaults are untouched; scopes nest (the inner one wins). The
        tokenizer and the interface holding this codec open their scopes here,
        so one scope reaches every face of the model.

        Example
        -------
        >>> from speechbrain_dsl.lobes.codec import DSLCodec
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
        >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
        >>> codec = DSLCodec(
        ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
        ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
        ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
        ... )
        >>> with codec.routing(mode="full") as calls:
        ...     _ = codec.encode(torch.zeros(2, 800))
        >>> [(r.mode, r.route.shape) for r in calls]
        [('full', torch.Size([2, 1]))]
        """
        self.resolve_routing(mode, threshold)  # refuse bad values before the block runs
        scope = {"mode": mode, "threshold": threshold, "calls": []}
        self._scopes.append(scope)
        try:
            yield scope["calls"]
        finally:
            self._scopes.remove(scope)

    def record_routing(self, routing: Routing) -> Routing:
        """Hands ``routing`` to the innermost open :meth:`routing` scope; returns it."""
        if self._scopes:
            self._scopes[-1]["calls"].append(routing)
        return routing

    def routing_of(
        self,
        dsl: Optional[DSLOutput],
        mode: str,
        threshold: Optional[float],
        batch: int,
        frames: int,
        lengths: Optional[torch.Tensor] = None,
    ) -> Routing:
        """The :class:`Routing` of an encoder pass from its DSL output (None: no DSL)."""
        if dsl is None:
            valid = length_mask(lengths, frames, "cpu", batch).any(1, keepdim=True)
            return Routing("full", None, torch.zeros_like(valid), None, valid, frames)
        segment_frames = self.encoder.dsl.segment_length(frames)
        return Routing(mode, threshold, dsl.route, dsl.predicted, dsl.segment_mask, segment_frames)
