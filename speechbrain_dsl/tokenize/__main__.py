"""``python -m speechbrain_dsl.tokenize``: the command line of :mod:`speechbrain_dsl.tokenize`."""

import argparse
import logging
import os
import sys

import speechbrain_dsl.tokenize as package
from speechbrain_dsl.tokenize import runner
from speechbrain_dsl.tokenize.corpus import ID_FROM


def _option(parser, name, **kwargs):
    """``--a_b`` (SpeechBrain's spelling) with ``--a-b`` accepted too."""
    dashed = name.replace("_", "-")
    names = [name] if dashed == name else [name, dashed]
    parser.add_argument(*names, **kwargs)


def parse_args(argv=None) -> runner.TokenizeConfig:
    """The options as a :class:`~speechbrain_dsl.tokenize.runner.TokenizeConfig`."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_dsl.tokenize",
        description=package.__doc__.split("\n\n")[0],
        epilog="Under torchrun (torchrun --nproc_per_node N -m speechbrain_dsl.tokenize ...) "
        "each rank takes its share of the chunks and rank 0 merges; --workers N does the "
        "same with N local processes.",
    )
    parser.add_argument("--model", required=True, help="packaged codec folder")
    parser.add_argument(
        "--data", required=True, help="SpeechBrain .csv or .json manifest, or a folder of audio"
    )
    parser.add_argument("--out", required=True, help="output folder (tokens.ark, tokens.scp, ...)")
    _option(parser, "--num_codebooks", type=int, default=None, help="first K codebooks (all)")
    parser.add_argument(
        "--mode",
        choices=runner.MODES,
        default=None,
        help="routing; mixed uses the model's calibrated threshold (mixed for a DSL model, "
        "else full)",
    )
    parser.add_argument(
        "--engine",
        choices=runner.ENGINES,
        default=None,
        help="onnxruntime by default on CPU for a DSL model (its graph is exported into the "
        "output's work folder if the package has none), else torch",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK: one rank per GPU) or cuda:N"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="local processes (without torchrun); default 1"
    )
    _option(
        parser,
        "--batch_seconds",
        type=float,
        default=60.0,
        help="padded audio seconds per batch (batches are built by length); default 60",
    )
    _option(
        parser,
        "--chunk_size",
        type=int,
        default=64,
        help="utterances per chunk: the unit written at once and resumed; default 64",
    )
    _option(
        parser,
        "--skip_bad_audio",
        action="store_true",
        help="leave bad audio files out (listed in summary.json) instead of stopping",
    )
    _option(parser, "--data_root", default=None, help="replaces $data_root / {data_root}")
    _option(parser, "--wav_key", default=None, help="manifest field of the audio (wav, else path)")
    _option(
        parser,
        "--id_from",
        choices=ID_FROM,
        default="path",
        help="ids of a folder's files: relative path with / as _ (path) or file name (stem)",
    )
    _option(
        parser,
        "--no_resample",
        dest="resample",
        action="store_false",
        help="treat files at another rate than the codec's as bad instead of resampling",
    )
    _option(parser, "--save_name", default="tokens", help="base name of the ark/scp (DASB's)")
    _option(
        parser,
        "--loader_workers",
        type=int,
        default=1,
        help="DataLoader workers per rank reading and resampling audio; default 1",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/onnxruntime threads per rank"
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None)
    _option(progress, "--no_progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    return runner.TokenizeConfig(**vars(args))


def main(argv=None) -> int:
    """Command-line entry point: 0 on success, 2 with a message for a ValueError."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = parse_args(argv)
    try:
        summary = runner.tokenize_corpus(config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", 0)) == 0:
        run = summary["this_run"]
        if summary.get("nothing_to_do"):
            speed = "already complete: nothing to do"
        elif run["real_time_factor"]:
            speed = (
                f"{run['throughput_audio_hours_per_hour']:.1f} audio h/h "
                f"(RTF {run['real_time_factor']:.4f})"
            )
        else:
            speed = "nothing encoded in this run"
        print(
            f"{summary['scp']}: {summary['utterances']} utterances, "
            f"{summary['audio_hours']:.3f} h of audio, light share "
            f"{summary['light_share'] if summary['light_share'] is None else round(summary['light_share'], 3)}, "
            f"{summary['skipped_count']} skipped; {speed}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
