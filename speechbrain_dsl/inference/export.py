"""Exporting a DSL codec's graphs into folders: a deployment, or the on-load graph cache.

Three files make a deployment that runs with onnxruntime and numpy only
(:class:`speechbrain_dsl.inference.runtime.OnnxCodec`):

- ``encoder.onnx``: base, mask, switch, the two tails with the routing inside, and
  residual nearest-codeword tokens (:class:`~speechbrain_dsl.inference.graphs.ExportableEncoder`);
- ``decoder.onnx``: tokens to waveform, either decoder type, the Vocos head's
  inverse FFT written as matmuls (:class:`~speechbrain_dsl.inference.graphs.ExportableDecoder`);
- ``encoder.int8.onnx``: the encoder with the full tail's last blocks quantized to int8
  by onnxruntime's static quantization, calibrated on held-out audio
  (:func:`~speechbrain_dsl.inference.quantize.quantize_encoder`).

The graphs are built in :mod:`speechbrain_dsl.inference.graphs` (where the
encoder's rows are described), quantized in :mod:`speechbrain_dsl.inference.quantize`
and cached in :mod:`speechbrain_dsl.inference.graph_cache`; their names are
re-exported here. :func:`export_folder` writes a deployment:

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
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from speechbrain_dsl.inference.graph_cache import (
    GRAPH_CACHE,
    add_to_manifest,
    cached_graph,
    graph_problem,
)
from speechbrain_dsl.inference.graphs import (
    MAX_ROWS,
    ExportableDecoder,
    ExportableEncoder,
    MatmulISTFT,
    context_samples,
    example_inputs,
    export_decoder_onnx,
    export_onnx,
    export_torch,
    metadata,
    read_metadata,
    torch_row_encoder,
    zero_tokens,
)
from speechbrain_dsl.inference.loading import load_codec
from speechbrain_dsl.inference.manifest import MANIFEST, sha256_file
from speechbrain_dsl.inference.quantize import quantize_encoder, segment_rows
from speechbrain_dsl.inference.runtime import (
    DECODER_FILE,
    ENCODER_FILE,
    ENCODER_INT8_FILE,
    FORMAT_VERSION,
    METADATA_KEY,
    ONNX_FILES,
)

__all__ = [
    "DECODER_FILE",
    "ENCODER_FILE",
    "ENCODER_INT8_FILE",
    "FORMAT_VERSION",
    "GRAPH_CACHE",
    "MAX_ROWS",
    "METADATA_KEY",
    "ONNX_FILES",
    "ExportableDecoder",
    "ExportableEncoder",
    "MatmulISTFT",
    "add_to_manifest",
    "cached_encoder",
    "context_samples",
    "example_inputs",
    "export_decoder_onnx",
    "export_folder",
    "export_onnx",
    "export_torch",
    "graph_problem",
    "main",
    "metadata",
    "quantize_encoder",
    "read_audio_folder",
    "read_metadata",
    "segment_rows",
    "sha256_of",
    "torch_row_encoder",
    "zero_tokens",
]

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


def cached_encoder(codec, folder, weights_sha256: str) -> Path:
    """``folder/encoder.onnx`` of ``codec``: the cached graph when usable, else exported there.

    The cache is what a packaged folder without an encoder graph runs in
    onnxruntime with (see :meth:`DSLCodecInterface.from_hparams
    <speechbrain_dsl.inference.interface.DSLCodecInterface.from_hparams>`).
    The graph is reused when :func:`graph_problem` finds nothing wrong with it,
    checked against :func:`metadata` of ``codec`` and ``weights_sha256`` (the
    sha256 of the ``codec.ckpt`` it was loaded from). Anything else (tampered,
    truncated, unlisted, of other weights or settings) is exported again with a
    warning naming the file and what is wrong. Writing is atomic, listed in the
    cache's own ``SHA256SUMS`` and locked against processes loading at once
    (:func:`~speechbrain_dsl.inference.graph_cache.cached_graph`).

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
    expected = metadata(codec, "encoder", weights_sha256)

    def write(path):
        export_onnx(ExportableEncoder(codec.eval()), path, expected)

    return cached_graph(folder, ENCODER_FILE, expected, write)


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
