"""DSLCodec: SoundStream encoder (with or without a DSL) + RVQ + decoder.

It is also an audio tokenizer with the interface of SpeechBrain's Encodec
wrapper and of DASB's tokenizers, so recipes can swap it in through YAML:

- ``encode(inputs, length=None) -> (tokens [B, T, K] long, emb [B, T, K, D])``
- ``decode(tokens, length=None) -> [B, 1, S]``, ``embeddings(tokens)``
- ``sig_to_tokens``, ``tokens_to_sig``, ``get_pretrained_embeddings`` (DASB)
- ``sample_rate``, ``num_codebooks`` (settable: the first K codebooks are used),
  ``vocab_size``, ``vocabulary`` [K, C, D], ``bitrate`` (kbps), and the Encodec
  names ``num_heads``, ``num_tokens``, ``emb_dim``, ``bandwidth``

Inputs are ``[B, S]`` or ``[B, 1, S]`` floats in [-1, 1] at ``sample_rate`` (a
tensor or a numpy array); ``length`` holds relative lengths in (0, 1]. The
DAC-style call ``codec(wavs, n_quantizers=K)`` goes through
:class:`speechbrain_dsl.inference.interface.DACStyleCodec`.
"""

import contextlib
import math
import numbers
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
import torchaudio
from speechbrain.dataio.dataio import clean_padding_
from torch import nn

from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
from speechbrain_dsl.nnet.dsl import DSLOutput
from speechbrain_dsl.nnet.segments import length_mask

# Waveforms are expected in [-1, 1]. Filtering, resampling and mixing overshoot
# that a little, so peaks up to MAX_PEAK pass; larger ones (int16-scaled floats,
# 0..255 bytes) would be encoded into garbage and are refused.
MAX_PEAK = 2.0

# DASB's ``sig_to_tokens`` keywords for discrete SSL tokenizers. A codec's tokens
# are frame-aligned codebook indices: these are accepted only when they ask for
# nothing (None, False or lists of those); a truthy value is refused.
_SSL_ONLY_OPTIONS = ("deduplicates", "bpe_tokenizers")


@dataclass
class CodecOutput:
    """Everything a training step needs from one codec forward pass.

    Attributes
    ----------
    wav_hat : torch.Tensor
        Reconstruction ``[B, 1, S_padded]`` (``S`` padded to a multiple of the hop).
    emb : torch.Tensor
        Encoder output ``[B, T, D]`` (before quantization).
    quantized : torch.Tensor
        ``[B, T, D]``.
    tokens : torch.Tensor
        ``[B, T, K]``.
    commitment : torch.Tensor
        Scalar RVQ commitment loss.
    dsl : DSLOutput or None
        The DSL's outputs (None for a baseline encoder).
    """

    wav_hat: torch.Tensor
    emb: torch.Tensor
    quantized: torch.Tensor
    tokens: torch.Tensor
    commitment: torch.Tensor
    dsl: Optional[DSLOutput]


@dataclass
class Routing:
    """Which segments of one encode call took the light tail, and why.

    What an encode call hands back about its routing (:meth:`DSLCodec.encode_with_routing`,
    :meth:`DSLCodec.routing`); a codec without a DSL routes everything full.

    Attributes
    ----------
    mode : str
        The mode the call ran in (``full``, ``light``, ``mixed``, ``oracle``).
    threshold : float or None
        The threshold it used (None without a DSL).
    route : torch.Tensor
        Bool ``[batch, segments]``: True where the light tail ran.
    predicted : torch.Tensor or None
        The switch's predicted distance per segment (``mixed`` and ``oracle``).
    segment_mask : torch.Tensor
        Bool ``[batch, segments]``: False for segments that are all padding.
    segment_frames : int
        Encoder frames per segment.

    Example
    -------
    >>> r = Routing("mixed", 0.5, torch.tensor([[True, False], [True, True]]),
    ...             None, torch.tensor([[True, True], [True, False]]), 50)
    >>> round(r.light_share, 4), r.light_shares()
    (0.6667, [0.5, 1.0])
    """

    mode: str
    threshold: Optional[float]
    route: torch.Tensor
    predicted: Optional[torch.Tensor]
    segment_mask: torch.Tensor
    segment_frames: int

    @property
    def light_share(self) -> float:
        """Share of the valid segments that took the light tail (NaN for none)."""
        valid = self.route[self.segment_mask]
        return float(valid.float().mean()) if valid.numel() else math.nan

    def light_shares(self) -> List[float]:
        """Light share of each item's own (valid) segments."""
        return [
            float(r[m].float().mean()) if bool(m.any()) else math.nan
            for r, m in zip(self.route, self.segment_mask)
        ]


@dataclass
class Encoding:
    """What :meth:`DSLCodec.encode_with_routing` returns.

    Attributes
    ----------
    tokens : torch.Tensor
        ``[B, T, num_codebooks]`` long.
    emb : torch.Tensor or None
        Continuous encoder output ``[B, T, D]`` (before quantization).
    routing : Routing
    """

    tokens: torch.Tensor
    emb: Optional[torch.Tensor]
    routing: Routing


class DSLCodec(nn.Module):
    """A neural audio codec whose encoder may hold a Dynamic Switch Layer.

    Arguments
    ---------
    encoder : DSLEncoder or SoundStreamEncoder
    quantizer : ResidualVectorQuantizer
    decoder : SoundStreamDecoder
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
    >>> codec.num_codebooks = 1  # a tokenizer on the first codebook only
    >>> codec.encode(torch.randn(3, 800) * 0.1)[0].shape, codec.bitrate
    (torch.Size([3, 100, 1]), 8.0)
    """

    def __init__(self, encoder, quantizer, decoder, sample_rate=16000, input_scale=1.0):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.sample_rate = sample_rate
        self.input_scale = float(input_scale)
        self.hop_length = encoder.hop
        self.num_codebooks = None  # all of them
        self.vocab_size = quantizer.codebook_size
        self._scopes = []  # open routing() scopes, innermost last

    def to_network(self, wav):
        """The waveform as the networks see it (``input_scale`` times it)."""
        return wav * self.input_scale

    def from_network(self, audio):
        """The decoder's output back at the waveform's scale."""
        return audio / self.input_scale

    @property
    def decoder_dtype(self):
        """Floating-point type of the model's weights (inputs are cast to it)."""
        return next(self.decoder.parameters()).dtype

    @property
    def has_dsl(self):
        """True when the encoder routes through a Dynamic Switch Layer."""
        return isinstance(self.encoder, DSLEncoder)

    @property
    def num_codebooks(self) -> int:
        """Codebooks the tokenizer uses (the first K of the RVQ); all by default.

        Applies to ``encode``, ``sig_to_tokens``, ``vocabulary``,
        ``get_pretrained_embeddings`` and decoding; set None for all of them.
        """
        return self._num_codebooks

    @num_codebooks.setter
    def num_codebooks(self, value: Optional[int]):
        total = self.quantizer.num_quantizers
        if value is None:
            value = total
        if not _is_int(value) or not 1 <= value <= total:
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
    def bandwidth(self) -> float:
        """Encodec's name for :attr:`bitrate` (kbps)."""
        return self.bitrate

    @property
    def num_heads(self) -> int:
        """Encodec's name for :attr:`num_codebooks`."""
        return self.num_codebooks

    @property
    def num_tokens(self) -> int:
        """Encodec's name for :attr:`vocab_size`."""
        return self.vocab_size

    @property
    def emb_dim(self) -> int:
        """Size ``D`` of a codebook vector."""
        return self.quantizer.dim

    @property
    def vocabulary(self) -> torch.Tensor:
        """The codebooks in use, ``[num_codebooks, vocab_size, D]`` (a copy; the RVQ owns them)."""
        return self.quantizer.codebooks[: self.num_codebooks]

    @property
    def mode(self):
        """Default routing mode of the DSL (``full``, ``light``, ``mixed``, ``oracle``).

        The mode of calls that name none, outside :meth:`routing` scopes.
        """
        return self.encoder.dsl.mode if self.has_dsl else "full"

    @mode.setter
    def mode(self, value):
        if not self.has_dsl:
            if value != "full":
                raise ValueError(f"mode={value!r} needs a DSL encoder; this codec has none")
            return
        self.encoder.dsl.mode = value

    @property
    def threshold(self):
        """Switch threshold on the predicted distance (the calibrated one, saved with the weights)."""
        return self.encoder.dsl.threshold if self.has_dsl else None

    @threshold.setter
    def threshold(self, value):
        if not self.has_dsl:
            raise ValueError("threshold needs a DSL encoder; this codec has none")
        self.encoder.dsl.threshold = float(value)

    def resolve_routing(self, mode=None, threshold=None):
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
    def routing(self, mode: Optional[str] = None, threshold: Optional[float] = None):
        """Routes every encode call inside the block with ``mode`` and ``threshold``.

        For callers that cannot pass them per call (a recipe calling
        ``sig_to_tokens``, a probe computing embeddings). Yields a list that
        receives the :class:`Routing` of each call made inside the block. The
        codec's defaults are untouched; scopes nest (the inner one wins).

        Example
        -------
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
        >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
        >>> codec = DSLCodec(
        ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
        ...     ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
        ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
        ... )
        >>> with codec.routing(mode="full") as calls:
        ...     _ = codec.sig_to_tokens(torch.zeros(2, 800))
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

    def record_routing(self, routing: "Routing") -> "Routing":
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
        lengths=None,
    ) -> "Routing":
        """The :class:`Routing` of an encoder pass from its DSL output (None: no DSL)."""
        if dsl is None:
            valid = length_mask(lengths, frames, "cpu", batch).any(1, keepdim=True)
            return Routing("full", None, torch.zeros_like(valid), None, valid, frames)
        segment_frames = self.encoder.dsl.segment_length(frames)
        return Routing(mode, threshold, dsl.route, dsl.predicted, dsl.segment_mask, segment_frames)

    def check_input(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        sample_rate: Optional[int] = None,
        name: str = "inputs",
        check_range: bool = False,
        resample: bool = False,
    ) -> torch.Tensor:
        """Validates a waveform batch and returns it as ``[B, 1, S]`` at the codec's rate.

        Arguments
        ---------
        inputs : torch.Tensor or numpy.ndarray
            ``[B, S]`` or ``[B, 1, S]`` floating-point samples.
        sample_rate : int, optional
            Rate of ``inputs`` in Hz; None means the codec's own.
        name : str
            The argument's name in error messages.
        check_range : bool
            Refuse peaks above ``MAX_PEAK`` (a waveform belongs in [-1, 1]). The
            encode entry points check; the training pass does not.
        resample : bool
            Resample from ``sample_rate`` instead of refusing another rate.

        Returns
        -------
        torch.Tensor
            ``[B, 1, S']`` in the model's dtype.

        Raises
        ------
        ValueError
            For another sample rate (unless ``resample``), a non-float dtype, a
            wrong rank, an empty batch, NaN or inf, peaks out of range, or fewer
            samples than one hop.

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
        >>> codec.check_input(torch.full((1, 800), 30000.0), check_range=True)
        Traceback (most recent call last):
        ...
        ValueError: inputs: expected a waveform in [-1, 1], got a peak of 30000 (int16 PCM scale? divide by 32768)
        """
        rate = self.sample_rate if sample_rate is None else _check_rate(sample_rate)
        if rate != self.sample_rate and not resample:
            raise ValueError(
                f"{name}: declared sample rate {sample_rate} Hz, but this codec "
                f"expects {self.sample_rate} Hz; resample first (e.g. "
                f"torchaudio.functional.resample)"
            )
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        if not torch.is_tensor(inputs):
            raise ValueError(
                f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(inputs)}"
            )
        if not inputs.is_floating_point():
            raise ValueError(
                f"{name}: expected a floating-point waveform in [-1, 1], got {inputs.dtype} "
                f"(for int16 PCM, divide by 32768)"
            )
        if inputs.dim() == 2:
            inputs = inputs.unsqueeze(1)
        if inputs.dim() != 3 or inputs.shape[1] != 1:
            raise ValueError(
                f"{name}: expected shape [batch, samples] or [batch, 1, samples], got "
                f"{tuple(inputs.shape)}"
            )
        if inputs.shape[0] == 0:
            raise ValueError(f"{name}: the batch is empty (shape {tuple(inputs.shape)})")
        if not bool(torch.isfinite(inputs).all()):
            raise ValueError(f"{name}: contains NaN or inf values")
        if check_range and inputs.numel():
            peak = float(inputs.abs().max())
            if peak > MAX_PEAK:
                hint = " (int16 PCM scale? divide by 32768)" if peak > 256 else ""
                raise ValueError(
                    f"{name}: expected a waveform in [-1, 1], got a peak of {peak:g}{hint}"
                )
        inputs = inputs.to(self.decoder_dtype)
        if rate != self.sample_rate:
            inputs = torchaudio.functional.resample(inputs, rate, self.sample_rate)
        if inputs.shape[-1] < self.hop_length:
            raise ValueError(
                f"{name}: {inputs.shape[-1]} samples is shorter than one hop "
                f"({self.hop_length} samples = "
                f"{1000 * self.hop_length / self.sample_rate:.0f} ms)"
            )
        return inputs

    @staticmethod
    def check_length(length: Any, batch_size: int, name: str = "length") -> Optional[torch.Tensor]:
        """Relative lengths as a float tensor ``[batch_size]`` (None stays None).

        Raises
        ------
        ValueError
            Unless ``length`` holds ``batch_size`` values in (0, 1].

        Example
        -------
        >>> DSLCodec.check_length([1.0, 0.5], 2)
        tensor([1.0000, 0.5000])
        >>> DSLCodec.check_length(torch.tensor([1.0, 1.5]), 2, name="wav_lens")
        Traceback (most recent call last):
        ...
        ValueError: wav_lens: relative lengths must be in (0, 1], got values in [1, 1.5]
        """
        if length is None:
            return None
        if isinstance(length, (np.ndarray, list, tuple)):
            length = torch.as_tensor(np.asarray(length, dtype=np.float32))
        if not torch.is_tensor(length):
            raise ValueError(f"{name}: expected a tensor of relative lengths, got {type(length)}")
        if length.dim() != 1 or length.shape[0] != batch_size:
            raise ValueError(
                f"{name}: expected one relative length per item, shape [{batch_size}], got "
                f"shape {tuple(length.shape)}"
            )
        length = length.float()
        if not bool(((length > 0) & (length <= 1)).all()):
            raise ValueError(
                f"{name}: relative lengths must be in (0, 1], got values in "
                f"[{float(length.min()):g}, {float(length.max()):g}]"
            )
        return length

    def encode_features(self, wav, lengths=None, route=None, mode=None, threshold=None):
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

    def forward(self, wav, lengths=None, n_quantizers: Optional[int] = None):
        """Encodes, quantizes and decodes ``wav`` [B, S] or [B, 1, S] (the training pass).

        ``n_quantizers`` is refused with a pointer to the DAC-style wrapper: a
        recipe written for SpeechBrain's DAC calls ``codec(wavs, n_quantizers=K)``
        for tokens, which this pass does not return.

        Returns
        -------
        CodecOutput
        """
        if n_quantizers is not None:
            raise ValueError(
                "n_quantizers: DSLCodec.forward is the training pass; for DAC-style "
                "calls codec(wavs, n_quantizers=K) load the codec with "
                "speechbrain_dsl.inference.interface.DACStyleCodec (or call "
                "sig_to_tokens(wavs, num_codebooks=K))"
            )
        wav = self.check_input(wav)
        emb, dsl = self.encode_features(wav, lengths)
        emb = emb.transpose(1, 2)
        mask = length_mask(lengths, emb.shape[1], emb.device, emb.shape[0])
        quantized, tokens, commitment = self.quantizer(emb, mask)
        wav_hat = self.from_network(self.decoder(quantized.transpose(1, 2)))
        return CodecOutput(wav_hat, emb, quantized, tokens, commitment, dsl)

    @contextlib.contextmanager
    def _inference(self):
        """Eval mode for the duration of a tokenizer call, then the previous mode.

        In training mode the DSL runs both tails and the RVQ drops quantizers and
        updates its codebooks: a tokenizer must do none of that.
        """
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def embed(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> torch.Tensor:
        """Continuous encoder embeddings ``[B, T, D]`` (for probes), routed per ``mode``.

        ``inputs`` are checked by :meth:`check_input` (range included) and
        ``length`` by :meth:`check_length`; another ``sample_rate`` is refused.
        ``mode`` and ``threshold`` route this call (see :meth:`resolve_routing`).
        """
        return self.encode_with_routing(
            inputs, length, sample_rate, mode, threshold, tokens=False
        ).emb

    def encode(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ):
        """Tokens ``[B, T, num_codebooks]`` (long) and their codebook vectors ``[B, T, K, D]``.

        The signature of SpeechBrain's Encodec wrapper, ``encode(inputs, length)``;
        ``mode`` and ``threshold`` route this call (see :meth:`resolve_routing`).
        """
        tokens = self._tokens(inputs, length, sample_rate, mode, threshold)
        return tokens, self._vectors(tokens)

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

        Arguments as in :meth:`encode`; ``tokens=False`` skips the quantizer
        (``Encoding.tokens`` is None).

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

    def _tokens(
        self, inputs, length=None, sample_rate=None, mode=None, threshold=None
    ) -> torch.Tensor:
        """What :meth:`encode` computes for the tokens, in PyTorch (no codebook vectors)."""
        return self.encode_with_routing(inputs, length, sample_rate, mode, threshold).tokens

    def _encode_tokens(self, inputs, length=None, sample_rate=None) -> torch.Tensor:
        """The tokens of :meth:`encode` without looking their codebook vectors up.

        The tokens-only path of ``sig_to_tokens`` and ``DACStyleCodec``. A
        subclass that overrides :meth:`encode` (another engine) but not this
        method is encoded by its ``encode``, so both entry points give its tokens.
        """
        if type(self).encode is not DSLCodec.encode:
            return self.encode(inputs, length, sample_rate)[0]
        return self._tokens(inputs, length, sample_rate)

    def embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[B, T, K, D]`` of tokens ``[B, T, K]`` (Encodec's ``embeddings``)."""
        return self._vectors(self.check_tokens(tokens))

    def _vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """:meth:`embeddings` of tokens already checked (long, ``[B, T, K<=num_codebooks]``)."""
        # the RVQ fills codebooks past K with zero vectors: keep the K asked for
        return self.quantizer.codes(tokens)[:, :, : tokens.shape[-1]]

    def predict_distances(self, inputs, length=None):
        """The switch's predicted distance per segment ``[B, segments]``; runs no tail."""
        if not self.has_dsl:
            raise ValueError("predict_distances needs a DSL encoder; this codec has none")
        wav = self.to_network(self.check_input(inputs))
        with self._inference():
            return self.encoder.predict_distances(wav, length)

    def check_tokens(self, tokens: torch.Tensor, name: str = "tokens") -> torch.Tensor:
        """Validates tokens ``[B, T, K<=num_codebooks]`` and returns them as long."""
        if (
            not torch.is_tensor(tokens)
            or tokens.dim() != 3
            or not (1 <= tokens.shape[-1] <= self.num_codebooks)
        ):
            shape = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens)
            raise ValueError(
                f"{name}: expected [batch, frames, K] with 1 <= K <= num_codebooks="
                f"{self.num_codebooks}{self._codebooks_note()}, got {shape}"
            )
        if tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name}: expected an integer tensor, got {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"{name}: values must be in [0, vocab_size={self.vocab_size}), got "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        return tokens.long()

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

    # DASB tokenizer interface --------------------------------------------------
    @torch.no_grad()
    def sig_to_tokens(
        self,
        signal: Union[torch.Tensor, np.ndarray],
        lengths: Optional[torch.Tensor] = None,
        num_codebooks: Union[int, Sequence[int], None] = None,
        **kwargs,
    ) -> torch.Tensor:
        """Tokens ``[B, T, K]`` (long) of ``signal`` ``[B, S]``, in eval mode.

        Arguments
        ---------
        signal : torch.Tensor or numpy.ndarray
            ``[B, S]`` at ``sample_rate``, in [-1, 1].
        lengths : torch.Tensor, optional
            Relative lengths ``[B]`` in (0, 1].
        num_codebooks : int or list of int, optional
            The first ``num_codebooks`` codebooks, or these codebook indices; all
            (``self.num_codebooks``) by default. More than that is an error.
            Position ``k`` of the result holds the codebook at ``k`` of the list:
            a list is for embedding lookups and probing (with
            ``get_pretrained_embeddings(num_codebooks=same list)``). Decoding
            needs the first K codebooks: ``tokens_to_sig`` and ``decode`` read
            position ``k`` as codebook ``k``, so the tokens of ``[1]`` would be
            decoded as codebook 0's.
        **kwargs
            Other keywords of DASB's contract, ignored, except ``deduplicates``
            and ``bpe_tokenizers`` (discrete SSL options): accepted when they ask
            for nothing (None, False or lists of those), a ValueError otherwise.

        Returns
        -------
        torch.Tensor
        """
        _refuse_ssl_options(kwargs)
        index = self.select_codebooks(num_codebooks)
        return self._encode_tokens(signal, lengths)[..., index]

    @torch.no_grad()
    def tokens_to_sig(
        self, tokens: torch.Tensor, length: Optional[torch.Tensor] = None, **kwargs
    ) -> torch.Tensor:
        """Waveform ``[B, S]`` from tokens ``[B, T, K]``, in eval mode; ``length`` zeroes padding.

        Other keywords of DASB's contract are accepted and ignored.
        """
        return self.decode(tokens, length).squeeze(1)

    @torch.no_grad()
    def get_pretrained_embeddings(
        self,
        vocab_size: Optional[int] = None,
        num_codebooks: Union[int, Sequence[int], None] = None,
        device: Union[str, torch.device] = "cpu",
        **kwargs,
    ) -> torch.Tensor:
        """Codebook vectors as ``[K * vocab_size, D]``, codebook-major (row ``k * C + c``).

        That is the layout of DASB's embedding layers, which look token ``c`` of
        codebook ``k`` up at row ``k * C + c``.

        Arguments
        ---------
        vocab_size : int, optional
            Must equal ``self.vocab_size`` when given.
        num_codebooks : int or list of int, optional
            As in :meth:`sig_to_tokens`.
        device : str or torch.device
            Where the returned tensor lives.
        **kwargs
            Other keywords of DASB's contract, ignored.

        Returns
        -------
        torch.Tensor
        """
        if vocab_size is not None and vocab_size != self.vocab_size:
            raise ValueError(
                f"vocab_size: this codec has {self.vocab_size} entries per codebook, got "
                f"{vocab_size!r}"
            )
        index = self.select_codebooks(num_codebooks)
        with self._inference():
            vectors = self.vocabulary[index]
        return vectors.reshape(-1, vectors.shape[-1]).to(device)

    def select_codebooks(
        self,
        num_codebooks: Union[int, Sequence[int], None],
        name: str = "num_codebooks",
        lists: bool = True,
    ) -> List[int]:
        """Codebook indices meant by DASB's ``num_codebooks``: None, a count or a list.

        Only the ``self.num_codebooks`` codebooks in use can be asked for; more is
        a ValueError naming ``name``. With ``lists=False`` only None or a count
        (the first K codebooks) is accepted, as for DAC's ``n_quantizers``.

        Example
        -------
        >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
        >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
        >>> codec = DSLCodec(
        ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
        ...     ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16),
        ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
        ... )
        >>> codec.select_codebooks(None), codec.select_codebooks(2), codec.select_codebooks([2, 0])
        ([0, 1, 2], [0, 1], [2, 0])
        >>> codec.select_codebooks(4)
        Traceback (most recent call last):
        ...
        ValueError: num_codebooks: expected 1..3 codebooks, got 4
        >>> codec.select_codebooks([2], "n_quantizers", lists=False)
        Traceback (most recent call last):
        ...
        ValueError: n_quantizers: expected None or an int (the first K codebooks), got [2]
        """
        available = self.num_codebooks
        if num_codebooks is None:
            return list(range(available))
        if not lists and not _is_int(num_codebooks):
            raise ValueError(
                f"{name}: expected None or an int (the first K codebooks), got {num_codebooks!r}"
            )
        if _is_int(num_codebooks):
            if not 1 <= num_codebooks <= available:
                raise ValueError(
                    f"{name}: expected 1..{available} codebooks{self._codebooks_note()}, "
                    f"got {num_codebooks}"
                )
            return list(range(int(num_codebooks)))
        if (
            isinstance(num_codebooks, (list, tuple))
            and num_codebooks
            and all(_is_int(i) for i in num_codebooks)
        ):
            index = [int(i) for i in num_codebooks]
            if not all(0 <= i < available for i in index) or len(set(index)) != len(index):
                raise ValueError(
                    f"{name}: expected distinct codebook indices in [0, {available})"
                    f"{self._codebooks_note()}, got {list(num_codebooks)}"
                )
            return index
        raise ValueError(
            f"{name}: expected None, an int or a list of codebook indices, got {num_codebooks!r}"
        )

    def _codebooks_note(self) -> str:
        total = self.quantizer.num_quantizers
        if self.num_codebooks == total:
            return ""
        return f" (the tokenizer uses num_codebooks={self.num_codebooks} of this codec's {total})"

    def frames_for(self, num_samples):
        """Frames produced for ``num_samples`` input samples."""
        return math.ceil(num_samples / self.hop_length)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_rate(sample_rate) -> int:
    """A sample rate in Hz as an int, or a ValueError."""
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, numbers.Real)
        or (sample_rate <= 0 or not float(sample_rate).is_integer())
    ):
        raise ValueError(
            f"sample_rate: expected a positive whole number of Hz, got {sample_rate!r}"
        )
    return int(sample_rate)


def _refuse_ssl_options(kwargs):
    """Accepts DASB's discrete-SSL keywords only when they ask for nothing."""
    for key in _SSL_ONLY_OPTIONS:
        value = kwargs.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v for v in values):
            raise ValueError(
                f"{key}: codec tokens are frame-aligned codebook indices; {key} (an option "
                f"of DASB's discrete SSL tokenizers) is not supported, got {value!r}"
            )
