"""Downstream heads on codec outputs.

:class:`ConvProbe` is the paper's Fig. 5a probe on continuous (frozen) encoder
embeddings: a small stack of 1-D convolutions over time, masked pooling and a
linear layer. Its ``front`` (first conv block) and ``back`` (the rest) let the
Gated Compression variant put a gate between them (:class:`GatedNetwork`).

:class:`TokenClassifier` is the DASB-style discrete-token probe: one embedding
table per codebook, embeddings summed over codebooks, masked mean pooling over
time, a linear classifier. It only needs a tokenizer's ``num_codebooks`` and
``vocab_size`` (and optionally ``get_pretrained_embeddings`` to start from the
codebook vectors), so any tokenizer with SpeechBrain's interface plugs in.
"""

from typing import Any, Optional, Sequence

import torch
from torch import nn

from speechbrain_dsl.nnet.segments import length_mask

__all__ = ["ConvProbe", "ProbeFront", "ProbeBack", "TokenClassifier", "pretrained_embeddings"]


class ConvProbe(nn.Module):
    """Embeddings ``[B, T, D]`` -> class log-probabilities ``[B, n_classes]``.

    Arguments
    ---------
    in_channels : int
        Embedding size ``D``.
    n_classes : int
    channels : sequence of int
        Output channels of each conv block (conv, batch norm, ReLU).
    kernel_size : int
    dropout : float
        Before the linear layer.

    Example
    -------
    >>> probe = ConvProbe(in_channels=8, n_classes=4, channels=(16, 16))
    >>> probe(torch.randn(3, 20, 8), torch.tensor([1.0, 0.5, 0.25])).shape
    torch.Size([3, 4])
    >>> hidden = probe.front(torch.randn(3, 20, 8))   # [B, C, T]: where a gate can sit
    >>> probe.back(hidden).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        channels: Sequence[int] = (64, 64),
        kernel_size: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("ConvProbe needs at least one conv block (channels is empty)")
        self.front = ProbeFront(in_channels, channels[0], kernel_size)
        self.back = ProbeBack(channels, n_classes, kernel_size, dropout)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-probabilities ``[B, n_classes]``; padded frames are left out of the pooling."""
        return self.back(self.front(x), lengths)


def _conv_block(cin: int, cout: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2), nn.BatchNorm1d(cout), nn.ReLU()
    )


class ProbeFront(nn.Module):
    """First block of :class:`ConvProbe`: ``[B, T, D]`` -> ``[B, C, T]``."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.block = _conv_block(in_channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Time-major embeddings in, channel-major features out."""
        return self.block(x.transpose(1, 2))


class ProbeBack(nn.Module):
    """The rest of :class:`ConvProbe`: conv blocks, masked mean+max pooling, linear."""

    def __init__(
        self, channels: Sequence[int], n_classes: int, kernel_size: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(_conv_block(cin, cout, kernel_size) for cin, cout in zip(channels, channels[1:]))
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * channels[-1], n_classes), nn.LogSoftmax(dim=-1)
        )

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, C, T]`` -> log-probabilities; padded frames are left out of the pooling."""
        h = self.blocks(x)
        mask = length_mask(lengths, h.shape[-1], h.device, h.shape[0]).unsqueeze(1)
        mean = (h * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        peak = h.masked_fill(mask == 0, float("-inf")).amax(-1)
        return self.classifier(torch.cat([mean, peak], dim=1))


class TokenClassifier(nn.Module):
    """Tokens ``[B, T, K]`` -> class log-probabilities ``[B, n_classes]``.

    Arguments
    ---------
    num_codebooks : int
    vocab_size : int
    n_classes : int
    emb_dim : int
    hidden : int
    pretrained : torch.Tensor, optional
        ``[K * vocab_size, emb_dim]`` initial embeddings (DASB's
        ``get_pretrained_embeddings``).

    Example
    -------
    >>> probe = TokenClassifier(num_codebooks=2, vocab_size=16, n_classes=5, emb_dim=8)
    >>> probe(torch.randint(0, 16, (3, 10, 2)), torch.tensor([1.0, 0.5, 0.3])).shape
    torch.Size([3, 5])
    """

    def __init__(
        self,
        num_codebooks: int,
        vocab_size: int,
        n_classes: int,
        emb_dim: int = 64,
        hidden: int = 128,
        pretrained: Optional[torch.Tensor] = None,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_codebooks * vocab_size, emb_dim)
        if pretrained is not None:
            if pretrained.shape != self.embedding.weight.shape:
                raise ValueError(
                    f"pretrained embeddings {tuple(pretrained.shape)} do not match "
                    f"{tuple(self.embedding.weight.shape)} (K * vocab_size, emb_dim)"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained)
        self.register_buffer("offsets", torch.arange(num_codebooks) * vocab_size, persistent=False)
        self.classifier = nn.Sequential(
            nn.Linear(emb_dim, hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, n_classes),
            nn.LogSoftmax(dim=-1),
        )

    def forward(self, tokens: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-probabilities ``[B, n_classes]``; padded frames are left out of the mean."""
        emb = self.embedding(tokens + self.offsets).sum(2)  # [B, T, E]
        mask = length_mask(lengths, emb.shape[1], emb.device, emb.shape[0]).unsqueeze(-1)
        pooled = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.classifier(pooled)


def pretrained_embeddings(tokenizer: Any, emb_dim: int) -> Optional[torch.Tensor]:
    """The tokenizer's codebook vectors as initial embeddings, if sizes match, else None."""
    getter = getattr(tokenizer, "get_pretrained_embeddings", None)
    if getter is None:
        return None
    vectors = getter(tokenizer.vocab_size, tokenizer.num_codebooks).detach().clone()
    return vectors if vectors.shape[-1] == emb_dim else None
