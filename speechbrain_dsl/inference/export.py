"""ONNX (and ``torch.export``) graphs of a DSL codec: the routed encoder, the decoder, int8.

Three files make a deployment that runs with onnxruntime and numpy only
(:class:`speechbrain_dsl.inference.runtime.OnnxCodec`):

- ``encoder.onnx``: base, mask, switch, the two tails with the routing inside, and
  residual nearest-codeword tokens (:class:`ExportableEncoder`);
- ``decoder.onnx``: tokens to waveform, either decoder type, the Vocos head's
  inverse FFT written as matmuls (:class:`ExportableDecoder`);
- ``encoder.int8.onnx``: the encoder with its tail convolutions quantized to int8 by
  onnxruntime's static quantization, calibrated on held-out audio
  (:func:`quantize_encoder`).

Encoder rows. Each row of the encoder graph is one routing segment (``segments``,
``S`` samples, 1 s at 16 kHz except for a stream's last, partial segment) and
the audio just before it (``context``, ``C`` samples: the receptive field, one
hop for the default model, or fewer at the start of a stream). The row is routed
on its own segment and emits that segment's frames, which equal the frames
offline encoding of the whole recording gives (the graph runs the causal layers
over context + segment and drops the context's frames). ``threshold`` is a graph
input (``-inf`` routes every row full, ``+inf`` light) and ``lengths`` the
valid share of each row's segment (1 except for padding in a batch). Routing is
index-based: the switch's predictions select rows (``nonzero``), each tail runs
on its rows only (``index_select``) and results are put back (``index_copy``),
so onnxruntime skips the full tail for light rows too.

    python -m speechbrain_dsl.inference.export <packaged folder> --out encoder.onnx [--format onnx|torch]
    python -m speechbrain_dsl.inference.export <packaged folder> --folder <out folder> [--calibration DIR]

The second form writes ``encoder.onnx``, ``decoder.onnx`` (and
``encoder.int8.onnx`` calibrated on the audio files of ``DIR``) and lists them in
the folder's ``SHA256SUMS`` (created if needed, other entries kept), so
``--folder <packaged folder>`` leaves a package that loads with its graphs; the
package command (:mod:`speechbrain_dsl.inference.package`) does the same next to
the weights.

Graph cache. A packaged folder without an encoder graph gets one exported on
first load into a cache folder (:func:`cached_encoder`, :data:`GRAPH_CACHE`
under the loader's ``savedir``), checked at every later load and reused.
"""

import argparse
import contextlib
import copy
import json
import logging
import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.atomic import atomic_path, write_text
from speechbrain_dsl.inference.loading import load_codec
from speechbrain_dsl.inference.manifest import (
    MANIFEST,
    CheckpointError,
    manifest_text,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from speechbrain_dsl.inference.runtime import (
    DECODER_FILE,
    ENCODER_FILE,
    ENCODER_INT8_FILE,
    FORMAT_VERSION,
    METADATA_KEY,
    ONNX_FILES,
)
from speechbrain_dsl.lobes.vocos import VocosDecoder
from speechbrain_dsl.nnet.conv import export_layout
from speechbrain_dsl.nnet.routing import context_frames

try:  # an advisory lock, so that processes loading at once export a graph once
    import fcntl
except ImportError:  # not on Windows: concurrent writers then export the same bytes twice
    fcntl = None

MAX_ROWS = 100_000
#: The folder, under a loader's ``savedir``, that holds the graphs exported on first load.
GRAPH_CACHE = "onnx-cache"
logger = logging.getLogger(__name__)

__all__ = [
    "DECODER_FILE",
    "ENCODER_FILE",
    "ENCODER_INT8_FILE",
    "FORMAT_VERSION",
    "GRAPH_CACHE",
    "METADATA_KEY",
    "ONNX_FILES",
    "ExportableDecoder",
    "ExportableEncoder",
    "add_to_manifest",
    "cached_encoder",
    "context_samples",
    "export_decoder_onnx",
    "export_folder",
    "export_onnx",
    "export_torch",
    "graph_problem",
    "metadata",
    "quantize_encoder",
    "read_audio_folder",
    "read_metadata",
    "segment_rows",
    "torch_row_encoder",
    "zero_tokens",
]


class ExportableEncoder(nn.Module):
    """Routed DSL encoder + RVQ tokens for a batch of routing segments (rows).

    Arguments
    ---------
    codec : DSLCodec
        With a DSL encoder; its weights are used as they are (eval mode).

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
    >>> wav = torch.randn(3, 1, 16000) * 0.1
    >>> _ = codec.encode(wav)  # initialise the codebooks
    >>> model = ExportableEncoder(codec)
    >>> emb, tokens, predicted = model(wav, torch.tensor(0.5))
    >>> emb.shape, tokens.shape, predicted.shape
    (torch.Size([3, 64, 50]), torch.Size([3, 50, 8]), torch.Size([3]))

    With context (the 320 samples before each segment), the frames are those of
    offline encoding:

    >>> long = torch.randn(1, 1, 32000) * 0.1
    >>> offline, _ = codec.encode_features(long, mode="full")
    >>> second = model(long[..., 16000:], torch.tensor(-math.inf), long[..., 15680:16000])[0]
    >>> torch.allclose(second, offline[..., 50:], atol=1e-5)
    True
    """

    def __init__(self, codec):
        super().__init__()
        if not codec.has_dsl:
            raise ValueError("codec: ExportableEncoder needs a codec with a DSL encoder")
        if codec.encoder.dsl.segment_frames is None:
            raise ValueError("codec: export needs fixed-size routing segments (segment_frames)")
        self.encoder = codec.encoder.eval()
        self.to_network = codec.to_network  # the codec's input scaling, not a copy of it
        self.hop = codec.hop_length
        self.register_buffer("codebooks", codec.quantizer.codebooks.detach().clone())
        self.frames = codec.encoder.dsl.segment_frames
        self.segment_samples = self.frames * codec.hop_length
        self.context_samples = context_samples(codec)

    def forward(self, segments, threshold, context=None, lengths=None):
        """Embeddings ``[N, D, S / hop]``, tokens ``[N, S / hop, K]`` and predictions ``[N]``.

        Arguments
        ---------
        segments : torch.Tensor
            ``[N, 1, S]`` waveforms, ``S`` a multiple of the hop: one routing
            segment per row.
        threshold : torch.Tensor
            Scalar; rows whose predicted distance is below it take the light tail.
        context : torch.Tensor, optional
            ``[N, 1, C]``, ``C`` a multiple of the hop: the audio before each
            segment (none by default: the segment starts a recording).
        lengths : torch.Tensor, optional
            ``[N]`` valid share of each segment in (0, 1] (all of it by default),
            left out of the switch's statistics as ``DSLCodec.encode`` does.
        """
        dsl = self.encoder.dsl
        window = segments if context is None else torch.cat([context, segments], dim=-1)
        masked = dsl.mask(self.encoder.base(self.to_network(window)))
        context_frames = 0 if context is None else context.shape[-1] // self.hop
        own = masked[..., context_frames * dsl.hop :]  # the segments' own base features
        predicted = dsl.switch(own, own.shape[-1], lengths)[:, 0]
        light = dsl.decide(predicted, "mixed", threshold)
        emb = dsl.run_rows(masked, light)[..., context_frames:]
        return emb, self.quantize(emb.transpose(1, 2)), predicted

    def quantize(self, emb):
        """Residual nearest-codeword tokens ``[N, T, K]`` of ``emb`` ``[N, T, D]``.

        Eager PyTorch computes the distances as ``vector_quantize_pytorch`` does
        in eval mode (``cdist``: squared norms plus ``-2 x.c``, clamped, square
        root), so it gives the RVQ's tokens bit for bit. The exported graph
        ranks codewords by ``|c|^2 - 2 x.c`` only (``|x|^2`` is the same for
        every codeword; the square root does not change the order): one
        ``Gemm`` and an ``ArgMin`` per codebook, a third of the cost. The two
        can only disagree where two codewords tie within float rounding.
        """
        residual, tokens = emb, []
        exporting = torch.compiler.is_exporting()
        for codebook in self.codebooks:
            flat = residual.reshape(-1, residual.shape[-1])
            if exporting:
                score = torch.addmm(codebook.square().sum(-1), flat, codebook.T, alpha=-2)
            else:
                x2 = flat.square().sum(-1)
                y2 = codebook.square().sum(-1)
                xy = torch.einsum("b i d, b j d -> b i j", flat[None], codebook[None])[0] * -2
                score = (x2[:, None] + y2[None] + xy).clamp(min=1e-8).sqrt()
            index = score.argmin(-1).reshape(residual.shape[:-1])
            tokens.append(index)
            residual = residual - codebook[index]
        return torch.stack(tokens, dim=-1)


class MatmulISTFT(nn.Module):
    """A Vocos :class:`~speechbrain_dsl.lobes.vocos.ISTFTHead` without complex numbers or FFTs.

    ONNX has no complex tensors and onnxruntime no inverse real FFT, so the
    export path writes the head's ``irfft`` as one matmul with a constant
    cosine/sine basis (the Hann window folded in) and the overlap-add as shifted
    sums: the same function (equal within float rounding, tested), at
    ``2 (n_fft / 2 + 1) n_fft`` multiply-adds per frame.

    Arguments
    ---------
    head : ISTFTHead
        Its projection and settings are used as they are.

    Example
    -------
    >>> from speechbrain_dsl.lobes.vocos import ISTFTHead
    >>> head = ISTFTHead(8, n_fft=64, hop_length=16)
    >>> x = torch.randn(2, 8, 10)
    >>> torch.allclose(MatmulISTFT(head)(x), head(x), atol=1e-5)
    True
    """

    def __init__(self, head):
        super().__init__()
        self.proj = head.proj
        self.n_fft, self.hop_length = head.n_fft, head.hop_length
        self.max_log_magnitude = head.max_log_magnitude
        self.lookahead = head.lookahead
        n, bins = head.n_fft, head.n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        t = torch.arange(n, dtype=torch.float64)[None]
        # irfft (norm="backward"): x[t] = (1/n) sum_k w_k (Re X_k cos - Im X_k sin)(2 pi k t / n),
        # w = 1 for DC and Nyquist, 2 otherwise; the imaginary parts of DC and Nyquist are ignored.
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if n % 2 == 0:
            weight[-1] = 1.0
        angle = 2 * math.pi * k * t / n
        window = torch.hann_window(n, dtype=torch.float64)
        basis = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) / n * window
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("window_square", window.square().float(), persistent=False)

    def forward(self, x):
        """``x`` [batch, dim, frames] -> waveform [batch, 1, frames * hop]."""
        out = self.proj(x.transpose(1, 2).float())  # [B, T, n_fft + 2]
        log_mag, phase = out.chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=self.max_log_magnitude))
        spectrum = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
        chunks = spectrum @ self.basis  # [B, T, n_fft], windowed
        frames = chunks.shape[1]
        audio = self.overlap_add(chunks)
        envelope = self.overlap_add(self.window_square.expand(1, frames, -1))
        pad = self.lookahead
        audio = audio[:, pad : audio.shape[-1] - pad]
        envelope = envelope[:, pad : envelope.shape[-1] - pad]
        return (audio / envelope.clamp(min=1e-11))[:, None]

    def overlap_add(self, chunks):
        """Sums ``chunks`` [B, T, n_fft] at hop spacing: ``[B, (T - 1) * hop + n_fft]``."""
        hop, n = self.hop_length, self.n_fft
        if n % hop:
            eye = torch.eye(n, dtype=chunks.dtype, device=chunks.device)[:, None]
            return F.conv_transpose1d(chunks.transpose(1, 2), eye, stride=hop)[:, 0]
        r = n // hop  # each hop-long output block sums r chunk pieces
        batch, frames = chunks.shape[:2]
        pieces = chunks.reshape(batch, frames, r, hop)
        out = 0
        for i in range(r):
            out = out + F.pad(pieces[:, :, i], (0, 0, i, r - 1 - i))
        return out.reshape(batch, (frames + r - 1) * hop)


class ExportableDecoder(nn.Module):
    """Tokens ``[N, T, K]`` (any ``K`` up to the codec's) to waveforms ``[N, 1, T * hop]``.

    The codebook vectors of the ``K`` tokens are summed (as the RVQ decodes) and
    run through the codec's decoder (SoundStream or Vocos; a Vocos head is
    replaced by :class:`MatmulISTFT`) and divided by the input scale.

    Arguments
    ---------
    codec : DSLCodec

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
    >>> tokens, _ = codec.encode(torch.randn(2, 16000) * 0.1)
    >>> audio = ExportableDecoder(codec)(tokens)
    >>> audio.shape, torch.allclose(audio, codec.decode(tokens), atol=1e-4)
    (torch.Size([2, 1, 16000]), True)
    """

    def __init__(self, codec):
        super().__init__()
        decoder = codec.decoder
        if isinstance(decoder, VocosDecoder):
            decoder = copy.copy(decoder)  # shares the weights; only the head is swapped
            decoder._modules = dict(decoder._modules)
            decoder.head = MatmulISTFT(decoder.head)
        self.decoder = decoder.eval()
        self.from_network = codec.from_network  # the codec's output scaling, not a copy of it
        self.register_buffer("codebooks", codec.quantizer.codebooks.detach().clone())
        self.vocab_size = self.codebooks.shape[1]

    def forward(self, tokens):
        """Waveforms ``[N, 1, T * hop]`` of tokens ``[N, T, K]`` (int64)."""
        k = tokens.shape[-1]
        flat = self.codebooks[:k].reshape(-1, self.codebooks.shape[-1])
        offsets = torch.arange(k, device=tokens.device) * self.vocab_size
        latents = F.embedding(tokens + offsets, flat).sum(2)  # [N, T, D]
        return self.from_network(self.decoder(latents.transpose(1, 2)))


def torch_row_encoder(model: ExportableEncoder):
    """``model`` in eager PyTorch with the graph's numpy signature (see ``runtime.RowEncoder``).

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> codec = load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"].eval()
    >>> rows = torch_row_encoder(ExportableEncoder(codec))
    >>> emb, tokens, predicted = rows(np.zeros((2, 1, 16000), np.float32), 0.5,
    ...                               np.zeros((2, 1, 320), np.float32), np.ones(2, np.float32))
    >>> emb.shape, tokens.shape, predicted.shape
    ((2, 64, 50), (2, 50, 8), (2,))
    """

    def encode_rows(segments, threshold, context, lengths):
        with torch.no_grad():
            out = model(
                torch.from_numpy(np.ascontiguousarray(segments, np.float32)),
                torch.tensor(float(threshold)),
                torch.from_numpy(np.ascontiguousarray(context, np.float32)),
                torch.from_numpy(np.ascontiguousarray(lengths, np.float32)),
            )
        return [o.numpy() for o in out]

    return encode_rows


def context_samples(codec) -> int:
    """Samples of past audio a routing segment's frames depend on, in whole hops.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> context_samples(load_hyperpyyaml(open("hparams/soundstream_dsl.yaml"))["codec"])
    320
    """
    encoder = codec.encoder
    dsl = encoder.dsl
    lookback = encoder.base.lookback + encoder.base.hop * max(
        dsl.full_tail.lookback, dsl.light_tail.lookback
    )
    return context_frames(lookback, codec.hop_length) * codec.hop_length


def zero_tokens(codec) -> list:
    """Tokens of an all-zero embedding: what ``DSLCodec.encode`` gives padded frames."""
    quantizer = codec.quantizer
    was_training = quantizer.training
    try:
        with torch.no_grad():
            _, tokens, _ = quantizer.eval()(torch.zeros(1, 1, codec.emb_dim))
    finally:
        quantizer.train(was_training)
    return tokens[0, 0].tolist()


def metadata(codec, kind: str, weights_sha256: Optional[str] = None) -> Dict:
    """What a runtime needs besides the graph, stored in the ONNX file's metadata.

    Arguments
    ---------
    codec : DSLCodec
    kind : str
        ``encoder`` or ``decoder``.
    weights_sha256 : str, optional
        Checksum of the ``codec.ckpt`` the graph was exported from: a runtime
        refuses a graph left behind by other weights.
    """
    info = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "precision": "fp32",
        "sample_rate": int(codec.sample_rate),
        "hop": int(codec.hop_length),
        "emb_dim": int(codec.emb_dim),
        "num_codebooks": int(codec.quantizer.num_quantizers),
        "vocab_size": int(codec.vocab_size),
        "weights_sha256": weights_sha256,
    }
    if kind == "encoder":
        info.update(
            segment_samples=int(codec.encoder.dsl.segment_frames * codec.hop_length),
            context_samples=context_samples(codec),
            base_hop=int(codec.hop_length // codec.encoder.dsl.hop),
            threshold=float(codec.threshold),
            zero_tokens=zero_tokens(codec),
        )
    return info


def read_metadata(path) -> Dict:
    """The :func:`metadata` stored in an exported ONNX file (ValueError naming it if none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    raise ValueError(
        f"{path} holds no {METADATA_KEY} metadata (not exported by "
        f"speechbrain_dsl.inference.export, or by an older version: export it again)"
    )


def _save_with_metadata(proto, path, info) -> Path:
    """Writes ``proto`` to ``path`` atomically with ``info`` in its metadata.

    The exporter's notes on the graph (``torch.export``'s signature and range
    constraints, printed from sets in an order that changes from one process to
    the next) are left out, so an export of the same model gives the same bytes.
    """
    import onnx

    del proto.metadata_props[:]
    del proto.graph.metadata_props[:]
    if info is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(info)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(proto, tmp)
    return Path(path)


def example_inputs(model, segments=4, context_hops=2):
    """Inputs to trace with: ``segments`` random rows, a threshold, context and lengths.

    Sizes 0 and 1 are avoided: ``torch.export`` would specialise the graph to them.
    """
    return (
        torch.randn(segments, 1, model.segment_samples) * 0.1,
        torch.tensor(0.5),
        torch.randn(segments, 1, context_hops * model.hop) * 0.1,
        torch.ones(segments),
    )


def _encoder_dynamic_shapes(model):
    rows = torch.export.Dim("segments", min=1, max=MAX_ROWS)
    frames = torch.export.Dim("frames", min=1, max=MAX_ROWS)
    context = torch.export.Dim("context_hops", min=0, max=MAX_ROWS)
    return ({0: rows, 2: model.hop * frames}, None, {0: rows, 2: model.hop * context}, {0: rows})


def export_onnx(model: ExportableEncoder, path, info: Optional[Dict] = None) -> Path:
    """Writes the encoder graph (dynamic rows, segment and context lengths); returns the path.

    Inputs ``segments``, ``threshold``, ``context``, ``lengths``; outputs
    ``embeddings``, ``tokens``, ``predicted``. ``info`` (see :func:`metadata`)
    goes into the file's metadata.
    """
    model = model.eval()
    with torch.no_grad(), export_layout(), warnings.catch_warnings():
        # rows, context and lengths share the "segments" axis: the exporter says so
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints")
        program = torch.onnx.export(
            model,
            example_inputs(model),
            dynamo=True,
            verbose=False,
            input_names=["segments", "threshold", "context", "lengths"],
            output_names=["embeddings", "tokens", "predicted"],
            dynamic_shapes=_encoder_dynamic_shapes(model),
        )
    return _save_with_metadata(program.model_proto, path, info)


def export_torch(model: ExportableEncoder, path) -> Path:
    """Writes a ``torch.export`` program (``.pt2``) of the encoder; returns the path.

    Only the number of rows is dynamic: every row is a whole segment with
    ``context_samples`` of context (``torch.export`` cannot serialise the
    ``math.ceil`` a dynamic segment length puts in the switch's graph). The
    ONNX graph takes any segment and context length.
    """
    model = model.eval()
    rows = torch.export.Dim("segments", min=1, max=MAX_ROWS)
    inputs = example_inputs(model, context_hops=model.context_samples // model.hop)
    with torch.no_grad(), export_layout():
        program = torch.export.export(
            model, inputs, dynamic_shapes=({0: rows}, None, {0: rows}, {0: rows})
        )
    with atomic_path(path, suffix=".pt2") as tmp:
        torch.export.save(program, tmp)
    return Path(path)


def export_decoder_onnx(model: ExportableDecoder, path, info: Optional[Dict] = None) -> Path:
    """Writes the decoder graph (``tokens`` ``[N, T, K]`` in, ``audio`` out); returns the path."""
    model = model.eval()
    k = model.codebooks.shape[0]
    example = torch.randint(0, model.vocab_size, (2, 10, k))
    dims = {
        0: torch.export.Dim("batch", min=1, max=MAX_ROWS),
        1: torch.export.Dim("frames", min=1, max=10_000_000),
    }
    if k >= 2:  # a dynamic size needs an example of at least 2
        dims[2] = torch.export.Dim("codebooks", min=1, max=k)
    with torch.no_grad(), export_layout():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=["tokens"],
            output_names=["audio"],
            dynamic_shapes=(dims,),
        )
    return _save_with_metadata(program.model_proto, path, info)


def segment_rows(wav: np.ndarray, segment_samples: int, context: int):
    """Full routing segments of a mono waveform as encoder rows ``(segments, context)``.

    The first segment has no context; every other one gets the ``context``
    samples before it. A trailing partial segment is left out.

    Example
    -------
    >>> rows = list(segment_rows(np.zeros(50000, np.float32), 16000, 320))
    >>> [(s.shape, c.shape) for s, c in rows]
    [((16000,), (0,)), ((16000,), (320,)), ((16000,), (320,))]
    """
    for start in range(0, len(wav) - segment_samples + 1, segment_samples):
        left = max(0, start - context)
        yield wav[start : start + segment_samples], wav[left:start]


def quantize_encoder(
    fp32_path,
    out_path,
    calibration: Iterable[np.ndarray],
    batch_rows: int = 16,
    max_rows: int = 512,
    percentile: float = 99.9,
) -> Path:
    """Writes an int8 encoder calibrated on ``calibration`` audio; returns its path.

    onnxruntime's static quantization (``quantize_static``, QDQ format, int8
    weights per output channel, uint8 activations with ranges from the
    ``percentile`` of a histogram over the calibration rows) rather than our own
    rounding: it is maintained with the runtime whose kernels execute the result
    and knows which node patterns those kernels fuse. Only the tails'
    convolutions are quantized. The waveform-rate base conv, the mask and the
    switch stay float, so the int8 graph routes every segment exactly as the fp32
    graph does, and the routing itself (``NonZero`` / ``Gather`` /
    ``ScatterND``) and the codebook search are untouched.

    Calibration rows are routed half light, half full (the threshold of each
    batch is its median prediction), so both tails see real activations.

    Arguments
    ---------
    fp32_path : str or Path
        An encoder written by :func:`export_onnx`.
    out_path : str or Path
    calibration : iterable of numpy.ndarray
        Mono float waveforms at the codec's rate, held out from training (at
        least ``2 * batch_rows`` whole segments in all).
    batch_rows : int
        Rows per calibration batch (even).
    max_rows : int
        Calibration rows used at most.
    percentile : float
        Activation range percentile (onnxruntime's ``CalibPercentile``).
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if batch_rows < 2 or batch_rows % 2:
        raise ValueError(f"batch_rows: expected an even number >= 2, got {batch_rows!r}")
    info = read_metadata(fp32_path)
    seg, ctx = info["segment_samples"], info["context_samples"]
    rows = []
    for wav in calibration:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        # the first segment of a recording has no context; keep rows of one shape
        rows.extend(r for r in segment_rows(wav, seg, ctx) if len(r[1]) == ctx)
        if len(rows) >= max_rows:
            break
    batches = len(rows[:max_rows]) // batch_rows
    if batches < 2:
        raise ValueError(
            f"calibration: {len(rows)} whole segments with context, need at least "
            f"{2 * batch_rows} (give more held-out audio)"
        )
    session = onnxruntime.InferenceSession(str(fp32_path), _session_options(1))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.index = 0

        def get_next(self):
            if self.index >= batches:
                return None
            batch = rows[self.index * batch_rows : (self.index + 1) * batch_rows]
            self.index += 1
            feed = {
                "segments": np.stack([s for s, _ in batch])[:, None],
                "context": np.stack([c for _, c in batch])[:, None],
                "threshold": np.array(np.inf, np.float32),
                "lengths": np.ones(len(batch), np.float32),
            }
            predicted = np.sort(session.run(["predicted"], feed)[0])
            middle = len(predicted) // 2
            split = (predicted[middle - 1] + predicted[middle]) / 2
            feed["threshold"] = np.array(split, np.float32)
            return feed

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference and graph clean-up, as onnxruntime recommends before quantizing
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        tails = [
            node.name
            for node in model.graph.node
            if node.op_type == "Conv"
            and any(".dsl.full_tail." in i or ".dsl.light_tail." in i for i in node.input)
        ]
        quantized = Path(tmp) / "int8.onnx"
        with contextlib.redirect_stdout(sys.stderr):  # its progress notes are not results
            quantize_static(
                str(prepared),
                str(quantized),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_quantize=tails,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": percentile},
            )
        info = dict(
            info,
            precision="int8",
            calibration_rows=batches * batch_rows,
            calibration_percentile=percentile,
        )
        return _save_with_metadata(onnx.load(str(quantized)), out_path, info)


def _session_options(threads: Optional[int]):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
    options.log_severity_level = 3  # unused-initializer notes after graph optimisation
    return options


sha256_of = (
    sha256_file  # the old name of the one file checksum (speechbrain_dsl.inference.manifest)
)


def export_folder(
    codec,
    folder,
    weights_sha256: Optional[str] = None,
    calibration: Optional[Iterable[np.ndarray]] = None,
) -> Sequence[Path]:
    """Writes ``encoder.onnx`` and ``decoder.onnx`` (and ``encoder.int8.onnx``) to ``folder``.

    The files written are added to ``folder/SHA256SUMS`` (its other entries kept),
    so a packaged folder given as ``folder`` loads with them.

    Arguments
    ---------
    codec : DSLCodec
        With a DSL encoder (a codec without one raises a ValueError).
    folder : str or Path
    weights_sha256 : str, optional
        Checksum of the weights file the graphs belong to (see :func:`metadata`).
    calibration : iterable of numpy.ndarray, optional
        Held-out audio for the int8 encoder (no int8 file without it).

    Returns
    -------
    list of Path
        The files written, listed in ``folder/SHA256SUMS`` (:func:`add_to_manifest`).
    """
    folder = Path(folder)
    codec = codec.eval()
    written = [
        export_onnx(
            ExportableEncoder(codec),
            folder / ENCODER_FILE,
            metadata(codec, "encoder", weights_sha256),
        ),
        export_decoder_onnx(
            ExportableDecoder(codec),
            folder / DECODER_FILE,
            metadata(codec, "decoder", weights_sha256),
        ),
    ]
    if calibration is not None:
        written.append(quantize_encoder(written[0], folder / ENCODER_INT8_FILE, calibration))
    add_to_manifest(folder, [path.name for path in written])
    return written


def add_to_manifest(folder, names: Iterable[str]) -> Path:
    """Lists ``names`` (files in ``folder``) in ``folder/SHA256SUMS`` with their sha256 now.

    The manifest's other entries are kept as they are (not hashed again) and a
    folder without one gets one. Call it after the files are in place: the
    manifest is written atomically, so a reader finds the old entries or the new.
    Returns the manifest's path.

    Example
    -------
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.ckpt").write_bytes(b"abc")
    >>> _ = (folder / "SHA256SUMS").write_text(f"{sha256_file(folder / 'a.ckpt')}  a.ckpt\\n")
    >>> _ = (folder / "encoder.onnx").write_bytes(b"graph")
    >>> print(add_to_manifest(folder, ["encoder.onnx"]).read_text(), end="")  # doctest: +ELLIPSIS
    ba7816bf...  a.ckpt
    ...  encoder.onnx
    >>> verify_manifest(folder)
    True
    """
    folder = Path(folder)
    sums = read_manifest(folder) or {}
    sums.update({name: sha256_file(folder / name) for name in names})
    return write_text(folder / MANIFEST, manifest_text(sums))


def graph_problem(folder, name: str, expected: Dict) -> Optional[str]:
    """Why ``folder/name`` is not a usable exported graph; None when it is.

    Usable means: listed in ``folder/SHA256SUMS`` with the file's sha256 (a
    tampered, truncated or unlisted file is not), and its :func:`metadata`
    equal to ``expected``: ``weights_sha256`` first (a graph of other weights is
    not used), then every other entry (another model definition, threshold or
    graph format).

    Example
    -------
    >>> folder = Path(tempfile.mkdtemp())
    >>> graph_problem(folder, ENCODER_FILE, {})  # doctest: +ELLIPSIS
    '.../encoder.onnx does not exist'
    """
    folder = Path(folder)
    path = folder / name
    if not path.is_file():
        return f"{path} does not exist"
    try:
        verify_manifest(folder, [name], require=True)
        info = read_metadata(path)
    except CheckpointError as err:
        return str(err)
    except Exception as err:  # any file onnx cannot parse or that has no metadata
        return f"{path} cannot be read as an exported graph ({type(err).__name__}: {err})"
    expected = json.loads(json.dumps(expected))  # as stored: lists, not tuples
    if info.get("weights_sha256") != expected.get("weights_sha256"):
        return (
            f"{path} was exported from other weights (weights_sha256 "
            f"{info.get('weights_sha256')}, expected {expected.get('weights_sha256')})"
        )
    if info != expected:
        differ = sorted(k for k in set(info) | set(expected) if info.get(k) != expected.get(k))
        return f"{path} was exported with other settings ({', '.join(differ)} differ)"
    return None


def cached_encoder(codec, folder, weights_sha256: str) -> Path:
    """``folder/encoder.onnx`` of ``codec``: the cached graph when usable, else exported there.

    The cache is what a packaged folder without an encoder graph runs in
    onnxruntime with (see :meth:`DSLCodecInterface.from_hparams
    <speechbrain_dsl.inference.interface.DSLCodecInterface.from_hparams>`).
    The graph is reused when :func:`graph_problem` finds nothing wrong with it,
    checked against :func:`metadata` of ``codec`` and ``weights_sha256`` (the
    sha256 of the ``codec.ckpt`` it was loaded from). Anything else (tampered,
    truncated, unlisted, of other weights or settings) is exported again with a
    warning naming the file and what is wrong.

    Writing: the graph goes to a temporary name and is renamed, then
    ``folder/SHA256SUMS`` (the cache's own, listing the graph) is written the
    same way, so a crash leaves the old state or the new one and a reader never
    sees half a file. Processes loading at once take turns on an advisory lock
    (``folder/.lock``, where the OS has ``fcntl``); without it they write the
    same bytes (the export is deterministic). A ``.gitignore`` keeps the cache
    out of git when ``folder`` lies in a checkout.

    Arguments
    ---------
    codec : DSLCodec
        With a DSL encoder routing fixed-size segments.
    folder : str or Path
        The cache folder (created if needed).
    weights_sha256 : str

    Raises
    ------
    OSError
        When ``folder`` cannot be created or written.
    """
    folder = Path(folder)
    path = folder / ENCODER_FILE
    expected = metadata(codec, "encoder", weights_sha256)
    if graph_problem(folder, ENCODER_FILE, expected) is None:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        problem = graph_problem(folder, ENCODER_FILE, expected)  # another process may have won
        if problem is None:
            return path
        if path.exists():
            logger.warning(f"{problem}: exporting it again")
        else:
            logger.info(f"exporting the encoder graph to {path} (once: later loads reuse it)")
        if not (folder / ".gitignore").exists():
            write_text(folder / ".gitignore", "# graphs exported on first load: a cache\n*\n")
        export_onnx(ExportableEncoder(codec.eval()), path, expected)
        write_manifest(folder, [ENCODER_FILE])  # the cache lists its graph only
    return path


@contextlib.contextmanager
def _exclusive(folder: Path):
    """Holds an advisory lock on ``folder/.lock`` while the block runs (best effort)."""
    if fcntl is None:
        yield
        return
    with open(folder / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: atomic renames still keep files whole
            pass
        yield  # closing the file releases the lock


def read_audio_folder(folder, sample_rate: int, max_seconds: float = 600.0):
    """Mono waveforms at ``sample_rate`` of the audio files under ``folder`` (sorted), up to
    ``max_seconds`` in all: calibration audio for :func:`quantize_encoder`."""
    import soundfile as sf
    import torchaudio

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise ValueError(f"calibration: no .wav or .flac files under {folder}")
    total = 0.0
    for path in files:
        try:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except RuntimeError as err:
            raise ValueError(f"cannot read audio file {path}: {err}") from None
        wav = torch.from_numpy(audio.mean(1))
        if rate != sample_rate:
            wav = torchaudio.functional.resample(wav, rate, sample_rate)
        yield wav.numpy()
        total += wav.numel() / sample_rate
        if total >= max_seconds:
            return


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.inference.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", help="packaged codec folder (speechbrain_dsl.inference.package)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="one encoder file (.onnx, or .pt2 with --format torch)")
    target.add_argument(
        "--folder",
        help=f"write {ENCODER_FILE} and {DECODER_FILE} (and "
        f"{ENCODER_INT8_FILE} with --calibration) here and list them in its {MANIFEST} "
        "(the packaged folder itself: it then loads with its graphs)",
    )
    parser.add_argument("--format", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--calibration", help="folder of held-out audio for the int8 encoder")
    args = parser.parse_args(argv)
    try:
        # the packaged weights and model definition, checked against the folder's SHA256SUMS
        codec = load_codec(None, args.model)
        weights = Path(args.model) / "codec.ckpt"
        sha = sha256_file(weights) if weights.is_file() else None
        if args.folder is not None:
            calibration = (
                None
                if args.calibration is None
                else read_audio_folder(args.calibration, codec.sample_rate)
            )
            written = export_folder(codec, args.folder, sha, calibration)
            for path in written:
                print(f"wrote {path}")
            print(f"listed {', '.join(p.name for p in written)} in {Path(args.folder) / MANIFEST}")
            return 0
        model = ExportableEncoder(codec).eval()
        if args.format == "onnx":
            path = export_onnx(model, args.out, metadata(codec, "encoder", sha))
        else:
            path = export_torch(model, args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (threshold input; the packaged model's is {codec.threshold:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
