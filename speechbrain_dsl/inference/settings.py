"""The model's settings, read and set through a wrapper that holds it (``.codec``).

The tokenizer faces and the ``Pretrained`` interface all hold one
:class:`~speechbrain_dsl.lobes.codec.DSLCodec`; its settings (codebooks in use,
routing mode and threshold) are the model's own, so setting them on any face sets
them for all. This mixin is the one place they are forwarded.

Example
-------
>>> from hyperpyyaml import load_hyperpyyaml
>>> class Holder(ModelSettings):
...     def __init__(self, codec):
...         self.codec = codec
>>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"]
>>> holder = Holder(codec)
>>> holder.num_codebooks = 2
>>> codec.num_codebooks, holder.bitrate
(2, 1.0)
"""

from typing import ContextManager, List, Optional, Union

import numpy as np
import torch

from speechbrain_dsl.lobes.codec import Routing

__all__ = ["ModelSettings"]


class ModelSettings:
    """Forwards the model's settings to ``self.codec`` (a :class:`DSLCodec`)."""

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio in Hz."""
        return self.codec.sample_rate

    @property
    def hop_length(self) -> int:
        """Samples per token frame."""
        return self.codec.hop_length

    @property
    def frame_rate(self) -> float:
        """Token frames per second."""
        return self.codec.frame_rate

    @property
    def has_dsl(self) -> bool:
        """True when the model's encoder routes through a Dynamic Switch Layer."""
        return self.codec.has_dsl

    @property
    def num_codebooks(self) -> int:
        """Codebooks in use (the first K of the model's); set None for all.

        Sets the tokens' K, ``vocabulary``, ``get_pretrained_embeddings``, what
        decoding accepts and the bitrate; more than the model has is a ValueError.
        """
        return self.codec.num_codebooks

    @num_codebooks.setter
    def num_codebooks(self, value: Optional[int]) -> None:
        self.codec.num_codebooks = value

    @property
    def vocab_size(self) -> int:
        """Entries per codebook."""
        return self.codec.vocab_size

    @property
    def emb_dim(self) -> int:
        """Size ``D`` of a codebook vector."""
        return self.codec.emb_dim

    @property
    def vocabulary(self) -> torch.Tensor:
        """The codebooks in use, ``[num_codebooks, vocab_size, D]``."""
        return self.codec.vocabulary

    @property
    def bitrate(self) -> float:
        """Bitrate of the tokens in kbps: frames/s x ``num_codebooks`` x log2(``vocab_size``)."""
        return self.codec.bitrate

    # routing ---------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """Default routing mode (``full``, ``light``, ``mixed``, ``oracle``), the model's."""
        return self.codec.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.codec.mode = value

    @property
    def threshold(self) -> Optional[float]:
        """Default switch threshold (the calibrated one unless set), the model's."""
        return self.codec.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.codec.threshold = value

    def routing(
        self, mode: Optional[str] = None, threshold: Optional[float] = None
    ) -> ContextManager[List[Routing]]:
        """Routes every call inside a ``with`` block; yields the list of their
        :class:`~speechbrain_dsl.lobes.codec.Routing` (see ``DSLCodec.routing``)."""
        return self.codec.routing(mode, threshold)

    def predict_distances(
        self, inputs: Union[torch.Tensor, np.ndarray], length: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The switch's predicted distance per segment ``[B, segments]`` (PyTorch)."""
        return self.codec.predict_distances(inputs, length)
