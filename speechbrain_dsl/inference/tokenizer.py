"""The tokenizer face of a DSLCodec: what recipes written for other codecs call.

A tokenizer HOLDS the model (:class:`~speechbrain_dsl.lobes.codec.DSLCodec`,
``.codec``) and an engine (:mod:`speechbrain_dsl.inference.engines`: PyTorch or
onnxruntime, ``.engine`` names it) and speaks the dialects of other recipes:

- :class:`DSLTokenizer` (what :func:`~speechbrain_dsl.inference.interface.load_tokenizer`
  returns): SpeechBrain's Encodec wrapper, ``encode(inputs, length=None) ->
  (tokens [B, T, K] long, emb [B, T, K, D])``, ``decode(tokens, length=None) ->
  [B, 1, S]``, ``embeddings(tokens)``, ``num_heads``, ``num_tokens``,
  ``emb_dim``, ``bandwidth``;
- every tokenizer (:class:`TokenizerBase`): DASB's ``sig_to_tokens``,
  ``tokens_to_sig``, ``get_pretrained_embeddings``; ``sample_rate``,
  ``num_codebooks`` (settable: the first K codebooks, a bitrate), ``vocab_size``,
  ``vocabulary`` ``[K, C, D]``, ``bitrate`` (kbps), ``mode``, ``threshold`` and
  ``routing()`` (per call or scoped; the routes of a call come back with it from
  ``encode_with_routing``);
- SpeechBrain's DAC: :class:`speechbrain_dsl.inference.dac.DACStyleTokenizer`.

Inputs are ``[B, S]`` or ``[B, 1, S]`` floats in [-1, 1] at ``sample_rate`` (a
tensor or a numpy array), checked as the model checks them
(:mod:`speechbrain_dsl.checks`); ``length`` holds relative lengths in (0, 1].
The tokenizer's ``num_codebooks``, ``mode`` and ``threshold`` are the model's
(one setting, whichever face sets it), and a ``routing()`` scope opened on
either reaches both.

Example
-------
>>> from hyperpyyaml import load_hyperpyyaml
>>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
>>> tokenizer = DSLTokenizer(codec)
>>> tokenizer.num_codebooks = 2
>>> tokens, emb = tokenizer.encode(torch.randn(3, 16000) * 0.1)
>>> tokens.shape, emb.shape, tokenizer.bitrate
(torch.Size([3, 50, 2]), torch.Size([3, 50, 2, 64]), 1.0)
>>> tokenizer.tokens_to_sig(tokens).shape, tokenizer.get_pretrained_embeddings().shape
(torch.Size([3, 16000]), torch.Size([2048, 64]))
"""

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from speechbrain_dsl import checks
from speechbrain_dsl.inference.engines import Engine, make_engine
from speechbrain_dsl.inference.runtime import OnnxCodec
from speechbrain_dsl.inference.settings import ModelSettings
from speechbrain_dsl.lobes.codec import CodecOutput, DSLCodec, Encoding

__all__ = ["MODEL_ATTRIBUTES", "DSLTokenizer", "TokenizerBase"]

#: Read from the model as they are by :class:`DSLTokenizer` (``tokenizer.quantizer``
#: is ``tokenizer.codec.quantizer``): its parts and tensor-level helpers, what
#: export and analysis code reads off a codec. Engine-dependent calls are the
#: tokenizer's own methods.
MODEL_ATTRIBUTES = frozenset(
    {
        "encoder",
        "quantizer",
        "decoder",
        "input_scale",
        "decoder_dtype",
        "to_network",
        "from_network",
        "encode_features",
        "decode_latents",
        "frames_for",
        "check_input",
        "check_length",
        "check_tokens",
        "select_codebooks",
        "resolve_routing",
        "record_routing",
        "routing_of",
    }
)


class TokenizerBase(ModelSettings, nn.Module):
    """What every tokenizer face shares: the model, an engine, DASB's calls, the settings.

    Arguments
    ---------
    codec : DSLCodec
        The model (a submodule: ``.to(device)``, ``.eval()`` and the state dict
        reach it, under ``codec.``).
    runtime : OnnxCodec, optional
        The exported graphs of ``codec`` (needed for ``engine="onnxruntime"``).
    engine : str, optional
        ``torch`` or ``onnxruntime``; onnxruntime when ``runtime`` is given.
    """

    def __init__(
        self,
        codec: DSLCodec,
        runtime: Optional[OnnxCodec] = None,
        engine: Optional[str] = None,
    ):
        super().__init__()
        if not isinstance(codec, DSLCodec):
            raise ValueError(f"codec: expected a DSLCodec, got {type(codec).__name__}")
        self.codec = codec
        self._runtime = runtime
        self.engine = engine or ("onnxruntime" if runtime is not None else "torch")

    # engine ----------------------------------------------------------------------
    @property
    def engine(self) -> str:
        """``torch`` or ``onnxruntime``: what runs encode and decode calls (settable)."""
        return self._engine.name

    @engine.setter
    def engine(self, name: str) -> None:
        self._engine: Engine = make_engine(name, self.codec, self._runtime)

    @property
    def runtime(self) -> Optional[OnnxCodec]:
        """The exported graphs this tokenizer was loaded with (None: PyTorch only)."""
        return self._runtime

    # encoding through the engine ---------------------------------------------------------
    def encode_with_routing(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
        tokens: bool = True,
    ) -> Encoding:
        """Tokens ``[B, T, num_codebooks]``, embeddings and the routing of this call.

        As ``DSLCodec.encode_with_routing``, run by the engine (onnxruntime
        returns ``emb`` only with ``tokens=False``); another ``sample_rate`` is
        refused.
        """
        return self._engine.encode(inputs, length, sample_rate, mode, threshold, tokens)

    def embed(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> torch.Tensor:
        """Continuous encoder embeddings ``[B, T, D]`` (for probes), routed per ``mode``."""
        return self.encode_with_routing(
            inputs, length, sample_rate, mode, threshold, tokens=False
        ).emb

    # DASB's tokenizer contract --------------------------------------------------------
    @torch.no_grad()
    def sig_to_tokens(
        self,
        signal: Union[torch.Tensor, np.ndarray],
        lengths: Optional[torch.Tensor] = None,
        num_codebooks: Union[int, Sequence[int], None] = None,
        **kwargs: Any,
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
        """
        checks.refuse_ssl_options(kwargs)
        index = self.codec.select_codebooks(num_codebooks)
        return self.encode_with_routing(signal, lengths).tokens[..., index]

    @torch.no_grad()
    def tokens_to_sig(
        self, tokens: torch.Tensor, length: Optional[torch.Tensor] = None, **kwargs: Any
    ) -> torch.Tensor:
        """Waveform ``[B, S]`` from tokens ``[B, T, K]``, in eval mode; ``length`` zeroes padding.

        Other keywords of DASB's contract are accepted and ignored.
        """
        return self._engine.decode(tokens, length).squeeze(1)

    def get_pretrained_embeddings(
        self,
        vocab_size: Optional[int] = None,
        num_codebooks: Union[int, Sequence[int], None] = None,
        device: Union[str, torch.device] = "cpu",
        **kwargs: Any,
    ) -> torch.Tensor:
        """Codebook vectors ``[K * vocab_size, D]``, codebook-major (row ``k * C + c``).

        The model's ``get_pretrained_embeddings`` (``num_codebooks`` as in
        :meth:`sig_to_tokens`; ``vocab_size`` must be the model's when given).
        """
        return self.codec.get_pretrained_embeddings(vocab_size, num_codebooks, device, **kwargs)


class DSLTokenizer(TokenizerBase):
    """A DSL codec as a frozen tokenizer with the interface of SpeechBrain's Encodec.

    What :func:`~speechbrain_dsl.inference.interface.load_tokenizer` returns. It
    has the calls of :class:`TokenizerBase` (DASB's contract, settings, routing)
    and Encodec's ``encode``, ``decode``, ``embeddings``, ``num_heads``,
    ``num_tokens``, ``emb_dim``, ``bandwidth``. The model's parts and
    tensor-level helpers (:data:`MODEL_ATTRIBUTES`: ``quantizer``,
    ``encode_features``...) read through to ``.codec``; ``forward`` is the
    model's (the training pass: call ``encode`` for tokens).

    Arguments
    ---------
    codec : DSLCodec
    runtime : OnnxCodec, optional
    engine : str, optional
        As in :class:`TokenizerBase`.

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(
    ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
    ... )
    >>> tokenizer = DSLTokenizer(codec).eval()
    >>> tokens, emb = tokenizer.encode(torch.randn(2, 800) * 0.1)
    >>> tokens.shape, emb.shape, tokenizer.engine
    (torch.Size([2, 100, 3]), torch.Size([2, 100, 3, 8]), 'torch')
    >>> tokenizer.decode(tokens).shape, tokenizer.sig_to_tokens(torch.zeros(2, 800), None, [2]).shape
    (torch.Size([2, 1, 800]), torch.Size([2, 100, 1]))
    >>> (tokenizer.num_heads, tokenizer.num_tokens, tokenizer.emb_dim) == tuple(tokenizer.vocabulary.shape)
    True
    """

    def __getattr__(self, name: str) -> Any:
        if name in MODEL_ATTRIBUTES:
            return getattr(self._modules["codec"], name)
        return super().__getattr__(name)

    # Encodec's names ---------------------------------------------------------------
    @property
    def num_heads(self) -> int:
        """Encodec's name for :attr:`num_codebooks`."""
        return self.num_codebooks

    @property
    def num_tokens(self) -> int:
        """Encodec's name for :attr:`vocab_size`."""
        return self.vocab_size

    @property
    def bandwidth(self) -> float:
        """Encodec's name for :attr:`bitrate` (kbps)."""
        return self.bitrate

    def encode(
        self,
        inputs: Union[torch.Tensor, np.ndarray],
        length: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``[B, T, num_codebooks]`` (long) and their codebook vectors ``[B, T, K, D]``.

        The signature of SpeechBrain's Encodec wrapper, ``encode(inputs, length)``;
        ``mode`` and ``threshold`` route this call; another ``sample_rate`` is refused.
        """
        tokens = self.encode_with_routing(inputs, length, sample_rate, mode, threshold).tokens
        return tokens, self.codec.embeddings(tokens)

    def decode(self, tokens: torch.Tensor, length: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Waveform ``[B, 1, T * hop]`` from tokens ``[B, T, K]`` (the first K codebooks)."""
        return self._engine.decode(tokens, length)

    def embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[B, T, K, D]`` of tokens ``[B, T, K]`` (Encodec's ``embeddings``)."""
        return self.codec.embeddings(tokens)

    def forward(
        self,
        wav: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        n_quantizers: Optional[int] = None,
    ) -> CodecOutput:
        """The model's pass (``DSLCodec.forward``), as calling the model did."""
        return self.codec(wav, lengths, n_quantizers)
