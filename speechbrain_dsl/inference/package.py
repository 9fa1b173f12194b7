"""Turns a recipe's checkpoint into a folder that ``DSLCodecInterface.from_hparams`` loads.

    python -m speechbrain_dsl.inference.package <recipe save folder> --out <folder> \
        [--min-key <metric> | --max-key <metric>] [--model <model YAML>]

The folder gets ``codec.ckpt`` (weights, including the calibrated threshold) of the
run's best checkpoint (the one with the lowest ``--min-key`` or highest
``--max-key`` value in its ``CKPT.yaml``; without either, the one the run's
checkpointer records as best, else the latest), ``hyperparams.yaml``: the
model definition plus ``modules`` and a ``pretrainer``, for a DSL codec the
exported graphs ``encoder.onnx`` and ``decoder.onnx`` that the interface runs
in onnxruntime by default (``--calibration DIR`` adds ``encoder.int8.onnx``
calibrated on the held-out audio of ``DIR``; ``--no-onnx`` leaves them out), and
``SHA256SUMS``, the checksums of all of them, checked at every load
(:func:`~speechbrain_dsl.inference.loading.load_packaged`). Files are written to temporary names and renamed.

The model definition is the run's own: the ``codec`` of the ``hyperparams.yaml``
SpeechBrain writes into the recipe's output folder (the parent of the save
folder), see :func:`codec_definition`. ``--model`` names another model YAML
(one that defines ``codec``) instead.

    python -m speechbrain_dsl.inference.package --manifest-only <packaged folder>

checks that a packaged folder loads strictly and (re)writes its ``SHA256SUMS``.
"""

import argparse
import io
import logging
import shutil
import sys
from pathlib import Path
from typing import Optional

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import resolve_references

from speechbrain_dsl.atomic import atomic_path
from speechbrain_dsl.inference.export import ONNX_FILES, export_folder, read_audio_folder
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.inference.loading import (
    AVERAGE_FILE,
    find_codec_checkpoint,
    load_codec,
    load_packaged,
    load_state_strict,
    load_weights,
)
from speechbrain_dsl.inference.manifest import sha256_file, write_manifest

# load_packaged lived here before speechbrain_dsl.inference.loading: importable from here too
__all__ = [
    "INTERFACE_SECTION",
    "PACKAGED_FILES",
    "codec_definition",
    "load_packaged",
    "main",
    "package",
    "run_hyperparams",
    "write_package_manifest",
]

INTERFACE_SECTION = """
# --- added by speechbrain_dsl.inference.package ------------------------------
modules:
    codec: !ref <codec>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        codec: !ref <codec>
"""
PACKAGED_FILES = ("codec.ckpt", "hyperparams.yaml")
RUN_HPARAMS = "hyperparams.yaml"  # what SpeechBrain writes into a recipe's output folder
logger = logging.getLogger(__name__)


def package(
    save_folder,
    out,
    model_yaml=None,
    onnx: bool = False,
    calibration=None,
    min_key: Optional[str] = None,
    max_key: Optional[str] = None,
) -> Path:
    """Writes ``hyperparams.yaml``, ``codec.ckpt`` and ``SHA256SUMS`` to ``out``; returns ``out``.

    Arguments
    ---------
    save_folder : str or Path
        A recipe's save folder, one ``CKPT+...`` folder of it or its
        ``codec.ckpt`` (or a packaged folder, to package it again).
    out : str or Path
        The packaged folder (created if needed).
    model_yaml : str or Path, optional
        A model YAML defining ``codec``, copied as is. Default: the codec
        definition of the run's ``hyperparams.yaml`` (:func:`run_hyperparams`,
        :func:`codec_definition`).
    onnx : bool
        Export a DSL codec's ``encoder.onnx`` and ``decoder.onnx`` next to the
        weights (the command line's default); graphs left by earlier weights
        are removed.
    calibration : str, Path or iterable of waveforms, optional
        Held-out audio (a folder, or waveforms): also write ``encoder.int8.onnx``.
    min_key, max_key : str, optional
        The checkpoint metric to take the best by (see
        :func:`~speechbrain_dsl.inference.loading.find_codec_checkpoint`).

    The checkpoint must load strictly into the model (keys, shapes, finite
    values) and pass its own checkpoint's manifest, else a ``ValueError``
    names it.
    """
    ckpt = find_codec_checkpoint(save_folder, min_key=min_key, max_key=max_key)
    if model_yaml is None:
        source = run_hyperparams(ckpt)
        text = codec_definition(source)
        codec = _build_codec(text, source, ckpt)
    else:
        codec = load_codec(model_yaml, ckpt)  # fails here, naming the file, if it does not fit
        text = Path(model_yaml).read_text()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    averaged = (ckpt.parent / AVERAGE_FILE).is_file()
    for name, write in (
        # a recipe checkpoint with a weight average: the averaged model (the one validated)
        (
            "codec.ckpt",
            (lambda tmp: torch.save(codec.state_dict(), tmp))
            if averaged
            else (lambda tmp: shutil.copyfile(ckpt, tmp)),
        ),
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


def run_hyperparams(checkpoint) -> Path:
    """The ``hyperparams.yaml`` of the run (or packaged folder) ``checkpoint`` comes from.

    ``checkpoint`` is a ``codec.ckpt`` file: in a recipe's ``<output>/<save>/CKPT+...``
    folder the run's file is ``<output>/hyperparams.yaml`` (SpeechBrain writes it
    there); a packaged folder holds its own beside the weights.
    """
    checkpoint = Path(checkpoint)
    folder = checkpoint.parent
    if folder.name.startswith("CKPT"):
        save_folder = folder.parent
        path = save_folder.parent / RUN_HPARAMS
        if not path.is_file():
            raise ValueError(
                f"{save_folder} has no {RUN_HPARAMS} beside it ({path} not found; SpeechBrain "
                f"writes it into the recipe's output folder): name the model definition with "
                f"model_yaml (--model)"
            )
        return path
    if (folder / RUN_HPARAMS).is_file():
        return folder / RUN_HPARAMS
    raise ValueError(
        f"{checkpoint} is neither in a recipe's CKPT+ folder nor in a packaged folder: "
        f"name the model definition with model_yaml (--model)"
    )


def codec_definition(hparams_file) -> str:
    """The YAML text that defines ``codec`` in a run's ``hparams_file``, on its own.

    SpeechBrain's ``hyperparams.yaml`` holds the whole run (data, losses,
    checkpointer...) with its references resolved: ``!ref`` as YAML aliases,
    ``!include`` inlined. When the run's ``codec`` is the ``codec`` entry of
    another top-level entry (a recipe's ``model: !include:<model YAML>`` and
    ``codec: !ref <model[codec]>``), that entry is the definition: the
    included model file with the run's overrides. Otherwise the definition is
    ``codec`` and all it references. Nothing is built.

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp()) / "hyperparams.yaml"
    >>> _ = run.write_text(
    ...     "lr: 0.1\\n"
    ...     "model:\\n"
    ...     "  width: &w 4\\n"
    ...     "  codec: &c !new:torch.nn.Linear\\n"
    ...     "    in_features: *w\\n"
    ...     "    out_features: 2\\n"
    ...     "codec: *c\\n"
    ...     "checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer\\n"
    ...     "  checkpoints_dir: save\\n"
    ...     "  recoverables: {codec: *c}\\n")
    >>> print(codec_definition(run))
    # the `model` entry of the run's hyperparams.yaml: its codec definition
    width: &w 4
    codec: !new:torch.nn.Linear
      in_features: *w
      out_features: 2
    <BLANKLINE>
    """
    path = Path(hparams_file)
    try:
        with open(path, encoding="utf-8") as f:
            tree = ruamel.yaml.YAML().load(resolve_references(f))
    except FileNotFoundError:
        raise ValueError(f"run hyperparameters not found: {path}") from None
    except Exception as err:  # YAML syntax, a reference to nothing
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    if not isinstance(tree, dict) or "codec" not in tree:
        raise ValueError(
            f"{path} defines no `codec` (name the model definition with model_yaml / --model)"
        )
    codec = tree["codec"]
    section = next(
        (
            key
            for key, value in tree.items()
            if key != "codec"
            and isinstance(value, dict)
            and value.get("codec") is codec
            and not {"modules", "pretrainer"} & set(value)
        ),
        None,
    )
    document = tree[section] if section is not None else {"codec": codec}
    _drop_comments_of_the_run(codec, tree.get(section))
    yaml = ruamel.yaml.YAML()
    yaml.width = 100
    text = io.StringIO()
    yaml.dump(document, text)
    where = f"the `{section}` entry" if section is not None else "`codec`"
    return f"# {where} of the run's {path.name}: its codec definition\n{text.getvalue()}"


def _drop_comments_of_the_run(codec, section=None):
    """Drops the comments the run's file attached to the codec node.

    In the run's file the comments after its ``codec: !ref ...`` line describe
    the run's next entry, but ruamel.yaml keeps them with the codec mapping
    (before its first key, and on the ``codec`` item of the model entry).
    """
    comments = getattr(codec, "ca", None)
    if comments is not None:
        comments.comment = None
    item = getattr(getattr(section, "ca", None), "items", {}).get("codec")
    if item is not None and len(item) > 3:
        item[3] = None  # ruamel's slot for comments between a key and its mapping value


def _build_codec(text, source, checkpoint):
    """The codec of the YAML ``text`` (read from ``source``) with the weights of ``checkpoint``."""
    try:
        codec = load_hyperpyyaml(text)["codec"]
    except Exception as err:  # a missing class, a bad argument
        raise ValueError(
            f"cannot build the codec defined in {source}: {type(err).__name__}: {err}"
        ) from None
    load_state_strict(codec, checkpoint, averaged=True)
    return codec.eval()


def write_package_manifest(folder) -> Path:
    """Checks that ``folder`` loads strictly, then (re)writes its ``SHA256SUMS``."""
    folder = Path(folder)
    load_packaged(DSLCodecInterface, folder, verify=False)
    graphs = [name for name in ONNX_FILES if (folder / name).is_file()]
    return write_manifest(folder, list(PACKAGED_FILES) + graphs)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.inference.package", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "save_folder",
        help="recipe save folder, CKPT+ folder or codec.ckpt "
        "(with --manifest-only: a packaged folder)",
    )
    parser.add_argument("--out")
    parser.add_argument(
        "--model",
        default=None,
        help="model YAML defining `codec` (default: the codec definition of the "
        "run's hyperparams.yaml, in the parent of the save folder)",
    )
    best = parser.add_mutually_exclusive_group()
    best.add_argument(
        "--min-key",
        default=None,
        metavar="METRIC",
        help="take the checkpoint with the lowest METRIC in its CKPT.yaml "
        "(default: the one the run's checkpointer recorded as best, else "
        "the latest)",
    )
    best.add_argument(
        "--max-key",
        default=None,
        metavar="METRIC",
        help="take the checkpoint with the highest METRIC in its CKPT.yaml",
    )
    parser.add_argument(
        "--manifest-only",
        action="store_true",
        help="check that a packaged folder loads and (re)write its SHA256SUMS",
    )
    parser.add_argument(
        "--no-onnx",
        action="store_true",
        help="do not export encoder.onnx and decoder.onnx next to the weights",
    )
    parser.add_argument(
        "--calibration",
        help="folder of held-out audio: also write the int8 "
        "encoder (encoder.int8.onnx) calibrated on it",
    )
    args = parser.parse_args(argv)
    if not args.manifest_only and args.out is None:
        parser.error("--out is required (unless --manifest-only)")
    try:
        if args.manifest_only:
            print(f"wrote {write_package_manifest(args.save_folder)}")
            return 0
        out = package(
            args.save_folder,
            args.out,
            args.model,
            onnx=not args.no_onnx,
            calibration=args.calibration,
            min_key=args.min_key,
            max_key=args.max_key,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = load_weights(out / "codec.ckpt")
    threshold = state.get("encoder.dsl.calibrated_threshold")
    print(f"packaged {out}" + ("" if threshold is None else f" (threshold {float(threshold):.4f})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
