"""Turns a recipe's checkpoint into a folder that ``DSLCodecInterface.from_hparams`` loads.

    python -m speechbrain_dsl.inference.package <recipe save folder> --out <folder> \
        [--model hparams/soundstream_dsl.yaml]

The folder gets ``codec.ckpt`` (weights, including the calibrated threshold) of the
checkpoint with the lowest validation mel distance, ``hyperparams.yaml``: the
model definition plus ``modules`` and a ``pretrainer``, for a DSL codec the
exported graphs ``encoder.onnx`` and ``decoder.onnx`` that the interface runs
in onnxruntime by default (``--calibration DIR`` adds ``encoder.int8.onnx``
calibrated on the held-out audio of ``DIR``; ``--no-onnx`` leaves them out), and
``SHA256SUMS``, the checksums of all of them, checked at every load
(:func:`load_packaged`). Files are written to temporary names and renamed.

    python -m speechbrain_dsl.inference.package --manifest-only <packaged folder>

checks that a packaged folder loads strictly and (re)writes its ``SHA256SUMS``.
"""

import argparse
import logging
import shutil
import sys
from pathlib import Path

import torch

from speechbrain_dsl.atomic import atomic_path
from speechbrain_dsl.training.checkpoints import (
    MANIFEST,
    find_codec_checkpoint,
    load_codec,
    load_state_strict,
    load_weights,
    sha256_file,
    verify_manifest,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
INTERFACE_SECTION = """
# --- added by speechbrain_dsl.inference.package ------------------------------
modules:
    codec: !ref <codec>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        codec: !ref <codec>
"""
PACKAGED_FILES = ("codec.ckpt", "hyperparams.yaml")
logger = logging.getLogger(__name__)


def package(save_folder, out, model_yaml=ROOT / "hparams" / "soundstream_dsl.yaml",
            onnx: bool = False, calibration=None) -> Path:
    """Writes ``hyperparams.yaml``, ``codec.ckpt`` and ``SHA256SUMS`` to ``out``; returns ``out``.

    The checkpoint must load strictly into the model of ``model_yaml`` (keys,
    shapes, finite values) and pass its own checkpoint's manifest, else a
    ``ValueError`` names it. With ``onnx`` (the command line's default) a DSL
    codec's ``encoder.onnx`` and ``decoder.onnx`` are exported next to the
    weights (and ``encoder.int8.onnx`` when ``calibration``, a folder of
    held-out audio or an iterable of waveforms, is given); graphs left by
    earlier weights are removed.
    """
    from speechbrain_dsl.inference.export import ONNX_FILES, export_folder, read_audio_folder

    ckpt = find_codec_checkpoint(save_folder)
    codec = load_codec(model_yaml, ckpt)  # fails here, naming the file, if it does not fit
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = Path(model_yaml).read_text()
    for name, write in (
        ("codec.ckpt", lambda tmp: shutil.copyfile(ckpt, tmp)),
        ("hyperparams.yaml", lambda tmp: Path(tmp).write_text(text + INTERFACE_SECTION)),
    ):
        with atomic_path(out / name) as tmp:
            write(tmp)
    for name in ONNX_FILES:  # graphs of earlier weights must not outlive them
        (out / name).unlink(missing_ok=True)
    names = list(PACKAGED_FILES)
    if onnx and codec.has_dsl:
        if isinstance(calibration, (str, Path)):
            calibration = read_audio_folder(calibration, codec.sample_rate)
        written = export_folder(codec, out, sha256_file(out / "codec.ckpt"), calibration)
        names += [path.name for path in written]
    elif onnx:
        logger.warning(f"{out}: no ONNX graphs (only codecs with a DSL encoder export)")
    write_manifest(out, names)
    return out


def load_packaged(cls, source, hparams_file="hyperparams.yaml", overrides=None,
                  overrides_must_match=True, savedir=None, download_only=False,
                  local_strategy=None, fetch_config=None, verify=True, **kwargs):
    """A ``Pretrained`` subclass ``cls`` from a local packaged folder, loaded strictly.

    What ``Pretrained.from_hparams`` does for a local folder, except that the
    folder's ``SHA256SUMS`` is checked first (a folder without one loads with a
    warning) and every loadable of the ``pretrainer`` is loaded with
    :func:`~speechbrain_dsl.training.checkpoints.load_state_strict`: a corrupt,
    foreign, empty or non-finite ``codec.ckpt`` is a ``ValueError`` naming it
    instead of a model with random weights. Nothing is copied or linked
    (``savedir`` is only recorded in the hparams; ``local_strategy`` and
    ``fetch_config`` do not apply); other ``kwargs`` (``run_opts``,
    ``freeze_params``) go to ``cls``.
    """
    from hyperpyyaml import load_hyperpyyaml

    folder = Path(source)
    hparams_path = folder / hparams_file
    if not hparams_path.is_file():
        raise ValueError(f"packaged codec folder {folder} is missing {hparams_file}")
    if verify and not verify_manifest(folder):
        logger.warning(
            f"{folder} has no {MANIFEST} checksum manifest: loaded without an integrity check "
            f"(write one with python -m speechbrain_dsl.inference.package --manifest-only "
            f"{folder})")
    if download_only:
        return None
    try:
        with open(hparams_path, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides or {}, overrides_must_match)
    except Exception as err:  # YAML syntax, a missing class, a bad override
        raise ValueError(f"cannot build the model of {hparams_path}: {type(err).__name__}: "
                         f"{err}") from None
    pretrainer = hparams.get("pretrainer") if isinstance(hparams, dict) else None
    if pretrainer is None or "modules" not in hparams:
        raise ValueError(f"{hparams_path} defines no 'modules' and 'pretrainer'")
    hparams["savedir"] = savedir
    for name, obj in pretrainer.loadables.items():
        path = Path(pretrainer.paths.get(name, f"{name}.ckpt"))
        path = path if path.is_absolute() else folder / path
        if not isinstance(obj, torch.nn.Module):
            raise ValueError(f"{hparams_path}: loadable {name!r} is a {type(obj).__name__}, "
                             f"not a torch module")
        load_state_strict(obj, path, verify=verify)
    return cls(hparams["modules"], hparams, **kwargs)


def write_package_manifest(folder) -> Path:
    """Checks that ``folder`` loads strictly, then (re)writes its ``SHA256SUMS``."""
    from speechbrain_dsl.inference.export import ONNX_FILES
    from speechbrain_dsl.inference.interface import DSLCodecInterface

    folder = Path(folder)
    load_packaged(DSLCodecInterface, folder, verify=False)
    graphs = [name for name in ONNX_FILES if (folder / name).is_file()]
    return write_manifest(folder, list(PACKAGED_FILES) + graphs)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m speechbrain_dsl.inference.package",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("save_folder", help="recipe save folder, CKPT+ folder or codec.ckpt "
                                            "(with --manifest-only: a packaged folder)")
    parser.add_argument("--out")
    parser.add_argument("--model", default=str(ROOT / "hparams" / "soundstream_dsl.yaml"))
    parser.add_argument("--manifest-only", action="store_true",
                        help="check that a packaged folder loads and (re)write its SHA256SUMS")
    parser.add_argument("--no-onnx", action="store_true",
                        help="do not export encoder.onnx and decoder.onnx next to the weights")
    parser.add_argument("--calibration", help="folder of held-out audio: also write the int8 "
                                              "encoder (encoder.int8.onnx) calibrated on it")
    args = parser.parse_args(argv)
    if not args.manifest_only and args.out is None:
        parser.error("--out is required (unless --manifest-only)")
    try:
        if args.manifest_only:
            print(f"wrote {write_package_manifest(args.save_folder)}")
            return 0
        out = package(args.save_folder, args.out, args.model, onnx=not args.no_onnx,
                      calibration=args.calibration)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = load_weights(out / "codec.ckpt")
    threshold = state.get("encoder.dsl.calibrated_threshold")
    print(f"packaged {out}" + ("" if threshold is None else f" (threshold {float(threshold):.4f})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
