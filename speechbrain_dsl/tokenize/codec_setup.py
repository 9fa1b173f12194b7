"""The codec a tokenize rank encodes with: its device, threads, engine and exported graph."""

import logging
import os
from pathlib import Path

import torch

from speechbrain_dsl.data.audio import show_path
from speechbrain_dsl.inference.export import ExportableEncoder, export_onnx, metadata, read_metadata
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.inference.runtime import ENCODER_FILE
from speechbrain_dsl.tokenize.config import TokenizeConfig
from speechbrain_dsl.tokenize.process_group import Group

__all__ = ["choose_engine", "default_threads", "export_encoder", "load_interface", "resolve_device"]
logger = logging.getLogger(__name__)


def resolve_device(device: str, local_rank: int) -> str:
    """``cpu``, or the CUDA device of this rank (``cuda`` -> ``cuda:LOCAL_RANK``).

    Example
    -------
    >>> resolve_device("cpu", 3)
    'cpu'
    >>> resolve_device("tpu", 0)
    Traceback (most recent call last):
    ...
    ValueError: --device: expected cpu, cuda or cuda:N, got 'tpu'
    """
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: CUDA is not available on this machine "
            f"(torch.cuda.is_available() is False); use --device cpu"
        )
    index = local_rank if device == "cuda" else int(device[5:])
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device}: this rank needs cuda:{index}, but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s) (one rank per GPU)"
        )
    return f"cuda:{index}"


def default_threads(config: TokenizeConfig, group: Group) -> int:
    """Threads of this rank: ``--threads``, else ``OMP_NUM_THREADS``, else a share of the cores."""
    if config.threads is not None:
        return config.threads
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // group.local_world)


def load_interface(config: TokenizeConfig, device: str) -> DSLCodecInterface:
    """The packaged codec of ``config.model`` on ``device`` (``ValueError`` if it is no package)."""
    model = Path(config.model)
    if not model.is_dir():
        raise ValueError(f"--model: {show_path(model)} is not a packaged codec folder")
    # onnxruntime is attached below when the package holds no graphs
    engine = "torch" if config.engine == "torch" or device != "cpu" else None
    return DSLCodecInterface.from_hparams(
        source=str(model),
        savedir=str(model),
        num_codebooks=config.num_codebooks,
        engine=engine,
        run_opts={"device": device},
    )


def choose_engine(config: TokenizeConfig, has_dsl: bool, device: str) -> str:
    """``--engine`` checked against the device and the model, or the default engine."""
    if config.engine is None:
        return "onnxruntime" if has_dsl and device == "cpu" else "torch"
    if config.engine == "onnxruntime":
        if device != "cpu":
            raise ValueError(
                f"--engine onnxruntime runs on the CPU here; with --device {config.device} "
                f"use --engine torch"
            )
        if not has_dsl:
            raise ValueError(
                f"--engine onnxruntime: {show_path(config.model)} holds a codec without DSL, "
                f"which has no exported graph; use --engine torch"
            )
    return config.engine


def export_encoder(codec, folder: Path, weights_sha256: str) -> Path:
    """``folder/encoder.onnx`` of ``codec``, exported unless a graph of these weights is there."""
    path = folder / ENCODER_FILE
    if path.is_file():
        try:
            if read_metadata(path).get("weights_sha256") == weights_sha256:
                return path
        except ValueError:
            pass  # an older or foreign graph: export again
    logger.info(f"exporting the encoder graph to {path} (once per output folder)")
    export_onnx(ExportableEncoder(codec).eval(), path, metadata(codec, "encoder", weights_sha256))
    return path
