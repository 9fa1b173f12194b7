"""Check clips: a few stored clips and a codec's numbers on them, re-measurable later.

A packaged codec folder may carry a ``check/`` folder: a handful of 16-bit WAV
clips and ``check.json``, the packaged model's mel distance per routing pass
(and its mixed-pass light share) on exactly those clips. Anyone holding the
folder can re-measure the numbers (:func:`read_check_clips` then
:func:`measure_check`) and see that the weights still do what they did when
they were recorded (:func:`write_check_clips`).

Layout of ``<folder>/check/``::

    <name>.wav ...    the clips (mono, the codec's sample rate, PCM_16)
    check.json        {"clips": ["<name>.wav", ...], "mel_full": ..., ...}

:func:`light_share_by_level` splits the mixed-pass light share into quiet and
speech segments, a check that the switch sends silence to the light path.

Example
-------
>>> import tempfile
>>> from speechbrain_dsl.lobes.codec import DSLCodec
>>> from speechbrain_dsl.lobes.soundstream import SoundStreamDecoder, SoundStreamEncoder
>>> from speechbrain_dsl.nnet.quantizer import ResidualVectorQuantizer
>>> _ = torch.manual_seed(0)
>>> codec = DSLCodec(  # small and untrained: a baseline codec (no DSL), hop 8
...     SoundStreamEncoder(channels=2, multipliers=(2, 2), strides=(2, 4), dilations=(1,),
...                        kernel_size=3, emb_dim=4),
...     ResidualVectorQuantizer(dim=4, num_quantizers=2, codebook_size=8),
...     SoundStreamDecoder(emb_dim=4, channels=2, multipliers=(2, 2), strides=(2, 4),
...                        dilations=(1,), kernel_size=3)).eval()
>>> _ = codec.encode(0.1 * torch.randn(2, 1600))  # k-means initialises the codebooks
>>> clips = {"a": 0.1 * torch.randn(1600), "b": 0.1 * torch.randn(2000)}
>>> folder = tempfile.mkdtemp()
>>> recorded = write_check_clips(codec, clips, folder)
>>> sorted(recorded)
['mel_full']
>>> audio, meta = read_check_clips(folder)
>>> meta["clips"], [tuple(clip.shape) for clip in audio]
(['a.wav', 'b.wav'], [(1600,), (2000,)])
>>> measure_check(codec, audio) == recorded
True
"""

import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch

from speechbrain_dsl.atomic import atomic_path, write_json

#: The routing passes a check measures (a codec without a DSL: only ``full``).
PASSES = ("full", "light", "mixed")
CHECK_FOLDER = "check"
CHECK_FILE = "check.json"


# --- measuring -----------------------------------------------------------------------


@torch.no_grad()
def measure_check(
    codec, clips: Sequence[torch.Tensor], levels_dbfs: Sequence[float] = ()
) -> Dict[str, float]:
    """Mel distance per routing pass, the mixed light share and the level errors on ``clips``.

    Arguments
    ---------
    codec : DSLCodec
        In eval mode. A codec with a DSL is measured in every pass of
        :data:`PASSES` (each call names its mode), one without only in
        ``full``.
    clips : sequence of torch.Tensor
        Mono waveforms ``[S]`` at the codec's sample rate, coded one at a time.
    levels_dbfs : sequence of float
        Input levels (RMS, dB re full scale) at which to measure how far the
        output level is from the input level (full pass); none by default.

    Returns
    -------
    dict
        ``mel_<pass>`` (mean over clips of the log-mel distance between a clip
        and its reconstruction) per pass; with a DSL, ``light_share_mixed``
        (mean over clips of the share of light segments); per level,
        ``level_error_db@<level>`` (mean over clips of
        :func:`~speechbrain_dsl.evaluation.metrics.level_errors_db`).
    """
    from speechbrain_dsl.evaluation.metrics import level_errors_db, mel_distance

    result = {}
    for name in PASSES if codec.has_dsl else ("full",):
        distances, shares = [], []
        for clip in clips:
            encoded = codec.encode_with_routing(clip[None], mode=name)
            if name == "mixed":
                shares.append(encoded.routing.light_share)
            wav_hat = codec.decode(encoded.tokens)[..., : clip.shape[-1]]
            distances.append(float(mel_distance(wav_hat.squeeze(1), clip[None])[0]))
        result[f"mel_{name}"] = float(np.mean(distances))
        if shares:
            result["light_share_mixed"] = float(np.mean(shares))
    for level in levels_dbfs:
        errors = [float(level_errors_db(codec, clip[None], levels_dbfs=[level])) for clip in clips]
        result[f"level_error_db@{level:g}"] = float(np.mean(errors))
    return result


def recorded_levels(recorded: Mapping[str, float]) -> List[float]:
    """The input levels a ``check.json`` holds level errors for (see :func:`measure_check`).

    Example
    -------
    >>> recorded_levels({"mel_full": 0.8, "level_error_db@-40": 1.2, "level_error_db@-10": 2.5})
    [-40.0, -10.0]
    """
    prefix = "level_error_db@"
    return [float(key[len(prefix) :]) for key in recorded if key.startswith(prefix)]


@torch.no_grad()
def light_share_by_level(codec, clips: Sequence[torch.Tensor], silence_dbfs: float = -45.0):
    """Mixed-pass light share of quiet vs speech segments of ``clips``.

    A routing segment is *silence-like* when its RMS level is under
    ``silence_dbfs`` (pauses, leading/trailing silence, faint noise), else
    *speech*.

    Arguments
    ---------
    codec : DSLCodec
        With a DSL encoder; routed in ``mixed`` mode.
    clips : sequence of torch.Tensor
        Mono waveforms ``[S]`` at the codec's sample rate.
    silence_dbfs : float
        Level (dB re full scale) under which a segment is silence-like.

    Returns
    -------
    dict
        ``{"silence-like": {...}, "speech": {...}}``, each with ``light_share``
        (None without segments) and ``segments`` (their number).
    """
    if not codec.has_dsl:
        raise ValueError("light_share_by_level: the codec has no DSL encoder (nothing is routed)")
    counts = {"silence-like": [0, 0], "speech": [0, 0]}
    for clip in clips:
        routing = codec.encode_with_routing(clip[None], mode="mixed").routing
        seg = routing.segment_frames * codec.hop_length
        for i, light in enumerate(routing.route[0].tolist()):
            piece = clip[i * seg : (i + 1) * seg]
            if piece.numel() == 0:
                continue
            level = 20 * torch.log10(piece.pow(2).mean().sqrt().clamp(min=1e-8))
            group = counts["silence-like" if level < silence_dbfs else "speech"]
            group[0] += int(light)
            group[1] += 1
    return {
        name: {"light_share": light / total if total else None, "segments": total}
        for name, (light, total) in counts.items()
    }


# --- storing and reading ---------------------------------------------------------------


def write_check_clips(
    codec, clips: Mapping[str, torch.Tensor], folder, levels_dbfs: Sequence[float] = ()
) -> Dict[str, float]:
    """Stores ``clips`` in ``folder/check/`` with ``codec``'s numbers on them; returns the numbers.

    Arguments
    ---------
    codec : DSLCodec
        The packaged model, in eval mode.
    clips : mapping of str to torch.Tensor
        ``{name: waveform [S]}`` at the codec's sample rate; each is written
        as ``<name>.wav`` (16-bit, clipped to [-1, 1]).
    folder : str or Path
        The packaged folder; files are written atomically, and clips an earlier
        check left there are removed once the new ``check.json`` is written.
    levels_dbfs : sequence of float
        Also record the output-level errors at these input levels.

    Returns
    -------
    dict
        What :func:`measure_check` gives on the stored (16-bit) clips, so a
        later re-measure of the folder reads exactly the audio measured here.
    """
    check = Path(folder) / CHECK_FOLDER
    names = [f"{name}.wav" for name in clips]
    for name, clip in zip(names, clips.values()):
        with atomic_path(check / name, suffix=".wav") as tmp:
            sf.write(tmp, clip.clamp(-1, 1).numpy(), codec.sample_rate, subtype="PCM_16")
    audio = _read_clips(check, names)  # measured as stored (16-bit), as a re-measure reads it
    numbers = measure_check(codec, audio, levels_dbfs)
    write_json(check / CHECK_FILE, {"clips": names, **numbers})
    for stale in sorted(set(p.name for p in check.glob("*.wav")) - set(names)):
        (check / stale).unlink()  # clips of an earlier package of the folder
    return numbers


def read_check_clips(folder) -> Tuple[List[torch.Tensor], dict]:
    """The stored check clips of a packaged ``folder`` and its ``check.json``.

    Returns
    -------
    (list of torch.Tensor, dict)
        The clips (float32 ``[S]``, in the order ``check.json`` lists them) and
        the recorded numbers (with the ``clips`` list).
    """
    check = Path(folder) / CHECK_FOLDER
    path = check / CHECK_FILE
    if not path.is_file():
        raise ValueError(f"{folder} has no check clips ({path} not found)")
    try:
        meta = json.loads(path.read_text())
        names = meta["clips"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is not a check file (a JSON object with a 'clips' "
            f"list): {type(err).__name__}: {err}"
        ) from None
    return _read_clips(check, names), meta


def _read_clips(check: Path, names) -> List[torch.Tensor]:
    audio = []
    for name in names:
        if not (check / name).is_file():
            raise ValueError(
                f"check clip {check / name} is missing (listed in {check / CHECK_FILE})"
            )
        audio.append(torch.from_numpy(sf.read(str(check / name), dtype="float32")[0]))
    return audio
