"""Turns a recipe's checkpoint into a folder that ``DSLCodecInterface.from_hparams`` loads.

    python -m speechbrain_dsl.inference.package <recipe save folder> --out <folder> \
        [--model hparams/soundstream_dsl.yaml]

The folder gets ``codec.ckpt`` (weights, including the calibrated threshold) of the
checkpoint with the lowest validation mel distance, and ``hyperparams.yaml``: the
model definition plus ``modules`` and a ``pretrainer``. Files are written to
temporary names and renamed.
"""

import argparse
import shutil
import sys
from pathlib import Path

import torch

from speechbrain_dsl.atomic import atomic_path
from speechbrain_dsl.checkpoints import find_codec_checkpoint, load_codec

ROOT = Path(__file__).resolve().parents[2]
INTERFACE_SECTION = """
# --- added by speechbrain_dsl.inference.package ------------------------------
modules:
    codec: !ref <codec>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        codec: !ref <codec>
"""


def package(save_folder, out, model_yaml=ROOT / "hparams" / "soundstream_dsl.yaml"):
    """Writes ``hyperparams.yaml`` and ``codec.ckpt`` to ``out``; returns ``out``."""
    ckpt = find_codec_checkpoint(save_folder)
    load_codec(model_yaml, ckpt)  # fails here, naming the file, if it does not fit
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = Path(model_yaml).read_text()
    for name, write in (
        ("codec.ckpt", lambda tmp: shutil.copyfile(ckpt, tmp)),
        ("hyperparams.yaml", lambda tmp: Path(tmp).write_text(text + INTERFACE_SECTION)),
    ):
        with atomic_path(out / name) as tmp:
            write(tmp)
    return out


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m speechbrain_dsl.inference.package",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("save_folder", help="recipe save folder, CKPT+ folder or codec.ckpt")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default=str(ROOT / "hparams" / "soundstream_dsl.yaml"))
    args = parser.parse_args(argv)
    try:
        out = package(args.save_folder, args.out, args.model)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = torch.load(out / "codec.ckpt", weights_only=True)
    threshold = state.get("encoder.dsl.calibrated_threshold")
    print(f"packaged {out}" + ("" if threshold is None else f" (threshold {float(threshold):.4f})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
