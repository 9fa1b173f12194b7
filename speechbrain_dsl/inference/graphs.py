"""The exportable encoder and decoder of a DSL codec and the writers of their graphs.

:class:`ExportableEncoder` (base, mask, switch, the two tails with the routing
inside, and residual nearest-codeword tokens) and :class:`ExportableDecoder`
(tokens to waveform, either decoder type, the Vocos head's inverse FFT written
as matmuls by :class:`~speechbrain_dsl.inference.matmul_istft.MatmulISTFT`) are
written to ONNX by :func:`export_onnx` and :func:`export_decoder_onnx` (or to
``torch.export`` by :func:`export_torch`), with :func:`metadata` stored in the
file (:func:`read_metadata` reads it back).
:mod:`speechbrain_dsl.inference.export` puts them in folders.

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
"""

import copy
import json
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_dsl.atomic import atomic_path
from speechbrain_dsl.inference.matmul_istft import MatmulISTFT
from speechbrain_dsl.inference.runtime import FORMAT_VERSION, METADATA_KEY
from speechbrain_dsl.lobes.vocos import VocosDecoder
from speechbrain_dsl.nnet.conv import export_layout
from speechbrain_dsl.nnet.routing import context_frames

MAX_ROWS = 100_000

__all__ = [
    "MAX_ROWS",
    "ExportableDecoder",
    "ExportableEncoder",
    "MatmulISTFT",
    "context_samples",
    "encoder_input_names",
    "example_inputs",
    "export_decoder_onnx",
    "export_onnx",
    "export_torch",
    "metadata",
    "read_metadata",
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

    >>> import math
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
        self.reads_levels = bool(getattr(codec.encoder.dsl.switch, "level_input", False))

    def forward(self, segments, threshold, context=None, lengths=None, levels=None):
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
        levels : torch.Tensor, optional
            ``[N]`` each segment's level relative to its utterance so far
            (:func:`~speechbrain_dsl.inference.rows.segment_levels`); only for a
            switch that reads levels (zero, "at the utterance's level", if None).
        """
        dsl = self.encoder.dsl
        window = segments if context is None else torch.cat([context, segments], dim=-1)
        masked = dsl.mask(self.encoder.base(self.to_network(window)))
        context_frames = 0 if context is None else context.shape[-1] // self.hop
        own = masked[..., context_frames * dsl.hop :]  # the segments' own base features
        if self.reads_levels and levels is None:
            levels = own.new_zeros(own.shape[0])
        levels = levels[:, None] if self.reads_levels else None
        predicted = dsl.switch(own, own.shape[-1], lengths, levels)[:, 0]
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

    def encode_rows(segments, threshold, context, lengths, levels=None):
        with torch.no_grad():
            out = model(
                torch.from_numpy(np.ascontiguousarray(segments, np.float32)),
                torch.tensor(float(threshold)),
                torch.from_numpy(np.ascontiguousarray(context, np.float32)),
                torch.from_numpy(np.ascontiguousarray(lengths, np.float32)),
                None if levels is None else torch.from_numpy(np.asarray(levels, np.float32)),
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
    """Inputs to trace with: ``segments`` random rows, a threshold, context and lengths
    (and levels, for a switch that reads them).

    Sizes 0 and 1 are avoided: ``torch.export`` would specialise the graph to them.
    """
    inputs = (
        torch.randn(segments, 1, model.segment_samples) * 0.1,
        torch.tensor(0.5),
        torch.randn(segments, 1, context_hops * model.hop) * 0.1,
        torch.ones(segments),
    )
    return inputs + ((-torch.rand(segments),) if model.reads_levels else ())


def encoder_input_names(model) -> List[str]:
    """The encoder graph's inputs: ``levels`` only where the switch reads it."""
    names = ["segments", "threshold", "context", "lengths"]
    return names + (["levels"] if model.reads_levels else [])


def _encoder_dynamic_shapes(model):
    rows = torch.export.Dim("segments", min=1, max=MAX_ROWS)
    frames = torch.export.Dim("frames", min=1, max=MAX_ROWS)
    context = torch.export.Dim("context_hops", min=0, max=MAX_ROWS)
    shapes = ({0: rows, 2: model.hop * frames}, None, {0: rows, 2: model.hop * context}, {0: rows})
    return shapes + (({0: rows},) if model.reads_levels else ())


def export_onnx(model: ExportableEncoder, path, info: Optional[Dict] = None) -> Path:
    """Writes the encoder graph (dynamic rows, segment and context lengths); returns the path.

    Inputs ``segments``, ``threshold``, ``context``, ``lengths`` (and ``levels``
    for a switch that reads them); outputs ``embeddings``, ``tokens``, ``predicted``. ``info`` (see :func:`metadata`)
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
            input_names=encoder_input_names(model),
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
        shapes = ({0: rows}, None, {0: rows}, {0: rows}) + (({0: rows},) * model.reads_levels)
        program = torch.export.export(model, inputs, dynamic_shapes=shapes)
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
