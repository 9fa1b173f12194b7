"""Which engine a loaded package runs on, and the onnxruntime graphs it gets.

:meth:`DSLCodecInterface.from_hparams
<speechbrain_dsl.inference.interface.DSLCodecInterface.from_hparams>` (and so
``load_tokenizer`` and ``DACStyleCodec``) asks :func:`choose_engine` for an engine
name and, for onnxruntime, an :class:`~speechbrain_dsl.inference.runtime.OnnxCodec`:

- the folder's own graphs (:func:`folder_runtime`): ``encoder.onnx`` (or
  ``encoder.int8.onnx``) and ``decoder.onnx`` when its ``SHA256SUMS`` lists them,
  refused when exported from other weights than its ``codec.ckpt``;
- else the graph cache's (:func:`cached_runtime`): an encoder graph exported on
  first load into ``<savedir>/onnx-cache/``, or into a temporary folder when that
  is not writable (:func:`~speechbrain_dsl.inference.export.cached_encoder`);
- else PyTorch, with a warning naming why, unless onnxruntime was asked for.

onnxruntime is the default for a codec that exports (:func:`exportable`: a DSL
routing fixed-size segments) loaded from a local folder on CPU.
"""

import logging
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from speechbrain_dsl.inference import runtime as rt
from speechbrain_dsl.inference.export import GRAPH_CACHE, cached_encoder
from speechbrain_dsl.inference.manifest import MANIFEST, read_manifest, sha256_file
from speechbrain_dsl.inference.streaming import ENGINES
from speechbrain_dsl.lobes.codec import DSLCodec

__all__ = ["cached_runtime", "choose_engine", "exportable", "folder_runtime"]

logger = logging.getLogger(__name__)


def choose_engine(
    codec: DSLCodec,
    device: Union[str, torch.device],
    folder: Optional[Path],
    engine: Optional[str],
    precision: str,
    savedir: Optional[str] = None,
) -> Tuple[str, Optional[rt.OnnxCodec]]:
    """The engine a loaded package runs on and, for onnxruntime, its graphs.

    Loads the graphs of ``folder`` (or of the graph cache) when the engine is
    (or defaults to) onnxruntime; see :meth:`DSLCodecInterface.from_hparams
    <speechbrain_dsl.inference.interface.DSLCodecInterface.from_hparams>`.

    Arguments
    ---------
    codec : DSLCodec
        The loaded model (exported to the graph cache when needed).
    device : str or torch.device
        Where the model runs: onnxruntime is the default on CPU only.
    folder : Path, optional
        The local packaged folder (None: loaded from elsewhere, torch only).
    engine : str, optional
        ``torch``, ``onnxruntime`` or None for the default.
    precision : str
        ``fp32`` or ``int8`` (implies onnxruntime).
    savedir : str, optional
        Where the graph cache lives (the folder itself when None).

    Returns
    -------
    (str, OnnxCodec or None)
        The engine's name and the runtime (None for ``torch``).
    """
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES} or None, got {engine!r}")
    if precision not in rt.PRECISIONS:
        raise ValueError(
            f"onnx_precision: expected one of {sorted(rt.PRECISIONS)}, got {precision!r}"
        )
    if precision == "int8":
        if engine == "torch":
            raise ValueError("onnx_precision: int8 runs in onnxruntime, not with engine='torch'")
        engine = "onnxruntime"
    requested = engine
    if engine is None:
        on_cpu = str(device).startswith("cpu")
        engine = "onnxruntime" if folder is not None and on_cpu and exportable(codec) else "torch"
    runtime = None
    if engine == "onnxruntime":
        if folder is None:
            raise ValueError(
                "engine: onnxruntime needs a local packaged folder (holding "
                f"{rt.PRECISIONS[precision]}, or a codec to export it from)"
            )
        runtime = folder_runtime(folder, precision)
        if runtime is None:
            try:
                runtime = cached_runtime(codec, folder, savedir)
            except Exception as err:  # the default must load a working package anyway
                if requested is not None:
                    raise ValueError(
                        f"engine: onnxruntime: {folder} has no {rt.ENCODER_FILE} and none "
                        f"could be exported ({type(err).__name__}: {err})"
                    ) from err
                logger.warning(
                    f"{folder}: running in PyTorch, not onnxruntime: no encoder graph "
                    f"could be exported ({type(err).__name__}: {err})"
                )
                engine = "torch"
    return engine, runtime


def exportable(codec: DSLCodec) -> bool:
    """True when the codec exports to an encoder graph (a DSL routing fixed-size segments)."""
    return bool(codec.has_dsl and codec.encoder.dsl.segment_frames)


def folder_runtime(folder: Path, precision: str) -> Optional[rt.OnnxCodec]:
    """The folder's own graphs (``encoder.onnx`` listed in its ``SHA256SUMS``, or int8).

    None when an fp32 encoder graph is missing or not listed (a present but
    unlisted graph is named in a warning and not used). ``decoder.onnx`` is
    used when listed too. A graph of other weights than ``codec.ckpt`` is a
    ValueError naming it (the package contradicts itself).
    """
    name = rt.PRECISIONS[precision]
    listed = read_manifest(folder)  # checked against the files by load_packaged

    def vouched(graph: str) -> bool:
        return (folder / graph).is_file() and (listed is None or graph in listed)

    for graph in (name, rt.DECODER_FILE):
        if (folder / graph).is_file() and not vouched(graph):
            logger.warning(
                f"{folder / graph} is not listed in {folder / MANIFEST}: not used (python -m "
                f"speechbrain_dsl.inference.export {folder} --folder {folder} lists the "
                f"graphs it writes)"
            )
    if precision == "fp32" and not vouched(name):
        return None  # the graph cache's
    runtime = rt.OnnxCodec.from_folder(
        folder, precision, threads=torch.get_num_threads(), decoder=vouched(rt.DECODER_FILE)
    )
    if runtime.info.get("weights_sha256") != _sha256(folder / "codec.ckpt"):
        raise ValueError(
            f"{folder / name} was exported from other weights than "
            f"{folder / 'codec.ckpt'} (package the folder again)"
        )
    return runtime


def cached_runtime(codec: DSLCodec, folder: Path, savedir: Optional[str]) -> rt.OnnxCodec:
    """An encoder graph from ``<savedir>/onnx-cache/`` (exported there on first load).

    An unwritable cache folder exports to a temporary folder instead, with a
    warning. Decoding runs in PyTorch (no decoder graph is exported).
    """
    if not exportable(codec):
        raise ValueError(
            "only a codec with a DSL encoder routing fixed-size segments exports a graph"
        )
    weights = _sha256(folder / "codec.ckpt")
    if weights is None:
        raise ValueError(f"{folder} has no codec.ckpt to check an exported graph against")
    cache = Path(folder if savedir is None else savedir) / GRAPH_CACHE
    try:
        path = cached_encoder(codec, cache, weights)
    except OSError as err:
        fallback = Path(tempfile.mkdtemp(prefix="dsl-onnx-"))
        logger.warning(
            f"cannot write the graph cache {cache} ({err}): exporting the encoder graph "
            f"to {fallback} for this process instead"
        )
        path = cached_encoder(codec, fallback, weights)
    return rt.OnnxCodec(path, threads=torch.get_num_threads())


def _sha256(path: Union[str, Path]) -> Optional[str]:
    return sha256_file(path) if Path(path).is_file() else None
