"""DSLCodec: SoundStream encoder (with or without a DSL) + RVQ + decoder.

It is also an audio tokenizer with the interface of SpeechBrain's Encodec/DAC
wrappers and DASB recipes, so recipes can swap it in through YAML:

- ``encode(inputs, length=None) -> (tokens [B, T, K] long, emb [B, T, K, D])``
- ``decode(tokens, length=None) -> [B, 1, S]``
- ``sig_to_tokens``, ``tokens_to_sig``, ``get_pretrained_embeddings`` (DASB)
- ``sample_rate``, ``num_codebooks``, ``vocab_size``, ``vocabulary`` [K, C, D]

Inputs are ``[B, S]`` or ``[B, 1, S]`` at ``sample_rate``; ``length`` is relative.
"""

import contextlib
import math
from dataclasses import dataclass
from typing import Optional

import torch
from speechbrain.dataio.dataio import clean_padding_
from torch import nn

from speechbrain_dsl.lobes.dsl_encoder import DSLEncoder
from speechbrain_dsl.nnet.dsl import DSLOutput, length_mask


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
    >>> tokens, emb = codec.eval().encode(torch.randn(3, 800))
    >>> tokens.shape, emb.shape
    (torch.Size([3, 100, 2]), torch.Size([3, 100, 2, 8]))
    >>> codec.decode(tokens).shape
    torch.Size([3, 1, 800])
    """

    def __init__(self, encoder, quantizer, decoder, sample_rate=16000, input_scale=1.0):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.sample_rate = sample_rate
        self.input_scale = float(input_scale)
        self.hop_length = encoder.hop
        self.num_codebooks = quantizer.num_quantizers
        self.vocab_size = quantizer.codebook_size
        self.last_routing = None

    @property
    def decoder_dtype(self):
        """Floating-point type of the model's weights (inputs are cast to it)."""
        return next(self.decoder.parameters()).dtype

    @property
    def has_dsl(self):
        """True when the encoder routes through a Dynamic Switch Layer."""
        return isinstance(self.encoder, DSLEncoder)

    @property
    def vocabulary(self):
        """The codebooks ``[K, vocab_size, D]`` (a copy; the RVQ owns them)."""
        return self.quantizer.codebooks

    @property
    def mode(self):
        """Routing mode of the DSL (``full``, ``light``, ``mixed``, ``oracle``)."""
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
        """Switch threshold on the predicted distance."""
        return self.encoder.dsl.threshold if self.has_dsl else None

    @threshold.setter
    def threshold(self, value):
        if not self.has_dsl:
            raise ValueError("threshold needs a DSL encoder; this codec has none")
        self.encoder.dsl.threshold = float(value)

    def check_input(self, inputs, sample_rate=None, name="inputs"):
        """Validates a waveform batch and returns it as ``[B, 1, S]``.

        Raises ValueError for a wrong rank, non-finite values, fewer samples than
        one hop, or a declared sample rate other than the codec's.
        """
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(
                f"{name}: declared sample rate {sample_rate} Hz, but this codec "
                f"expects {self.sample_rate} Hz; resample first (e.g. "
                f"torchaudio.functional.resample)"
            )
        if not torch.is_tensor(inputs):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(inputs)}")
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
        if inputs.shape[-1] < self.hop_length:
            raise ValueError(
                f"{name}: {inputs.shape[-1]} samples is shorter than one hop "
                f"({self.hop_length} samples = "
                f"{1000 * self.hop_length / self.sample_rate:.0f} ms)"
            )
        if not bool(torch.isfinite(inputs).all()):
            raise ValueError(f"{name}: contains NaN or inf values")
        return inputs.to(self.decoder_dtype)

    def encode_features(self, wav, lengths=None, route=None):
        """Encoder output ``[B, D, T]`` and the DSL output (None for a baseline)."""
        wav = wav * self.input_scale
        if self.has_dsl:
            out = self.encoder(wav, lengths, route)
            self.last_routing = out
            return out.emb, out
        return self.encoder(wav), None

    def forward(self, wav, lengths=None):
        """Encodes, quantizes and decodes ``wav`` [B, S] or [B, 1, S].

        Returns
        -------
        CodecOutput
        """
        wav = self.check_input(wav)
        emb, dsl = self.encode_features(wav, lengths)
        emb = emb.transpose(1, 2)
        mask = length_mask(lengths, emb.shape[1], emb.device, emb.shape[0])
        quantized, tokens, commitment = self.quantizer(emb, mask)
        wav_hat = self.decoder(quantized.transpose(1, 2)) / self.input_scale
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

    def embed(self, inputs, length=None, sample_rate=None):
        """Continuous encoder embeddings ``[B, T, D]`` (for probes), routed per ``mode``."""
        wav = self.check_input(inputs, sample_rate)
        with self._inference():
            emb, _ = self.encode_features(wav, length)
        emb = emb.transpose(1, 2)
        if length is not None:
            clean_padding_(emb, length)
        return emb

    def encode(self, inputs, length=None, sample_rate=None):
        """Tokens ``[B, T, K]`` and their codebook vectors ``[B, T, K, D]``."""
        emb = self.embed(inputs, length, sample_rate)
        with self._inference():
            _, tokens, _ = self.quantizer(emb)
        return tokens, self.quantizer.codes(tokens)

    def predict_distances(self, inputs, length=None):
        """The switch's predicted distance per segment ``[B, segments]``; runs no tail."""
        if not self.has_dsl:
            raise ValueError("predict_distances needs a DSL encoder; this codec has none")
        wav = self.check_input(inputs) * self.input_scale
        with self._inference():
            return self.encoder.predict_distances(wav, length)

    def decode(self, tokens, length=None):
        """Waveform ``[B, 1, T * hop]`` from tokens ``[B, T, K]``."""
        if tokens.dim() != 3 or tokens.shape[-1] > self.num_codebooks:
            raise ValueError(
                f"tokens: expected [batch, frames, K<={self.num_codebooks}], got "
                f"{tuple(tokens.shape)}"
            )
        if tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"tokens: expected an integer tensor, got {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"tokens: values must be in [0, vocab_size={self.vocab_size}), got "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        with self._inference():
            audio = self.decoder(self.quantizer.decode(tokens.long()).transpose(1, 2))
        audio = audio / self.input_scale
        if length is not None:
            clean_padding_(audio, length, len_dim=-1)
        return audio

    # DASB tokenizer interface --------------------------------------------------
    def sig_to_tokens(self, signal, lengths=None, num_codebooks=None):
        """Tokens ``[B, T, K']`` of ``signal`` [B, S] (first ``num_codebooks``)."""
        tokens, _ = self.encode(signal, lengths)
        return tokens[..., :num_codebooks] if num_codebooks else tokens

    def tokens_to_sig(self, tokens):
        """Waveform ``[B, S]`` from tokens ``[B, T, K']``."""
        return self.decode(tokens).squeeze(1)

    def get_pretrained_embeddings(self, vocab_size=None, num_codebooks=None):
        """Codebook vectors flattened to ``[K' * vocab_size, D]`` (DASB layout)."""
        vocab_size = vocab_size or self.vocab_size
        num_codebooks = num_codebooks or self.num_codebooks
        return self.vocabulary[:num_codebooks, :vocab_size].reshape(-1, self.vocabulary.shape[-1])

    def frames_for(self, num_samples):
        """Frames produced for ``num_samples`` input samples."""
        return math.ceil(num_samples / self.hop_length)
