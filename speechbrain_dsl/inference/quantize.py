"""Int8 encoder graphs: onnxruntime's static quantization of the tails, calibrated on audio.

:func:`quantize_encoder` turns an ``encoder.onnx`` written by
:func:`~speechbrain_dsl.inference.graphs.export_onnx` into ``encoder.int8.onnx``,
calibrated on held-out audio cut into encoder rows by :func:`segment_rows`.
Which tail convolutions stay float is :data:`FLOAT_CONVS` (see there why).
"""

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from speechbrain_dsl.inference.graphs import _save_with_metadata, read_metadata

__all__ = ["FLOAT_CONVS", "quantize_encoder", "segment_rows"]

#: Tail convolutions :func:`quantize_encoder` leaves float by default (matched in
#: their weights' names): the light tail and the full tail's first two blocks. In
#: digital silence a tail's activations are per-channel constants much smaller than
#: the uint8 steps that speech sets, so rounding shifts every frame alike instead of
#: adding noise, and the tails amplify the shift: with every tail conv in int8 the
#: shipped model's silence embedding was 83% off and decoded as noise (its check clips
#: 4 and 5: log-mel 1.31 / 0.98, fp32 0.41 / 0.41). Fewer exclusions held only for
#: some calibration sets; other range settings did not help. These narrow convs gain
#: nothing in int8 (their Quantize/DequantizeLinear nodes cost what the kernels save).
FLOAT_CONVS = (".dsl.light_tail.", ".dsl.full_tail.0.", ".dsl.full_tail.1.")


def segment_rows(wav: np.ndarray, segment_samples: int, context: int):
    """Full routing segments of a mono waveform as encoder rows ``(segments, context)``.

    The first segment has no context; every other one gets the ``context``
    samples before it. A trailing partial segment is left out.

    Example
    -------
    >>> rows = list(segment_rows(np.zeros(50000, np.float32), 16000, 320))
    >>> [(s.shape, c.shape) for s, c in rows]
    [((16000,), (0,)), ((16000,), (320,)), ((16000,), (320,))]
    """
    for start in range(0, len(wav) - segment_samples + 1, segment_samples):
        left = max(0, start - context)
        yield wav[start : start + segment_samples], wav[left:start]


def quantize_encoder(
    fp32_path,
    out_path,
    calibration: Iterable[np.ndarray],
    batch_rows: int = 16,
    max_rows: int = 512,
    percentile: float = 99.9,
    float_convs: Sequence[str] = FLOAT_CONVS,
) -> Path:
    """Writes an int8 encoder calibrated on ``calibration`` audio; returns its path.

    onnxruntime's static quantization (``quantize_static``, QDQ format, int8
    weights per output channel, uint8 activations with ranges from the
    ``percentile`` of a histogram over the calibration rows) rather than our own
    rounding: it is maintained with the runtime whose kernels execute the result
    and knows which node patterns those kernels fuse. Only the tails'
    convolutions are quantized, and of those by default only the full tail's
    last two blocks and output conv: the light tail and the full tail's first two
    blocks stay float (:data:`FLOAT_CONVS`: quantized, they decode digital
    silence as noise). The waveform-rate base conv, the mask and the switch stay
    float, so the int8 graph routes every segment exactly as the fp32 graph does,
    and the routing itself (``NonZero`` / ``Gather`` / ``ScatterND``) and the
    codebook search are untouched.

    Calibration rows are routed half light, half full (the threshold of each
    batch is its median prediction), so both tails see real activations (the
    light tail's ranges are used only where ``float_convs`` leaves it quantized).

    Arguments
    ---------
    fp32_path : str or Path
        An encoder written by :func:`~speechbrain_dsl.inference.graphs.export_onnx`.
    out_path : str or Path
    calibration : iterable of numpy.ndarray
        Mono float waveforms at the codec's rate, held out from training (at
        least ``2 * batch_rows`` whole segments in all).
    batch_rows : int
        Rows per calibration batch (even).
    max_rows : int
        Calibration rows used at most.
    percentile : float
        Activation range percentile (onnxruntime's ``CalibPercentile``).
    float_convs : sequence of str
        Tail convolutions whose weight's name contains one of these stay float
        (``()`` quantizes every tail convolution, which decodes silence badly).
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if batch_rows < 2 or batch_rows % 2:
        raise ValueError(f"batch_rows: expected an even number >= 2, got {batch_rows!r}")
    info = read_metadata(fp32_path)
    seg, ctx = info["segment_samples"], info["context_samples"]
    rows = []
    for wav in calibration:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        # the first segment of a recording has no context; keep rows of one shape
        rows.extend(r for r in segment_rows(wav, seg, ctx) if len(r[1]) == ctx)
        if len(rows) >= max_rows:
            break
    batches = len(rows[:max_rows]) // batch_rows
    if batches < 2:
        raise ValueError(
            f"calibration: {len(rows)} whole segments with context, need at least "
            f"{2 * batch_rows} (give more held-out audio)"
        )
    session = onnxruntime.InferenceSession(str(fp32_path), _session_options(1))
    inputs = {i.name for i in session.get_inputs()}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.index = 0

        def get_next(self):
            if self.index >= batches:
                return None
            batch = rows[self.index * batch_rows : (self.index + 1) * batch_rows]
            self.index += 1
            feed = {
                "segments": np.stack([s for s, _ in batch])[:, None],
                "context": np.stack([c for _, c in batch])[:, None],
                "threshold": np.array(np.inf, np.float32),
                "lengths": np.ones(len(batch), np.float32),
            }
            if "levels" in inputs:  # at the utterance's level: ranges, not routes, matter here
                feed["levels"] = np.zeros(len(batch), np.float32)
            predicted = np.sort(session.run(["predicted"], feed)[0])
            middle = len(predicted) // 2
            split = (predicted[middle - 1] + predicted[middle]) / 2
            feed["threshold"] = np.array(split, np.float32)
            return feed

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference and graph clean-up, as onnxruntime recommends before quantizing
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        tails = [
            node.name
            for node in model.graph.node
            if node.op_type == "Conv"
            and any(".dsl.full_tail." in i or ".dsl.light_tail." in i for i in node.input)
            and not any(part in i for part in float_convs for i in node.input)
        ]
        if not tails:
            raise ValueError(
                f"float_convs: {list(float_convs)} leaves no tail convolution to quantize"
            )
        quantized = Path(tmp) / "int8.onnx"
        with contextlib.redirect_stdout(sys.stderr):  # its progress notes are not results
            quantize_static(
                str(prepared),
                str(quantized),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_quantize=tails,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": percentile},
            )
        info = dict(
            info,
            precision="int8",
            calibration_rows=batches * batch_rows,
            calibration_percentile=percentile,
            float_convs=list(float_convs),
        )
        return _save_with_metadata(onnx.load(str(quantized)), out_path, info)


def _session_options(threads: Optional[int]):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
    options.log_severity_level = 3  # unused-initializer notes after graph optimisation
    return options
