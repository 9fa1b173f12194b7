"""ONNX and ``torch.export`` of the mixed-mode encoder (and tokens), routing included.

The exported graph takes a batch of routing segments (each row one segment, as a
streaming client or a batch of 1-s clips provides them) and the switch threshold
as a graph input. Routing is index-based: the switch's predictions select rows
(``nonzero``), each tail runs on its rows only (``index_select``) and results are
put back (``index_copy``), so the full tail is not computed for light segments in
onnxruntime either. Tokens come from nearest-codeword residual quantization over
the exported codebooks, as the RVQ does at inference.

    python -m speechbrain_dsl.export <packaged folder> --out encoder.onnx [--format onnx|torch]

The number of segments is dynamic; each segment has ``segment_frames * hop``
samples (1 s at 16 kHz by default).
"""

import argparse
import sys
from pathlib import Path

import torch
from torch import nn


class ExportableEncoder(nn.Module):
    """Mixed-mode DSL encoder + RVQ tokens for a batch of routing segments.

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
    """

    def __init__(self, codec):
        super().__init__()
        if not codec.has_dsl:
            raise ValueError("ExportableEncoder needs a codec with a DSL encoder")
        self.encoder = codec.encoder.eval()
        self.input_scale = codec.input_scale
        self.register_buffer("codebooks", codec.vocabulary.detach().clone())
        self.frames = codec.encoder.dsl.segment_frames
        self.segment_samples = self.frames * codec.hop_length

    def forward(self, segments, threshold):
        """Embeddings ``[N, D, T]``, tokens ``[N, T, K]`` and predictions ``[N]``.

        Arguments
        ---------
        segments : torch.Tensor
            ``[N, 1, segment_samples]`` waveforms.
        threshold : torch.Tensor
            Scalar; segments predicted below it take the light tail.
        """
        dsl = self.encoder.dsl
        masked = dsl.mask(self.encoder.base(segments * self.input_scale))
        predicted = dsl.switch(masked, masked.shape[-1])[:, 0]
        light = predicted < threshold
        light_rows = light.nonzero().flatten()
        full_rows = (~light).nonzero().flatten()
        emb = torch.zeros(segments.shape[0], self.codebooks.shape[-1], self.frames,
                          dtype=segments.dtype, device=segments.device)
        emb = emb.index_copy(0, light_rows, dsl.light_tail(masked.index_select(0, light_rows)))
        emb = emb.index_copy(0, full_rows, dsl.full_tail(masked.index_select(0, full_rows)))
        return emb, self.quantize(emb.transpose(1, 2)), predicted

    def quantize(self, emb):
        """Residual nearest-codeword tokens ``[N, T, K]`` of ``emb`` ``[N, T, D]``."""
        residual, tokens = emb, []
        for codebook in self.codebooks:
            distance = (
                residual.square().sum(-1, keepdim=True)
                - 2 * residual @ codebook.T
                + codebook.square().sum(-1)
            )
            index = distance.argmin(-1)
            tokens.append(index)
            residual = residual - codebook[index]
        return torch.stack(tokens, dim=-1)


def example_inputs(model, segments=4):
    """Inputs to trace with: ``segments`` random segments and a threshold."""
    return torch.randn(segments, 1, model.segment_samples) * 0.1, torch.tensor(0.5)


def export_onnx(model, path):
    """Writes an ONNX file with a dynamic number of segments; returns the path."""
    segments = torch.export.Dim("segments", min=1, max=100_000)
    program = torch.onnx.export(
        model, example_inputs(model), dynamo=True,
        input_names=["segments", "threshold"],
        output_names=["embeddings", "tokens", "predicted"],
        dynamic_shapes=({0: segments}, None),
    )
    program.save(str(path))
    return Path(path)


def export_torch(model, path):
    """Writes a ``torch.export`` program (``.pt2``); returns the path."""
    segments = torch.export.Dim("segments", min=1, max=100_000)
    program = torch.export.export(model, example_inputs(model), dynamic_shapes=({0: segments}, None))
    torch.export.save(program, str(path))
    return Path(path)


def main(argv=None):
    """Command-line entry point."""
    from speechbrain_dsl.inference.codec import DSLCodecInterface

    parser = argparse.ArgumentParser(prog="python -m speechbrain_dsl.export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="packaged codec folder (speechbrain_dsl.inference.package)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", choices=("onnx", "torch"), default="onnx")
    args = parser.parse_args(argv)
    try:
        interface = DSLCodecInterface.from_hparams(source=args.model, savedir=args.model)
        model = ExportableEncoder(interface.codec).eval()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with torch.no_grad():
        path = (export_onnx if args.format == "onnx" else export_torch)(model, args.out)
    print(f"wrote {path} (threshold input; the packaged model's is {interface.threshold:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
