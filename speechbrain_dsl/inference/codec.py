"""SpeechBrain interfaces for trained DSL codecs, loaded offline.

A packaged model is a local folder (see :mod:`speechbrain_dsl.inference.package`)
holding ``hyperparams.yaml`` (the model definition, ``modules`` and a
``pretrainer``) and ``codec.ckpt`` (weights and the calibrated switch threshold).
Nothing is downloaded; weights are read with ``torch.load``'s default
``weights_only=True``.

- :class:`DSLCodecInterface`: a ``Pretrained`` interface (``encode_batch``,
  ``decode_batch``, ``encode_file``).
- :func:`load_tokenizer`: the frozen codec itself, for recipes written for
  SpeechBrain's Encodec wrapper or for DASB's tokenizers.
- :class:`DACStyleCodec`: the call pattern of SpeechBrain's DAC
  (``codec(wavs, n_quantizers=K)``, ``quantizer.from_codes``, ``decode(z)``).

Example
-------
>>> from speechbrain_dsl.inference.codec import DSLCodecInterface
>>> codec = DSLCodecInterface.from_hparams(source="pretrained/dsl-codec-16k",
...                                        num_codebooks=2)           # doctest: +SKIP
>>> codec.bitrate                                                      # doctest: +SKIP
1.0
>>> tokens = codec.encode_file("speech.wav")                           # doctest: +SKIP
"""

import pickle
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch
from speechbrain.inference.interfaces import Pretrained
from torch import nn

from speechbrain_dsl.lobes.codec import DSLCodec

REQUIRED_FILES = ("hyperparams.yaml", "codec.ckpt")


class DSLCodecInterface(Pretrained):
    """Encode to tokens and decode back with a trained (DSL) codec.

    Set ``mode`` (``full``, ``light``, ``mixed``), ``threshold`` and
    ``num_codebooks`` as needed; :attr:`bitrate` gives the resulting kbps and
    :meth:`routing_stats` describes the routing of the last encode call.
    """

    MODULES_NEEDED = ["codec"]

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file: str = "hyperparams.yaml",
        num_codebooks: Optional[int] = None,
        **kwargs,
    ):
        """Loads a packaged model; for a local folder, checks its files first.

        Arguments
        ---------
        source : str or Path
            The packaged folder.
        hparams_file : str
        num_codebooks : int, optional
            Use the first ``num_codebooks`` codebooks (all by default); more than
            the codec has is a ValueError.
        **kwargs
            Passed to ``Pretrained.from_hparams`` (``savedir``, ``run_opts``...).
        """
        folder = Path(source)
        if folder.is_dir():
            for name in REQUIRED_FILES if hparams_file == "hyperparams.yaml" else (hparams_file,):
                if not (folder / name).is_file():
                    raise ValueError(f"packaged codec folder {folder} is missing {name}")
        try:
            if folder.is_dir():  # checksums, keys, shapes, finite values: ValueErrors naming files
                from speechbrain_dsl.inference.package import load_packaged

                interface = load_packaged(cls, folder, hparams_file, **kwargs)
            else:
                interface = super().from_hparams(source=str(source), hparams_file=hparams_file,
                                                 **kwargs)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"cannot load {folder / 'codec.ckpt'}: {err}") from None
        interface.num_codebooks = num_codebooks
        return interface

    @property
    def codec(self):
        """The underlying :class:`~speechbrain_dsl.lobes.codec.DSLCodec`."""
        return self.mods.codec

    @property
    def mode(self):
        """Routing mode of the encoder."""
        return self.codec.mode

    @mode.setter
    def mode(self, value):
        self.codec.mode = value

    @property
    def threshold(self):
        """Switch threshold (calibrated at training time unless set)."""
        return self.codec.threshold

    @threshold.setter
    def threshold(self, value):
        self.codec.threshold = value

    @property
    def num_codebooks(self) -> int:
        """Codebooks in use (the first K of the codec's); set None for all."""
        return self.codec.num_codebooks

    @num_codebooks.setter
    def num_codebooks(self, value: Optional[int]):
        self.codec.num_codebooks = value

    @property
    def bitrate(self) -> float:
        """Bitrate of the tokens in kbps (frames/s x codebooks x bits per token)."""
        return self.codec.bitrate

    @property
    def sample_rate(self) -> int:
        """The codec's sample rate in Hz."""
        return self.codec.sample_rate

    @torch.no_grad()
    def encode_batch(
        self,
        wavs: Union[torch.Tensor, np.ndarray],
        wav_lens: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
    ) -> torch.Tensor:
        """Tokens ``[B, T, num_codebooks]`` of ``wavs`` ``[B, S]``.

        Arguments
        ---------
        wavs : torch.Tensor or numpy.ndarray
            Floats in [-1, 1] (int16-scaled or other out-of-range values are
            refused).
        wav_lens : torch.Tensor, optional
            Relative lengths ``[B]`` in (0, 1].
        sample_rate : int, optional
            Rate of ``wavs`` in Hz, resampled to the codec's; the codec's own
            rate (:attr:`sample_rate`) when None.
        """
        wavs = self.codec.check_input(wavs, sample_rate, "wavs", check_range=True, resample=True)
        wav_lens = self.codec.check_length(wav_lens, wavs.shape[0], "wav_lens")
        wav_lens = None if wav_lens is None else wav_lens.to(self.device)
        tokens, _ = self.codec.encode(wavs.to(self.device), wav_lens)
        return tokens

    @torch.no_grad()
    def decode_batch(
        self, tokens: torch.Tensor, wav_lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Waveforms ``[B, S]`` from tokens ``[B, T, K]``; ``wav_lens`` zeroes padding."""
        wav_lens = None if wav_lens is None else torch.as_tensor(wav_lens).to(self.device)
        return self.codec.decode(tokens.to(self.device), wav_lens).squeeze(1)

    def encode_file(self, path) -> torch.Tensor:
        """Tokens ``[1, T, K]`` of an audio file (any rate: resampled, mixed to mono)."""
        try:
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except RuntimeError as err:
            raise ValueError(f"cannot read audio file {path}: {err}") from None
        return self.encode_batch(torch.from_numpy(audio).mean(1)[None], sample_rate=sr)

    def routing_stats(self):
        """Light share, per-segment routes and predictions of the last encode call."""
        out = self.codec.last_routing
        if out is None:
            return None
        valid = out.segment_mask
        return {
            "mode": self.mode,
            "threshold": self.threshold,
            "light_share": float(out.route[valid].float().mean()),
            "route": out.route.cpu(),
            "predicted": None if out.predicted is None else out.predicted.cpu(),
        }


def load_tokenizer(
    source,
    mode: str = "mixed",
    num_codebooks: Optional[int] = None,
    savedir: Optional[str] = None,
) -> DSLCodec:
    """A packaged codec as a frozen tokenizer (a ``DSLCodec`` in eval mode), for YAML.

    It has the interface of SpeechBrain's Encodec wrapper (``encode``,
    ``decode``, ``embeddings``, ``sample_rate``, ``vocabulary``, ``num_heads``,
    ``num_tokens``, ``emb_dim``, ``bandwidth``), DASB's tokenizer contract
    (``sig_to_tokens``, ``tokens_to_sig``, ``get_pretrained_embeddings``) and
    ``num_codebooks``, ``vocab_size``, ``bitrate`` (kbps).

    Arguments
    ---------
    source : str or Path
        A packaged folder (e.g. ``pretrained/dsl-codec-16k``).
    mode : str
        ``full``, ``light`` or ``mixed`` (a codec without DSL takes ``full`` only).
    num_codebooks : int, optional
        Use the first ``num_codebooks`` codebooks (all by default): it sets the
        tokens' K, ``vocabulary``, ``get_pretrained_embeddings`` and the bitrate
        (50 frames/s x K x 10 bits for the shipped models: K=2 is 1 kbps, K=8 is
        4 kbps). More than the codec has is a ValueError.
    savedir : str, optional
        Where SpeechBrain links the files (the folder itself by default).

    Returns
    -------
    DSLCodec
    """
    interface = DSLCodecInterface.from_hparams(source=str(source), savedir=savedir or str(source),
                                               num_codebooks=num_codebooks)
    codec = interface.codec.eval()
    if not codec.has_dsl and mode != "full":
        raise ValueError(f"{source} holds a codec without DSL: set the tokenizer mode to "
                         f"'full' (got {mode!r})")
    codec.mode = mode
    for parameter in codec.parameters():
        parameter.requires_grad_(False)
    return codec


class _DACQuantizerView:
    """``DACStyleCodec.quantizer``: DAC's ``from_codes`` on the codec's RVQ."""

    def __init__(self, codec: DSLCodec):
        self._codec = codec

    @torch.no_grad()
    def from_codes(self, codes: torch.Tensor):
        """Codes ``[B, N, T]`` -> (``z_q`` ``[B, D, T]``, ``z_p`` ``[B, N * D, T]``, ``codes``).

        ``z_q`` is the quantized latent the decoder takes; ``z_p`` the codebook
        vectors of each codebook stacked along the channels.
        """
        tokens = codes.transpose(1, 2)
        vectors = self._codec.embeddings(tokens)  # [B, T, N, D]
        z_q = vectors.sum(2).transpose(1, 2)
        z_p = vectors.flatten(2).transpose(1, 2)
        return z_q, z_p, codes


class DACStyleCodec(nn.Module):
    """A frozen DSL codec called the way recipes call SpeechBrain's ``DAC``.

    ``forward(audio_data, sample_rate=None, n_quantizers=None)`` returns
    ``(codes [B, N, T], z [B, D, T])``; ``quantizer.from_codes(codes)`` and
    ``decode(z)`` go back to audio; ``sample_rate``, ``n_codebooks``,
    ``codebook_size``, ``codebook_dim``, ``latent_dim`` and ``hop_length`` are
    there too, and DASB's ``sig_to_tokens``, ``tokens_to_sig``,
    ``get_pretrained_embeddings``. A DAC-based recipe swaps its ``codec:`` entry::

        codec: !new:speechbrain_dsl.inference.codec.DACStyleCodec
            source: pretrained/dsl-codec-16k
            mode: mixed

    Arguments
    ---------
    source : str or Path, optional
        A packaged folder (loaded with :func:`load_tokenizer`).
    mode : str
        Routing mode, as in :func:`load_tokenizer`.
    num_codebooks : int, optional
        Codebooks available to ``n_quantizers`` (all by default).
    savedir : str, optional
    codec : DSLCodec, optional
        An already loaded codec instead of ``source`` (used as is).

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(
    ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
    ... ).eval()
    >>> dac = DACStyleCodec(codec=codec)
    >>> codes, z = dac(torch.randn(2, 1, 800) * 0.1, n_quantizers=2)
    >>> codes.shape, z.shape
    (torch.Size([2, 2, 100]), torch.Size([2, 8, 100]))
    >>> z_q, _, _ = dac.quantizer.from_codes(codes)
    >>> dac.decode(z_q).shape
    torch.Size([2, 1, 800])
    """

    def __init__(
        self,
        source=None,
        mode: str = "mixed",
        num_codebooks: Optional[int] = None,
        savedir: Optional[str] = None,
        codec: Optional[DSLCodec] = None,
    ):
        super().__init__()
        if (source is None) == (codec is None):
            raise ValueError("DACStyleCodec: give either source (a packaged folder) or codec")
        if codec is None:
            codec = load_tokenizer(source, mode, num_codebooks, savedir)
        elif not isinstance(codec, DSLCodec):
            raise ValueError(f"codec: expected a DSLCodec, got {type(codec)}")
        self.codec = codec
        self.quantizer = _DACQuantizerView(codec)
        self.sample_rate = codec.sample_rate
        self.hop_length = codec.hop_length
        self.codebook_size = codec.vocab_size
        self.codebook_dim = self.latent_dim = codec.emb_dim

    @property
    def n_codebooks(self) -> int:
        """Codebooks available (DAC's name for ``num_codebooks``)."""
        return self.codec.num_codebooks

    @torch.no_grad()
    def forward(
        self,
        audio_data: torch.Tensor,
        sample_rate: Optional[int] = None,
        n_quantizers: Optional[int] = None,
    ):
        """Codes ``[B, n_quantizers, T]`` and the quantized latent ``z`` ``[B, D, T]``.

        ``audio_data`` is ``[B, 1, S]`` (or ``[B, S]``) in [-1, 1]; another
        ``sample_rate`` is resampled; ``n_quantizers`` defaults to all.
        """
        z, codes, _, _, _ = self.encode(audio_data, n_quantizers, sample_rate)
        return codes, z

    @torch.no_grad()
    def encode(
        self,
        audio_data: torch.Tensor,
        n_quantizers: Optional[int] = None,
        sample_rate: Optional[int] = None,
    ):
        """DAC's ``encode``: ``(z, codes, latents, commitment_loss, codebook_loss)``.

        ``latents`` are the per-codebook vectors ``[B, N * D, T]``; the two losses
        are zero (the codec is frozen).
        """
        index = self.codec.select_codebooks(n_quantizers, "n_quantizers")
        wav = self.codec.check_input(audio_data, sample_rate, "audio_data", check_range=True,
                                     resample=True)
        tokens, _ = self.codec.encode(wav)
        codes = tokens[..., index].transpose(1, 2)
        z, latents, _ = self.quantizer.from_codes(codes)
        zero = torch.zeros((), device=z.device)
        return z, codes, latents, zero, zero

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, T * hop]`` from the quantized latent ``z`` ``[B, D, T]``."""
        return self.codec.decode_latents(z)

    def sig_to_tokens(self, signal, lengths=None, num_codebooks=None, **kwargs) -> torch.Tensor:
        """DASB's ``sig_to_tokens`` (see :meth:`DSLCodec.sig_to_tokens`)."""
        return self.codec.sig_to_tokens(signal, lengths, num_codebooks, **kwargs)

    def tokens_to_sig(self, tokens, length=None, **kwargs) -> torch.Tensor:
        """DASB's ``tokens_to_sig`` (see :meth:`DSLCodec.tokens_to_sig`)."""
        return self.codec.tokens_to_sig(tokens, length, **kwargs)

    def get_pretrained_embeddings(
        self,
        vocab_size: Optional[int] = None,
        num_codebooks: Union[int, Sequence[int], None] = None,
        device="cpu",
        **kwargs,
    ) -> torch.Tensor:
        """DASB's ``get_pretrained_embeddings`` (see :meth:`DSLCodec.get_pretrained_embeddings`)."""
        return self.codec.get_pretrained_embeddings(vocab_size, num_codebooks, device, **kwargs)
