"""SpeechBrain interfaces for trained DSL codecs, loaded offline.

A packaged model is a local folder (see :mod:`speechbrain_dsl.inference.package`)
holding ``hyperparams.yaml`` (the model definition, ``modules`` and a
``pretrainer``) and ``codec.ckpt`` (weights and the calibrated switch threshold).
Nothing is downloaded; weights are read with ``torch.load``'s default
``weights_only=True``.

- :class:`DSLCodecInterface`: a ``Pretrained`` interface (``encode_batch``,
  ``decode_batch``, ``encode_file``).
- :func:`load_tokenizer`: the frozen codec as a
  :class:`~speechbrain_dsl.inference.tokenizer.DSLTokenizer`, for recipes written
  for SpeechBrain's Encodec wrapper or for DASB's tokenizers.
- :class:`DACStyleCodec`: the call pattern of SpeechBrain's DAC
  (``codec(wavs, n_quantizers=K)``, ``quantizer.from_codes``, ``decode(z)``),
  loaded from a folder.

Both hold the model and an engine (:mod:`speechbrain_dsl.inference.engines`).

Engines (chosen by :mod:`speechbrain_dsl.inference.engine_choice`). A DSL codec
loaded from a local folder runs with onnxruntime by default on CPU
(``engine="onnxruntime"``; :mod:`speechbrain_dsl.inference.runtime`), else with
PyTorch (``engine="torch"``). The graphs are the folder's own
(``encoder.onnx``, ``decoder.onnx``, written by the package command or
``python -m speechbrain_dsl.inference.export <folder> --folder <folder>``) when
its ``SHA256SUMS`` lists them; a folder without an encoder graph (the shipped
packages) gets one exported on first load into ``<savedir>/onnx-cache/``,
checksummed there and reused by later loads
(:func:`~speechbrain_dsl.inference.export.cached_encoder`; decoding then runs in
PyTorch, about as fast as the decoder graph). Both engines give the same tokens
and routes: the graph is the same computation, and onnxruntime's float rounding
can only flip a route whose prediction is within rounding of the threshold, or a
token whose two nearest codewords tie. (Rounding is ~1e-6 in the predictions, but reaches
~1e-2 on segments whose features are nearly constant: the switch takes the
variance as E[x^2] - E[x]^2, which cancels there.) ``oracle`` mode (both
tails, for analysis) always runs in PyTorch.

Long inputs. ``encode_file`` reads, resamples and encodes a file a piece at a
time (:attr:`DSLCodecInterface.piece_seconds`, 60 s), and ``encode_batch`` cuts
inputs longer than a piece the same way: each routing segment is encoded with
its receptive field of past audio, so the tokens equal whole-input encoding
while memory stays bounded (an hour of 16-kHz audio in well under 1 GiB).

Example
-------
>>> from speechbrain_dsl.inference.interface import DSLCodecInterface
>>> codec = DSLCodecInterface.from_hparams(source="pretrained/dsl-codec-16k",
...                                        num_codebooks=2)           # doctest: +SKIP
>>> codec.bitrate                                                      # doctest: +SKIP
1.0
>>> tokens = codec.encode_file("speech.wav")                           # doctest: +SKIP
"""

import math
import pickle
from pathlib import Path
from typing import Optional, Union

import numpy as np
import soundfile as sf
import torch
from speechbrain.inference.interfaces import Pretrained
from tqdm.auto import tqdm

from speechbrain_dsl.inference import runtime as rt
from speechbrain_dsl.inference.audio_blocks import read_blocks
from speechbrain_dsl.inference.dac import DACStyleTokenizer
from speechbrain_dsl.inference.engine_choice import choose_engine, exportable
from speechbrain_dsl.inference.engines import Engine, encode_with_runtime, make_engine
from speechbrain_dsl.inference.loading import load_packaged
from speechbrain_dsl.inference.settings import ModelSettings
from speechbrain_dsl.inference.streaming import ENGINES, StreamingEncoder
from speechbrain_dsl.inference.tokenizer import DSLTokenizer
from speechbrain_dsl.lobes.codec import DSLCodec, Encoding, Routing

__all__ = [
    "REQUIRED_FILES",
    "DACStyleCodec",
    "DSLCodecInterface",
    "encode_with_runtime",
    "load_tokenizer",
    "read_blocks",
]

REQUIRED_FILES = ("hyperparams.yaml", "codec.ckpt")


class DSLCodecInterface(ModelSettings, Pretrained):
    """Encode to tokens and decode back with a trained (DSL) codec.

    Set ``mode`` (``full``, ``light``, ``mixed``), ``threshold`` and
    ``num_codebooks`` as needed (or pass ``mode`` and ``threshold`` per call, or
    scope them with :meth:`routing`); :attr:`bitrate` gives the resulting kbps.
    :meth:`encode_with_routing` returns the routes of a call with its tokens.
    :attr:`engine` says what runs the encoder and decoder (see the module's
    docstring).
    """

    MODULES_NEEDED = ["codec"]
    piece_seconds = 60.0  # long inputs are encoded this many seconds at a time
    runtime = None  # the OnnxCodec of the onnxruntime engine
    _engine = "torch"

    @classmethod
    def from_hparams(
        cls,
        source: Union[str, Path],
        hparams_file: str = "hyperparams.yaml",
        num_codebooks: Optional[int] = None,
        engine: Optional[str] = None,
        onnx_precision: str = "fp32",
        **kwargs,
    ) -> "DSLCodecInterface":
        """Loads a packaged model; for a local folder, checks its files first.

        Arguments
        ---------
        source : str or Path
            The packaged folder.
        hparams_file : str
        num_codebooks : int, optional
            Use the first ``num_codebooks`` codebooks (all by default); more than
            the codec has is a ValueError.
        engine : str, optional
            ``torch`` or ``onnxruntime``. By default onnxruntime for a DSL codec
            (routing fixed-size segments) in a local folder on CPU, else torch.
            The folder's own ``encoder.onnx`` (and ``decoder.onnx``) are used
            when its ``SHA256SUMS`` lists them (a listed graph of other weights
            is a ValueError naming it); otherwise the encoder graph is exported
            on first load into ``<savedir>/onnx-cache/`` (``savedir``: the
            folder itself when not given) and reused by later loads after
            checking its checksum and its metadata's ``weights_sha256``
            (:func:`~speechbrain_dsl.inference.export.cached_encoder`). An
            unwritable ``savedir`` exports to a temporary folder instead (a
            warning names both); when no graph can be had the default falls
            back to torch with a warning naming why, and an explicit
            ``onnxruntime`` is a ValueError.
        onnx_precision : str
            ``fp32`` or ``int8`` (``encoder.int8.onnx``, from the folder only: it
            needs calibration audio; implies onnxruntime).
            Not ``precision``: that is SpeechBrain's autocast run option.
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
                interface = load_packaged(cls, folder, hparams_file, **kwargs)
            else:
                interface = super().from_hparams(
                    source=str(source), hparams_file=hparams_file, **kwargs
                )
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"cannot load {folder / 'codec.ckpt'}: {err}") from None
        interface.num_codebooks = num_codebooks
        interface._engine, interface.runtime = choose_engine(
            interface.codec,
            interface.device,
            folder if folder.is_dir() else None,
            engine,
            onnx_precision,
            kwargs.get("savedir"),
        )
        return interface

    @property
    def engine(self) -> str:
        """``torch`` or ``onnxruntime``: what runs encode and decode calls."""
        return self._engine

    @engine.setter
    def engine(self, value: str) -> None:
        if value not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {value!r}")
        if value == "onnxruntime" and self.runtime is None:
            raise ValueError(
                "engine: this interface was loaded without exported graphs "
                "(from_hparams(..., engine='onnxruntime') loads them)"
            )
        self._engine = value

    def _onnx_runs(self, mode: str) -> bool:
        return self._engine == "onnxruntime" and mode in rt.MODES

    def _engine_object(self) -> Engine:
        """The engine that runs this interface's calls (see :mod:`speechbrain_dsl.inference.engines`)."""
        return make_engine(self._engine, self.codec, self.runtime)

    @property
    def codec(self) -> DSLCodec:
        """The underlying :class:`~speechbrain_dsl.lobes.codec.DSLCodec`."""
        return self.mods.codec

    def encode_batch(
        self,
        wavs: Union[torch.Tensor, np.ndarray],
        wav_lens: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
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
        mode, threshold : optional
            Routing of this call; the scope's or the codec's by default.
        """
        return self.encode_with_routing(wavs, wav_lens, sample_rate, mode, threshold).tokens

    @torch.no_grad()
    def encode_with_routing(
        self,
        wavs: Union[torch.Tensor, np.ndarray],
        wav_lens: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> Encoding:
        """:meth:`encode_batch` with the routes of the call: an :class:`Encoding`.

        ``Encoding.emb`` is None when the call ran through encoder rows
        (onnxruntime, or an input long enough to be cut into pieces).
        """
        codec = self.codec
        mode, threshold = codec.resolve_routing(mode, threshold)
        wavs = codec.check_input(wavs, sample_rate, "wavs", check_range=True, resample=True)
        wav_lens = codec.check_length(wav_lens, wavs.shape[0], "wav_lens")
        if self._onnx_runs(mode) or self._pieces_apply(wavs.shape[-1], mode):
            # onnxruntime, or a long input in pieces: bounded memory, same tokens
            runtime = self.runtime if self._onnx_runs(mode) else None
            out = encode_with_runtime(
                codec,
                runtime,
                wavs,
                wav_lens,
                self._piece_segments(),
                mode=mode,
                threshold=threshold,
            )
            out.tokens = out.tokens.to(self.device)
            return out
        wav_lens = None if wav_lens is None else wav_lens.to(self.device)
        return codec.encode_with_routing(
            wavs.to(self.device), wav_lens, mode=mode, threshold=threshold
        )

    def _piece_segments(self) -> int:
        if self.piece_seconds <= 0:
            raise ValueError(f"piece_seconds: expected > 0, got {self.piece_seconds!r}")
        segment = self.codec.encoder.dsl.segment_frames * self.codec.hop_length
        return max(1, round(self.piece_seconds * self.sample_rate / segment))

    def _can_cut(self, mode: str) -> bool:
        """True when inputs can be encoded a segment at a time (DSL, fixed segments, no oracle)."""
        return exportable(self.codec) and mode in rt.MODES

    def _pieces_apply(self, samples: int, mode: str) -> bool:
        """True when a torch-engine input is longer than one piece and can be cut."""
        if not self._can_cut(mode):
            return False
        segment = self.codec.encoder.dsl.segment_frames * self.codec.hop_length
        return samples > self._piece_segments() * segment

    @torch.no_grad()
    def decode_batch(
        self, tokens: torch.Tensor, wav_lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Waveforms ``[B, S]`` from tokens ``[B, T, K]``; ``wav_lens`` zeroes padding."""
        tokens = self.codec.check_tokens(tokens)
        wav_lens = self.codec.check_length(wav_lens, tokens.shape[0], "wav_lens")
        wav_lens = None if wav_lens is None else wav_lens.to(self.device)
        return self._engine_object().decode(tokens.to(self.device), wav_lens).squeeze(1)

    def encode_file(
        self,
        path: Union[str, Path],
        progress: Optional[bool] = None,
        mode: Optional[str] = None,
        threshold: Optional[float] = None,
    ) -> torch.Tensor:
        """Tokens ``[1, T, K]`` of an audio file (any rate: resampled, mixed to mono).

        The file is read, resampled and encoded :attr:`piece_seconds` at a time
        with the streaming encoder, so memory does not grow with its length and
        the tokens are those of encoding it whole. Inside a :meth:`routing`
        scope the file's :class:`Routing` is handed to it.

        Arguments
        ---------
        path : str or Path
        progress : bool, optional
            Show a tqdm progress bar (by default when the file has more than one
            piece and stderr is a terminal).
        mode, threshold : optional
            Routing of this call; the scope's or the codec's by default.
        """
        try:
            reader = sf.SoundFile(str(path))
        except (RuntimeError, sf.LibsndfileError) as err:
            raise ValueError(f"cannot read audio file {path}: {err}") from None
        with reader:
            rate = reader.samplerate
            target = self.sample_rate
            resampled = math.ceil(reader.frames * target / rate)
            mode, threshold = self.codec.resolve_routing(mode, threshold)
            if not self._can_cut(mode) or resampled < self.codec.hop_length:
                audio = reader.read(dtype="float32", always_2d=True)  # whole (baseline, oracle)
                return self.encode_batch(
                    torch.from_numpy(audio).mean(1)[None],
                    sample_rate=rate,
                    mode=mode,
                    threshold=threshold,
                )
            stream = StreamingEncoder(self, engine=self._engine, mode=mode, threshold=threshold)
            block = self._piece_segments() * self.codec.encoder.dsl.segment_frames
            block_seconds = block * self.codec.hop_length / target
            pieces = max(1, math.ceil(reader.frames / (block_seconds * rate)))
            bar = tqdm(
                total=pieces,
                unit="piece",
                desc=Path(path).name,
                leave=False,
                disable=(pieces == 1 or None) if progress is None else not progress,
            )
            tokens = []
            try:
                for wav in read_blocks(reader, target, block_seconds, str(path)):
                    stream.push(wav)
                    tokens.append(stream.last_tokens)
                    bar.update(1)
                stream.flush()
                tokens.append(stream.last_tokens)
            finally:
                bar.close()
        tokens = torch.cat(tokens)[None, :, : self.codec.num_codebooks]
        route = torch.tensor(stream.routes, dtype=torch.bool)[None]
        self.codec.record_routing(
            Routing(
                mode,
                threshold,
                route,
                torch.tensor(stream.predicted)[None],
                torch.ones_like(route),
                self.codec.encoder.dsl.segment_frames,
            )
        )
        return tokens.to(self.device)


def load_tokenizer(
    source: Union[str, Path],
    mode: str = "mixed",
    num_codebooks: Optional[int] = None,
    savedir: Optional[str] = None,
    engine: Optional[str] = None,
    onnx_precision: str = "fp32",
) -> DSLTokenizer:
    """A packaged codec as a frozen tokenizer (a :class:`DSLTokenizer` in eval mode), for YAML.

    It has the interface of SpeechBrain's Encodec wrapper (``encode``,
    ``decode``, ``embeddings``, ``sample_rate``, ``vocabulary``, ``num_heads``,
    ``num_tokens``, ``emb_dim``, ``bandwidth``), DASB's tokenizer contract
    (``sig_to_tokens``, ``tokens_to_sig``, ``get_pretrained_embeddings``) and
    ``num_codebooks``, ``vocab_size``, ``bitrate`` (kbps); ``.codec`` is the
    model (see :mod:`speechbrain_dsl.inference.tokenizer`).

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
        Recorded as the model's ``savedir`` hyperparameter (the folder itself by
        default). For a local folder nothing is copied or linked there: the
        files are read from ``source`` in place. The onnxruntime engine's graph
        cache lives in ``<savedir>/onnx-cache/`` when the folder has no graphs.
    engine : str, optional
        ``torch`` or ``onnxruntime`` (the default for a DSL codec on CPU: the
        folder's graphs, else the graph cache's; see
        :meth:`DSLCodecInterface.from_hparams`); settable later as
        ``tokenizer.engine``.
    onnx_precision : str
        ``fp32`` or ``int8``.

    Returns
    -------
    DSLTokenizer
    """
    interface = DSLCodecInterface.from_hparams(
        source=str(source),
        savedir=savedir or str(source),
        num_codebooks=num_codebooks,
        engine=engine,
        onnx_precision=onnx_precision,
    )
    codec = interface.codec.eval()
    if not codec.has_dsl and mode != "full":
        raise ValueError(
            f"{source} holds a codec without DSL: set the tokenizer mode to 'full' (got {mode!r})"
        )
    codec.mode = mode
    for parameter in codec.parameters():
        parameter.requires_grad_(False)
    return DSLTokenizer(codec, interface.runtime, interface.engine).eval()


class DACStyleCodec(DACStyleTokenizer):
    """A frozen DSL codec called the way recipes call SpeechBrain's ``DAC``, loaded for YAML.

    :class:`~speechbrain_dsl.inference.dac.DACStyleTokenizer` (``forward(audio_data,
    sample_rate=None, n_quantizers=None) -> (codes [B, N, T], z [B, D, T])``,
    ``quantizer.from_codes(codes)``, ``decode(z)``, DASB's calls) built from a
    packaged folder. A DAC-based recipe swaps its ``codec:`` entry::

        codec: !new:speechbrain_dsl.inference.interface.DACStyleCodec
            source: pretrained/dsl-codec-16k
            mode: mixed

    Arguments
    ---------
    source : str or Path, optional
        A packaged folder (loaded with :func:`load_tokenizer`, engine included).
    mode : str
        Routing mode, as in :func:`load_tokenizer`.
    num_codebooks : int, optional
        Codebooks available to ``n_quantizers`` (all by default).
    savedir : str, optional
        As in :func:`load_tokenizer` (recorded only; nothing is linked).
    codec : DSLCodec or DSLTokenizer, optional
        An already loaded codec (used as is, in PyTorch) or tokenizer (its
        engine too) instead of ``source``.

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(
    ...     SoundStreamEncoder(channels=2, multipliers=(2,), strides=(8,), emb_dim=8),
    ...     ResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16),
    ...     SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(8,)),
    ... ).eval()
    >>> codes, z = DACStyleCodec(codec=codec)(torch.randn(2, 1, 800) * 0.1, n_quantizers=2)
    >>> codes.shape, z.shape
    (torch.Size([2, 2, 100]), torch.Size([2, 8, 100]))
    """

    def __init__(
        self,
        source: Union[str, Path, None] = None,
        mode: str = "mixed",
        num_codebooks: Optional[int] = None,
        savedir: Optional[str] = None,
        codec: Union[DSLCodec, DSLTokenizer, None] = None,
    ):
        if (source is None) == (codec is None):
            raise ValueError("DACStyleCodec: give either source (a packaged folder) or codec")
        if codec is None:
            codec = load_tokenizer(source, mode, num_codebooks, savedir)
        if isinstance(codec, DSLTokenizer):
            super().__init__(codec.codec, codec.runtime, codec.engine)
        elif isinstance(codec, DSLCodec):
            super().__init__(codec)
        else:
            raise ValueError(f"codec: expected a DSLCodec or DSLTokenizer, got {type(codec)}")
