"""Scores a packaged codec on held-out subsets of a LibriTTS-layout corpus.

    python -m tools.score_package pretrained/campaign-baseline \
        --corpus data/corpus/LibriTTS --subsets test-clean test-recorded [--max 60] [--json]
    python -m tools.score_package --opus 1.0 --corpus data/corpus/LibriTTS ...  # anchor

Each utterance (mixed to mono, resampled to the codec's rate, cut to ``--seconds``)
is encoded and decoded one at a time in the given routing ``--mode``; the table gives
per subset the mean and median ViSQOL (speech mode, lattice model) and the mean
log-mel distance. ``--max`` takes that many utterances evenly spaced over the sorted
file list, so the same command picks the same utterances.

``--opus LEVEL`` scores Opus instead of a package, on the same utterances at
``--rate``: a standard codec as the anchor for our scores. LEVEL is libsndfile's
compression level (1.0 = its lowest bitrate: 7-7.5 kbps on 8-s utterances, Ogg
framing included); the table adds the bitrate measured from the bytes written.

Where the bits go, for a package: ``--codebooks K`` decodes from the first K
codebooks of the RVQ only (a lower bitrate), and ``--latents`` decodes the
encoder's output before quantisation, the most any number of codebooks could give.
If ``--latents`` scores no better than all codebooks, more bits will not help: the
encoder or decoder is the limit.
"""

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

from speechbrain_dsl.evaluation.metrics import mel_distance, visqol
from speechbrain_dsl.inference.interface import DSLCodecInterface
from speechbrain_dsl.probing.embedding_cache import read_clip


def evenly_spaced(items, count):
    """``count`` items spread over ``items`` (all of them when there are fewer).

    Example
    -------
    >>> evenly_spaced(list(range(10)), 3)
    [0, 3, 6]
    """
    step = max(1, len(items) // count) if count else 1
    return items[::step][:count] if count else items


def codec_roundtrip(codec, mode=None, latents=False):
    """``clip [S] -> decoded [1, S]`` through ``codec``'s tokens, in routing ``mode``.

    ``latents=True`` skips the quantiser: the decoder gets the encoder's output.

    Example
    -------
    >>> from speechbrain_dsl.lobes.codec import DSLCodec
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder, SoundStreamDecoder
    >>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
    >>> codec = DSLCodec(SoundStreamEncoder(channels=2, multipliers=(2,), strides=(4,), emb_dim=8),
    ...                  ResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16),
    ...                  SoundStreamDecoder(emb_dim=8, channels=2, multipliers=(2,), strides=(4,)))
    >>> clip = torch.randn(3200) * 0.1
    >>> codec_roundtrip(codec.eval())(clip).shape, codec_roundtrip(codec, latents=True)(clip).shape
    (torch.Size([1, 3200]), torch.Size([1, 3200]))
    """

    @torch.no_grad()
    def roundtrip(clip):
        if latents:
            features, _ = codec.encode_features(codec.check_input(clip[None]), mode=mode)
            decoded = codec.decode_latents(features)
        else:
            tokens, _ = codec.encode(clip[None], mode=mode)
            decoded = codec.decode(tokens)
        return decoded[0, :, : clip.shape[-1]]

    return roundtrip


OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class OpusRoundTrip:
    """``clip [S] -> decoded [1, S]`` through Opus in Ogg (libsndfile's encoder via soundfile).

    Counts the bytes it writes, so :attr:`kbps` is the bitrate actually used,
    Ogg pages and headers included (~1 kB per clip: +1 kbps on 8-s clips).

    Arguments
    ---------
    sample_rate : int
        One of Opus's rates (8, 12, 16, 24 or 48 kHz).
    compression_level : float
        libsndfile's setting in [0, 1]; 1.0 is the lowest bitrate.

    Example
    -------
    >>> opus = OpusRoundTrip(16000)
    >>> clip = torch.randn(48000) * 0.1
    >>> opus(clip).shape
    torch.Size([1, 48000])
    >>> 5.0 < opus.kbps < 12.0
    True
    """

    def __init__(self, sample_rate, compression_level=1.0):
        if "OPUS" not in soundfile.available_subtypes("OGG"):
            raise RuntimeError(
                f"--opus: this libsndfile ({soundfile.__libsndfile_version__}) has no Opus "
                f"encoder (pip install --upgrade soundfile bundles one)"
            )
        if int(sample_rate) not in OPUS_RATES:
            raise ValueError(
                f"--rate: Opus codes {', '.join(map(str, OPUS_RATES))} Hz, got {sample_rate!r}"
            )
        if not 0.0 <= compression_level <= 1.0:
            raise ValueError(f"--opus: expected a level in [0, 1], got {compression_level!r}")
        self.sample_rate, self.compression_level = int(sample_rate), float(compression_level)
        self.bits, self.seconds = 0, 0.0

    def __call__(self, clip):
        wav = clip.detach().to(torch.float32).cpu().numpy().reshape(-1)
        buffer = io.BytesIO()
        with soundfile.SoundFile(
            buffer,
            "w",
            self.sample_rate,
            1,
            format="OGG",
            subtype="OPUS",
            compression_level=self.compression_level,
        ) as out:
            out.write(wav)
        self.bits += 8 * buffer.tell()
        self.seconds += len(wav) / self.sample_rate
        buffer.seek(0)
        decoded, _ = soundfile.read(buffer, dtype="float32")
        # Opus pads its last frame; keep the input's length
        decoded = np.pad(decoded[: len(wav)], (0, max(0, len(wav) - len(decoded))))
        return torch.from_numpy(decoded)[None]

    @property
    def kbps(self):
        """Bitrate over everything encoded so far (kbit/s)."""
        return self.bits / self.seconds / 1000 if self.seconds else float("nan")


def score(roundtrip, wavs, rate, seconds=8.0):
    """Mean / median ViSQOL and mean mel distance of ``roundtrip`` on the files ``wavs``.

    ``roundtrip`` maps a clip ``[S]`` at ``rate`` to its decoded ``[1, S]``
    (:func:`codec_roundtrip`, :class:`OpusRoundTrip`).
    """
    scores, mels = [], []
    for wav in wavs:
        clip = read_clip(wav, rate)[: int(seconds * rate)]
        decoded = roundtrip(clip)
        mels.append(float(mel_distance(decoded, clip[None])[0]))
        value = float(visqol(decoded, clip[None])[0])
        if value == value:  # NaN for a silent reference
            scores.append(value)
    row = {
        "utterances": len(wavs),
        "visqol_mean": statistics.mean(scores) if scores else float("nan"),
        "visqol_median": statistics.median(scores) if scores else float("nan"),
        "mel": statistics.mean(mels) if mels else float("nan"),
    }
    if isinstance(roundtrip, OpusRoundTrip):
        row["kbps"] = roundtrip.kbps
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.score_package", description=__doc__)
    parser.add_argument("package", nargs="?", help="a packaged codec folder")
    parser.add_argument("--opus", type=float, metavar="LEVEL", help="score Opus instead")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate for --opus")
    parser.add_argument("--corpus", required=True, help="the LibriTTS-layout folder")
    parser.add_argument("--subsets", nargs="+", default=["test-clean"])
    parser.add_argument("--max", type=int, default=60, help="utterances per subset (0: all)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mode", default=None, help="full, light or mixed (default: the codec's)")
    parser.add_argument("--codebooks", type=int, help="decode from the first K codebooks only")
    parser.add_argument(
        "--latents", action="store_true", help="decode the unquantised encoder output"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if (args.package is None) == (args.opus is None):
        parser.error("give a package folder or --opus LEVEL (one of the two)")
    if args.opus is not None and (args.codebooks is not None or args.latents):
        parser.error("--codebooks and --latents apply to a package, not to --opus")
    if args.codebooks is not None and args.latents:
        parser.error("--latents decodes without codebooks: give it or --codebooks, not both")
    torch.set_num_threads(1)
    if args.opus is not None:
        rate, make_roundtrip = args.rate, lambda: OpusRoundTrip(args.rate, args.opus)
    else:
        folder = Path(args.package)
        codec = DSLCodecInterface.from_hparams(
            source=str(folder), savedir=str(folder), engine="torch"
        ).codec.eval()
        if args.codebooks is not None:
            try:
                codec.num_codebooks = args.codebooks
            except ValueError as err:
                parser.error(f"--codebooks: {err}")
        rate = codec.sample_rate
        make_roundtrip = lambda: codec_roundtrip(codec, args.mode, args.latents)  # noqa: E731
    rows = {}
    for subset in args.subsets:
        wavs = sorted(str(p) for p in (Path(args.corpus) / subset).glob("*/*/*.wav"))
        if not wavs:
            sys.exit(f"--subsets: {Path(args.corpus) / subset} holds no <spk>/<chap>/*.wav")
        rows[subset] = score(make_roundtrip(), evenly_spaced(wavs, args.max), rate, args.seconds)
        if args.package is not None:  # the tokens' nominal bitrate; none without quantiser
            rows[subset]["kbps"] = None if args.latents else codec.bitrate
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'subset':<16}{'utterances':>11}{'ViSQOL':>8}{'median':>8}{'mel':>8}{'kbps':>8}")
    for subset, r in rows.items():
        print(
            f"{subset:<16}{r['utterances']:>11}{r['visqol_mean']:>8.2f}"
            f"{r['visqol_median']:>8.2f}{r['mel']:>8.3f}"
            + (f"{r['kbps']:>8.2f}" if r["kbps"] is not None else f"{'-':>8}")
        )


if __name__ == "__main__":
    main()
