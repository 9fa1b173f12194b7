"""Residual vector quantizer: a thin layer over vector-quantize-pytorch's ResidualVQ.

We use ``vector_quantize_pytorch.ResidualVQ`` rather than our own: it already has
EMA codebook updates, k-means initialisation, dead-code replacement and quantizer
dropout, is widely used (EnCodec/SoundStream reimplementations, AudioLM) and is
maintained. This wrapper fixes the layouts and names the conversions the codec
needs: embeddings -> tokens -> embeddings.

Layout: ``[batch, frames, dim]`` for embeddings, ``[batch, frames, K]`` for tokens.
"""

from typing import Any, Callable, Optional, Tuple

import torch
from loguru import logger
from torch import nn
from vector_quantize_pytorch import ResidualVQ

__all__ = ["ResidualVectorQuantizer"]

# vector-quantize-pytorch warns at every k-means init from a batch with fewer
# vectors than codes (the normal case for a 1024-entry codebook); silence it.
logger.disable("vector_quantize_pytorch")


class ResidualVectorQuantizer(nn.Module):
    """K residual codebooks of ``codebook_size`` entries each.

    Arguments
    ---------
    dim : int
        Embedding size.
    num_quantizers : int
        K, the number of codebooks.
    codebook_size : int
    decay : float
        EMA decay of the codebook updates.
    kmeans_init : bool
        Initialise codebooks with k-means on the first training batch.
    kmeans_iters : int
    threshold_ema_dead_code : float
        Absolute dead-code threshold (EMA count per step) when ``dead_code_usage``
        is None. vector-quantize-pytorch's default of 2 is meant for batches with
        many more vectors than codes: with 800 frames for 1024 codes a used code
        averages 0.78 and nearly every code is re-sampled every step.
    dead_code_usage : float or None
        Relative rule (the default in our recipes): a code is dead when its EMA
        usage falls under ``dead_code_usage`` x the usage of a uniformly used
        codebook (``frames in the batch / codebook_size``), and a replaced code
        restarts at uniform usage. At 0.1 and decay 0.99 a code must go unused for
        ~230 steps before it is replaced.
    quantize_dropout : bool
        Train with a random number of quantizers (bitrate scalability).
    commitment_weight : float

    Example
    -------
    >>> import torch
    >>> rvq = ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16)
    >>> quantized, tokens, commit = rvq(torch.randn(2, 5, 8))
    >>> quantized.shape, tokens.shape, tokens.dtype
    (torch.Size([2, 5, 8]), torch.Size([2, 5, 3]), torch.int64)
    >>> rvq.codes(tokens).shape
    torch.Size([2, 5, 3, 8])
    """

    def __init__(
        self,
        dim: int = 64,
        num_quantizers: int = 8,
        codebook_size: int = 1024,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 2,
        quantize_dropout: bool = True,
        commitment_weight: float = 1.0,
        dead_code_usage: Optional[float] = None,
    ) -> None:
        super().__init__()
        if dead_code_usage is not None and not 0 < dead_code_usage < 1:
            raise ValueError(f"dead_code_usage must be in (0, 1), got {dead_code_usage}")
        self.dead_code_usage = dead_code_usage
        self.replaced_codes = 0  # codes re-sampled by the last training forward
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.dim = dim
        self.rvq = ResidualVQ(
            dim=dim,
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            decay=decay,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
            quantize_dropout=quantize_dropout,
            commitment_weight=commitment_weight,
        )
        self._codebooks = [layer._codebook for layer in self.rvq.layers]
        for codebook in self._codebooks:
            codebook.replace = self._counting(codebook.replace)

    def _counting(self, replace: Callable[..., Any]) -> Callable[..., Any]:
        # vector-quantize-pytorch reports no replacements: count them on the way in.
        def counted(
            batch_samples: torch.Tensor,
            batch_mask: torch.Tensor,
            seq_mask: Optional[torch.Tensor] = None,
        ) -> Any:
            self.replaced_codes += int(batch_mask.sum())
            return replace(batch_samples, batch_mask, seq_mask)

        return counted

    def forward(
        self, x: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantizes ``x`` [batch, frames, dim].

        Arguments
        ---------
        x : torch.Tensor
        mask : torch.Tensor, optional
            Bool ``[batch, frames]``, False on padding (kept out of EMA updates).

        Returns
        -------
        quantized : torch.Tensor
            ``[batch, frames, dim]`` with a straight-through gradient.
        tokens : torch.Tensor
            ``[batch, frames, K]`` long.
        commitment : torch.Tensor
            Scalar commitment loss summed over quantizers.
        """
        if self.training:
            self.replaced_codes = 0
            if self.dead_code_usage is not None:
                frames = x.shape[0] * x.shape[1] if mask is None else int(mask.sum())
                uniform = frames / self.codebook_size
                for codebook in self._codebooks:
                    codebook.threshold_ema_dead_code = self.dead_code_usage * uniform
                    codebook.reset_cluster_size = uniform
        quantized, tokens, losses = self.rvq(x, mask=mask)
        return quantized, tokens, losses.sum()

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[batch, frames, K]`` -> summed embeddings ``[batch, frames, dim]``."""
        return self.rvq.get_output_from_indices(tokens)

    def codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[batch, frames, K]`` -> per-codebook vectors ``[batch, frames, K, dim]``."""
        return self.rvq.get_codes_from_indices(tokens).permute(1, 2, 0, 3)

    @property
    def codebooks(self) -> torch.Tensor:
        """The codebooks, ``[K, codebook_size, dim]`` (stacked: a copy)."""
        return self.rvq.codebooks
