"""A DSL codec called the way recipes call SpeechBrain's DAC.

:class:`DACStyleTokenizer` is a tokenizer face (:class:`~speechbrain_dsl.inference.tokenizer.TokenizerBase`:
the model, an engine, DASB's calls) with DAC's: ``forward(audio_data,
sample_rate=None, n_quantizers=None) -> (codes [B, N, T], z [B, D, T])``,
``encode``, ``decode(z)``, ``quantizer.from_codes(codes)`` and the names
``n_codebooks``, ``codebook_size``, ``codebook_dim``, ``latent_dim``,
``hop_length``. Recipes load it from a packaged folder with
:class:`speechbrain_dsl.inference.interface.DACStyleCodec`.
"""

from typing import Optional, Tuple, Union

import numpy as np
import torch

from speechbrain_dsl.inference.runtime import OnnxCodec
from speechbrain_dsl.inference.tokenizer import TokenizerBase
from speechbrain_dsl.lobes.codec import DSLCodec

__all__ = ["DACQuantizerView", "DACStyleTokenizer"]


class DACQuantizerView:
    """DAC's ``quantizer.from_codes`` on a codec's RVQ.

    Arguments
    ---------
    codec : DSLCodec
    """

    def __init__(self, codec: DSLCodec):
        self._codec = codec

    @torch.no_grad()
    def from_codes(self, codes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes ``[B, N, T]`` -> (``z_q`` ``[B, D, T]``, ``z_p`` ``[B, N * D, T]``, ``codes``).

        ``z_q`` is the quantized latent the decoder takes; ``z_p`` the codebook
        vectors of each codebook stacked along the channels.
        """
        tokens = codes.transpose(1, 2)
        vectors = self._codec.embeddings(tokens)  # [B, T, N, D]
        z_q = vectors.sum(2).transpose(1, 2)
        z_p = vectors.flatten(2).transpose(1, 2)
        return z_q, z_p, codes


class DACStyleTokenizer(TokenizerBase):
    """A DSL codec with the call pattern of SpeechBrain's ``DAC``.

    Arguments
    ---------
    codec : DSLCodec
    runtime : OnnxCodec, optional
    engine : str, optional
        As in :class:`~speechbrain_dsl.inference.tokenizer.TokenizerBase`.

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(
    ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
    ... ).eval()
    >>> dac = DACStyleTokenizer(codec)
    >>> codes, z = dac(torch.randn(2, 1, 800) * 0.1, n_quantizers=2)
    >>> codes.shape, z.shape
    (torch.Size([2, 2, 100]), torch.Size([2, 8, 100]))
    >>> z_q, _, _ = dac.quantizer.from_codes(codes)
    >>> dac.decode(z_q).shape
    torch.Size([2, 1, 800])
    """

    def __init__(
        self,
        codec: DSLCodec,
        runtime: Optional[OnnxCodec] = None,
        engine: Optional[str] = None,
    ):
        super().__init__(codec, runtime, engine)
        self.quantizer = DACQuantizerView(codec)

    @property
    def n_codebooks(self) -> int:
        """Codebooks available (DAC's name for ``num_codebooks``)."""
        return self.num_codebooks

    @property
    def codebook_size(self) -> int:
        """DAC's name for ``vocab_size``."""
        return self.vocab_size

    @property
    def codebook_dim(self) -> int:
        """DAC's name for ``emb_dim``."""
        return self.emb_dim

    @property
    def latent_dim(self) -> int:
        """Size of the latent ``z`` (``emb_dim``)."""
        return self.emb_dim

    @torch.no_grad()
    def forward(
        self,
        audio_data: Union[torch.Tensor, np.ndarray],
        sample_rate: Optional[int] = None,
        n_quantizers: Optional[int] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Codes ``[B, n_quantizers, T]`` and the quantized latent ``z`` ``[B, D, T]``.

        ``audio_data`` is ``[B, 1, S]`` (or ``[B, S]``) in [-1, 1]; another
        ``sample_rate`` is resampled; ``n_quantizers`` (an int) defaults to all.
        """
        z, codes, _, _, _ = self.encode(audio_data, n_quantizers, sample_rate)
        return codes, z

    @torch.no_grad()
    def encode(
        self,
        audio_data: Union[torch.Tensor, np.ndarray],
        n_quantizers: Optional[int] = None,
        sample_rate: Optional[int] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """DAC's ``encode``: ``(z, codes, latents, commitment_loss, codebook_loss)``.

        ``latents`` are the per-codebook vectors ``[B, N * D, T]``; the two losses
        are zero (the codec is frozen). ``n_quantizers`` is an int (the first
        ``n_quantizers`` codebooks, as DAC's) or None: ``quantizer.from_codes``
        reads position k as codebook k, so a list of codebooks is a ValueError.
        """
        index = self.codec.select_codebooks(n_quantizers, "n_quantizers", lists=False)
        wav = self.codec.check_input(
            audio_data, sample_rate, "audio_data", check_range=True, resample=True
        )
        codes = self.encode_with_routing(wav).tokens[..., index].transpose(1, 2)
        z, latents, _ = self.quantizer.from_codes(codes)
        zero = torch.zeros((), device=z.device)
        return z, codes, latents, zero, zero

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, T * hop]`` from the quantized latent ``z`` ``[B, D, T]`` (PyTorch)."""
        return self.codec.decode_latents(z)
