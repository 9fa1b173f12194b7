"""DSLCodec: SoundStream encoder (with or without a DSL) + RVQ + decoder: the model.

What training, the evaluations and the engines call, at the level of tensors:

- ``forward(wav, lengths)`` the training pass (a :class:`CodecOutput`);
- ``encode_features`` (encoder output and the DSL's output), ``predict_distances``
  (the switch alone);
- ``encode_with_routing`` (tokens, embeddings and the :class:`Routing` of the
  call, an :class:`Encoding`), ``encode`` (tokens ``[B, T, K]`` and their
  codebook vectors ``[B, T, K, D]``), ``embed`` (embeddings ``[B, T, D]``);
- ``decode`` (tokens to ``[B, 1, S]``), ``decode_latents`` (quantized latents to
  ``[B, 1, S]``), ``embeddings`` (codebook vectors of tokens).

Routing is an argument of each call (``mode``, ``threshold``) or a scope
(:meth:`DSLCodec.routing`), and comes back with the call
(:mod:`~speechbrain_dsl.lobes.codec_routing`). ``num_codebooks``
(the first K codebooks of the RVQ, settable) sets the bitrate of every call.
Inputs are ``[B, S]`` or ``[B, 1, S]`` floats in [-1, 1] at ``sample_rate`` (a
tensor or a numpy array), checked by :mod:`speechbrain_dsl.checks`; ``length``
holds relative lengths in (0, 1].

The face other recipes see (SpeechBrain's Encodec and DAC wrappers, DASB's
tokenizer contract, the onnxruntime engine) holds a DSLCodec:
:class:`speechbrain_dsl.inference.tokenizer.DSLTokenizer`.
"""

import contextlib
import math
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from speechbrain.dataio.dataio import clean_padding_
from torch import nn

from speechbrain_dsl import checks
from speechbrain_dsl.checks import MAX_PEAK
from speechbrain_dsl.lobes.codec_outputs import CodecOutput, Encoding, Routing
from speechbrain_dsl.lobes.codec_routing import CodecRouting
from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
from speechbrain_dsl.nnet.dsl_output import DSLOutput
from speechbrain_dsl.nnet.segments import length_mask

__all__ = ["MAX_PEAK", "CodecOutput", "DSLCodec", "Encoding", "Routing"]


class DSLCodec(CodecRouting, nn.Module):
    """A neural audio codec whose encoder may hold a Dynamic Switch Layer.

    Arguments
    ---------
    encoder : DSLEncoder or SoundStreamEncoder
    quantizer : ResidualVectorQuantizer
    decoder : SoundStreamDecoder or VocosDecoder
    sample_rate : int
    input_scale : float
        The networks work on ``input_scale * waveform`` (and the decoder's output
        is divided by it). At the natural level of 16 kHz speech the first layers
        see tiny activations and training stalls; a fixed gain of ~10 fixes that.

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(
    ...     SoundStreamEncoder(channels=2, multipliers=(2, 4), strides=(2, 4), emb_dim=8),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2, 4), strides=(2, 4)),
    ... )
    >>> out = codec(torch.randn(3, 800))
    >>> out.wav_hat.shape, out.tokens.shape
    (torch.Size([3, 1, 800]), torch.Size([3, 100, 2]))
    >>> tokens, emb = codec.eval().encode(torch.randn(3, 800) * 0.1)
    >>> tokens.shape, emb.shape
    (torch.Size([3, 100, 2]), torch.Size([3, 100, 2, 8]))
    >>> codec.decode(tokens).shape
    torch.Size([3, 1, 800])
    >>> codec.num_codebooks = 1  # the first codebook only
    >>> codec.encode(torch.randn(3, 800) * 0.1)[0].shape, codec.bitrate
    (torch.Size([3, 100, 1]), 8.0)
    """

    def __init__(
        self,
        encoder: nn.Module,
        quantizer: nn.Module,
        decoder: nn.Module,
        sample_rate: int = 16000,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.sample_rate = sample_rate
        self.input_scale = float(input_scale)
        self.hop_length = encoder.hop
        self.num_codebooks = None  # all of them
        self.vocab_size = quantizer.codebook_size
        self._scopes: List[Dict[str, Any]] = []  # CodecRouting's open scopes, innermost last

    # geometry and settings -----------------------------------------------------
    def to_network(self, wav: torch.Tensor) -> torch.Tensor:
        """The waveform as the networks see it (``input_scale`` times it)."""
        return wav * self.input_scale

    def from_network(self, audio: torch.Tensor) -> torch.Tensor:
        """The decoder's output back at the waveform's scale."""
        return audio / self.input_scale

    @property
    def decoder_dtype(self) -> torch.dtype:
        """Floating-point type of the model's weights (inputs are cast to it)."""
        return next(self.decoder.parameters()).dtype

    @property
    def has_dsl(self) -> bool:
        """True when the encoder routes through a Dynamic Switch Layer."""
        return isinstance(self.encoder, DSLEncoder)

    @property
    def num_codebooks(self) -> int:
        """Codebooks in use (the first K of the RVQ); all by default.

        Applies to the tokens of every encode call, ``vocabulary``,
        ``get_pretrained_embeddings`` and decoding; set None for all of them.
        """
        return self._num_codebooks

    @num_codebooks.setter
    def num_codebooks(self, value: Optional[int]) -> None:
        total = self.quantizer.num_quantizers
        if value is None:
            value = total
        if not checks.is_int(value) or not 1 <= value <= total:
            raise ValueError(
                f"num_codebooks: expected an int in 1..{total} (this codec has {total} "
                f"codebooks) or None for all, got {value!r}"
            )
        self._num_codebooks = int(value)

    @property
    def frame_rate(self) -> float:
        """Token frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bitrate of the tokens in kbps: frames/s x ``num_codebooks`` x log2(``vocab_size``)."""
        return self.frame_rate * self.num_codebooks * math.log2(self.vocab_size) / 1000

    @property
    def emb_dim(self) -> int:
        """Size ``D`` of a codebook vector."""
        return self.quantizer.dim

    @property
    def vocabulary(self) -> torch.Tensor:
        """The codebooks in use, ``[num_codebooks, vocab_size, D]`` (the RVQ owns them)."""
        return self.quantizer.codebooks[: self.num_codebooks]

    def frames_for(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` input samples."""
        return math.ceil(num_samples / self.hop_length)

    # input checks (speechbrain_dsl.checks with this codec's rate, hop and codebooks) --
    def check_input(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        sample_rate: Optional[int] = None,
        name: str = "inputs",
        check_range: bool = False,
        resample: bool = False,
    ) -> torch.Tensor:
        """A waveform batch as ``[B, 1, S]`` at the codec's rate, in the model's dtype.

        See :func:`speechbrain_dsl.checks.check_waveform` (``sample_rate`` None
        means the codec's own; another one is refused unless ``resample``).

        Example
        -------
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
        >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
        >>> codec = DSLCodec(
        ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
        ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
        ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
        ... )
        >>> codec.check_input(np.zeros((2, 800)), sample_rate=8000, resample=True).shape
        torch.Size([2, 1, 1600])
        """
        return checks.check_waveform(
            inputs,
            self.sample_rate,
            self.hop_length,
            self.decoder_dtype,
            sample_rate,
            name,
            check_range,
            resample,
        )

    check_length = staticmethod(checks.check_length)

    def check_tokens(self, tokens: torch.Tensor, name: str = "tokens") -> torch.Tensor:
        """Validates tokens ``[B, T, K<=num_codebooks]`` and returns them as long."""
        total = self.quantizer.num_quantizers
        return checks.check_tokens(tokens, self.num_codebooks, total, self.vocab_size, name)

    def select_codebooks(
        self,
        num_codebooks: Union[int, Sequence[int], None],
        name: str = "num_codebooks",
        lists: bool = True,
    ) -> List[int]:
        """Codebook indices meant by DASB's ``num_codebooks`` (None, a count or a list)
        among the ``num_codebooks`` in use; see :func:`speechbrain_dsl.checks.select_codebooks`."""
        total = self.quantizer.num_quantizers
        return checks.select_codebooks(num_codebooks, self.num_codebooks, total, name, lists)

    # the networks --------------------------------------------------------------
    def encode_features(
        self,
        wav: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        route: Optional[torch.Tensor] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> Tuple[torch.Tensor, Optional[DSLOutput]]:
        """Encoder output ``[B, D, T]`` and the DSL output (None for a baseline).

        ``mode`` and ``threshold`` as in :meth:`resolve_routing`; ``route``
        (bool ``[B, segments]``) forces the routes.
        """
        wav = self.to_network(wav)
        if self.has_dsl:
            mode, threshold = self.resolve_routing(mode, threshold)
            out = self.encoder(wav, lengths, route, mode, threshold)
            return out.features, out
        self.resolve_routing(mode, threshold)
        return self.encoder(wav), None

    def forward(
        self,
        wav: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        n_quantizers: Optional[int] = None,
    ) -> CodecOutput:
        """Encodes, quantizes and decodes ``wav`` [B, S] or [B, 1, S] (the training pass).

        ``n_quantizers`` is refused with a pointer to the DAC-style wrapper: a
        recipe written for SpeechBrain's DAC calls ``codec(wavs, n_quantizers=K)``
        for tokens, which this pass does not return.
        """
        if n_quantizers is not None:
            raise ValueError(
                "n_quantizers: DSLCodec.forward is the training pass; for DAC-style "
                "calls codec(wavs, n_quantizers=K) load the codec with "
                "speechbrain_dsl.inference.interface.DACStyleCodec (or call "
                "sig_to_tokens(wavs, num_codebooks=K) on load_tokenizer's tokenizer)"
            )
        wav = self.check_input(wav)
        emb, dsl = self.encode_features(wav, lengths)
        emb = emb.transpose(1, 2)
        mask = length_mask(lengths, emb.shape[1], emb.device, emb.shape[0])
        quantized, tokens, commitment = self.quantizer(emb, mask)
        wav_hat = self.from_network(self.decoder(quantized.transpose(1, 2)))
        return CodecOutput(wav_hat, emb, quantized, tokens, commitment, dsl)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode for the duration of an encode or decode call, then the previous mode.

        In training mode the DSL runs both tails and the RVQ drops quantizers and
        updates its codebooks: encoding for tokens must do none of that.
        """
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def predict_distances(
        self, inputs: Union[torch.Tensor, np.ndarray], length: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The switch's predicted distance per segment ``[B, segments]``; runs no tail."""
        if not self.has_dsl:
            raise ValueError("predict_distances needs a DSL encoder; this codec has none")
        wav = self.to_network(self.check_input(inputs))
        with self._inference():
            return self.encoder.predict_distances(wav, length)

    # encoding --------------------------------------------------------------------
    def encode_with_routing(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
        tokens: bool = True,
    ) -> Encoding:
        """Tokens, continuous embeddings and the :class:`Routing` of this call.

        Arguments
        ---------
        inputs : torch.Tensor or numpy.ndarray
            ``[B, S]`` or ``[B, 1, S]`` in [-1, 1] (checked by :meth:`check_input`).
        length : torch.Tensor, optional
            Relative lengths ``[B]`` in (0, 1] (checked by :meth:`check_length`).
        sample_rate : int, optional
            Must be the codec's own when given (no resampling here).
        mode, threshold : optional
            Routing of this call (see :meth:`resolve_routing`).
        tokens : bool
            False skips the quantizer (``Encoding.tokens`` is None).

        Returns
        -------
        Encoding
            Tokens ``[B, T, num_codebooks]``, embeddings ``[B, T, D]``, the routing.

        Example
        -------
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
        >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
        >>> codec = DSLCodec(
        ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
        ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
        ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
        ... )
        >>> out = codec.encode_with_routing(torch.zeros(2, 800))
        >>> out.tokens.shape, out.emb.shape, out.routing.mode, out.routing.light_share
        (torch.Size([2, 100, 2]), torch.Size([2, 100, 8]), 'full', 0.0)
        """
        wav = self.check_input(inputs, sample_rate, check_range=True)
        length = self.check_length(length, wav.shape[0])
        if length is not None:
            length = length.to(wav.device)
        mode, threshold = self.resolve_routing(mode, threshold)
        with self._inference():
            emb, dsl = self.encode_features(wav, length, mode=mode, threshold=threshold)
        routing = self.routing_of(dsl, mode, threshold, emb.shape[0], emb.shape[-1], length)
        emb = emb.transpose(1, 2)
        if length is not None:
            clean_padding_(emb, length)
        codes = None
        if tokens:
            with self._inference():
                _, codes, _ = self.quantizer(emb)
            codes = codes[..., : self.num_codebooks]
        return Encoding(codes, emb, self.record_routing(routing))

    def encode(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``[B, T, num_codebooks]`` (long) and their codebook vectors ``[B, T, K, D]``.

        Arguments as in :meth:`encode_with_routing`.
        """
        tokens = self.encode_with_routing(inputs, length, sample_rate, mode, threshold).tokens
        return tokens, self._vectors(tokens)

    def embed(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> torch.Tensor:
        """Continuous encoder embeddings ``[B, T, D]`` (for probes), routed per ``mode``.

        Arguments as in :meth:`encode_with_routing`; the quantizer does not run.
        """
        return self.encode_with_routing(
            inputs, length, sample_rate, mode, threshold, tokens=False
        ).emb

    # codebooks and decoding ------------------------------------------------------
    def embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[B, T, K, D]`` of tokens ``[B, T, K]`` (Encodec's ``embeddings``)."""
        return self._vectors(self.check_tokens(tokens))

    def _vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """:meth:`embeddings` of tokens already checked (long, ``[B, T, K<=num_codebooks]``)."""
        # the RVQ fills codebooks past K with zero vectors: keep the K asked for
        return self.quantizer.codes(tokens)[:, :, : tokens.shape[-1]]

    @torch.no_grad()
    def get_pretrained_embeddings(
        self,
        vocab_size: Optional[int] = None,
        num_codebooks: Union[int, Sequence[int], None] = None,
        device: Union[str, torch.device] = "cpu",
        **kwargs: Any,
    ) -> torch.Tensor:
        """Codebook vectors as ``[K * vocab_size, D]``, codebook-major (row ``k * C + c``).

        DASB's ``get_pretrained_embeddings``, the one implementation (the
        tokenizer's calls this): DASB's embedding layers look token ``c`` of
        codebook ``k`` up at row ``k * C + c``.

        Arguments
        ---------
        vocab_size : int, optional
            Must equal ``self.vocab_size`` when given.
        num_codebooks : int or list of int, optional
            The first K codebooks in use, or these codebook indices (see
            :meth:`select_codebooks`); all in use by default.
        device : str or torch.device
            Where the returned tensor lives.
        **kwargs
            Other keywords of DASB's contract, ignored.
        """
        if vocab_size is not None and vocab_size != self.vocab_size:
            raise ValueError(
                f"vocab_size: this codec has {self.vocab_size} entries per codebook, got "
                f"{vocab_size!r}"
            )
        vectors = self.vocabulary[self.select_codebooks(num_codebooks)]
        return vectors.reshape(-1, vectors.shape[-1]).to(device)

    def decode(self, tokens: torch.Tensor, length: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Waveform ``[B, 1, T * hop]`` from tokens ``[B, T, K]`` (the first K codebooks)."""
        tokens = self.check_tokens(tokens)
        with self._inference():
            latents = self.quantizer.decode(tokens).transpose(1, 2)
        return self.decode_latents(latents, length)

    def decode_latents(
        self, latents: torch.Tensor, length: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Waveform ``[B, 1, T * hop]`` from quantized latents ``[B, D, T]``.

        The latents are the summed codebook vectors (what the RVQ outputs);
        ``length`` (relative) zeroes the padding of shorter items.
        """
        length = self.check_length(length, latents.shape[0])
        with self._inference():
            audio = self.decoder(latents.to(self.decoder_dtype))
        audio = self.from_network(audio)
        if length is not None:
            clean_padding_(audio, length.to(audio.device), len_dim=-1)
        return audio
