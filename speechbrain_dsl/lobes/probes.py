"""Downstream heads on codec outputs.

:class:`TokenClassifier` is the DASB-style discrete-token probe: one embedding
table per codebook, embeddings summed over codebooks, masked mean pooling over
time, a linear classifier. It only needs a tokenizer's ``num_codebooks`` and
``vocab_size`` (and optionally ``get_pretrained_embeddings`` to start from the
codebook vectors), so any tokenizer with SpeechBrain's interface plugs in.
"""

import torch
from torch import nn

from speechbrain_dsl.nnet.dsl import length_mask


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

    def __init__(self, num_codebooks, vocab_size, n_classes, emb_dim=64, hidden=128,
                 pretrained=None):
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
            nn.Linear(emb_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, n_classes),
            nn.LogSoftmax(dim=-1),
        )

    def forward(self, tokens, lengths=None):
        """Log-probabilities ``[B, n_classes]``; padded frames are left out of the mean."""
        emb = self.embedding(tokens + self.offsets).sum(2)  # [B, T, E]
        mask = length_mask(lengths, emb.shape[1], emb.device, emb.shape[0]).unsqueeze(-1)
        pooled = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.classifier(pooled)


def pretrained_embeddings(tokenizer, emb_dim):
    """The tokenizer's codebook vectors as initial embeddings, if sizes match, else None."""
    getter = getattr(tokenizer, "get_pretrained_embeddings", None)
    if getter is None:
        return None
    vectors = getter(tokenizer.vocab_size, tokenizer.num_codebooks).detach().clone()
    return vectors if vectors.shape[-1] == emb_dim else None
