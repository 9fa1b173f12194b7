"""Checks at the codec's boundaries: waveforms, relative lengths, tokens, codebook choices.

Plain functions (torch, numpy and torchaudio only) shared by the model
(:class:`speechbrain_dsl.lobes.codec.DSLCodec`, whose training pass and encode
calls check their inputs) and its tokenizer faces
(:mod:`speechbrain_dsl.inference.tokenizer`). Each raises a ``ValueError`` that
names the argument and says what was expected.

Example
-------
>>> check_length([1.0, 0.5], 2)
tensor([1.0000, 0.5000])
>>> select_codebooks(2, available=3, total=3)
[0, 1]
"""

import numbers
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torchaudio

__all__ = [
    "MAX_PEAK",
    "SSL_ONLY_OPTIONS",
    "check_length",
    "check_rate",
    "check_tokens",
    "check_waveform",
    "codebooks_note",
    "is_int",
    "refuse_ssl_options",
    "select_codebooks",
]

# Waveforms are expected in [-1, 1]. Filtering, resampling and mixing overshoot
# that a little, so peaks up to MAX_PEAK pass; larger ones (int16-scaled floats,
# 0..255 bytes) would be encoded into garbage and are refused.
MAX_PEAK = 2.0

# DASB's ``sig_to_tokens`` keywords for discrete SSL tokenizers. A codec's tokens
# are frame-aligned codebook indices: these are accepted only when they ask for
# nothing (None, False or lists of those); a truthy value is refused.
SSL_ONLY_OPTIONS = ("deduplicates", "bpe_tokenizers")


def is_int(value: Any) -> bool:
    """True for an integer (numpy's included), False for a bool or anything else.

    Example
    -------
    >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_rate(sample_rate: Any) -> int:
    """A sample rate in Hz as an int, or a ValueError.

    Example
    -------
    >>> check_rate(16000.0)
    16000
    >>> check_rate(-1)
    Traceback (most recent call last):
    ...
    ValueError: sample_rate: expected a positive whole number of Hz, got -1
    """
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, numbers.Real)
        or (sample_rate <= 0 or not float(sample_rate).is_integer())
    ):
        raise ValueError(
            f"sample_rate: expected a positive whole number of Hz, got {sample_rate!r}"
        )
    return int(sample_rate)


def check_waveform(
    inputs: Union[torch.Tensor, np.ndarray],
    expected_rate: int,
    hop_length: int,
    dtype: torch.dtype,
    sample_rate: Optional[int] = None,
    name: str = "inputs",
    check_range: bool = False,
    resample: bool = False,
) -> torch.Tensor:
    """Validates a waveform batch and returns it as ``[B, 1, S]`` at ``expected_rate``.

    Arguments
    ---------
    inputs : torch.Tensor or numpy.ndarray
        ``[B, S]`` or ``[B, 1, S]`` floating-point samples.
    expected_rate : int
        The codec's sample rate in Hz.
    hop_length : int
        Samples per frame: shorter inputs give no frame and are refused.
    dtype : torch.dtype
        The model's floating-point type (the result is cast to it).
    sample_rate : int, optional
        Rate of ``inputs`` in Hz; None means ``expected_rate``.
    name : str
        The argument's name in error messages.
    check_range : bool
        Refuse peaks above ``MAX_PEAK`` (a waveform belongs in [-1, 1]). The
        encode entry points check; the training pass does not.
    resample : bool
        Resample from ``sample_rate`` instead of refusing another rate.

    Returns
    -------
    torch.Tensor
        ``[B, 1, S']`` in ``dtype``.

    Raises
    ------
    ValueError
        For another sample rate (unless ``resample``), a non-float dtype, a
        wrong rank, an empty batch, NaN or inf, peaks out of range, or fewer
        samples than one hop.

    Example
    -------
    >>> check_waveform(np.zeros((2, 800)), 16000, 8, torch.float32, 8000, resample=True).shape
    torch.Size([2, 1, 1600])
    >>> check_waveform(torch.full((1, 800), 30000.0), 16000, 8, torch.float32, check_range=True)
    Traceback (most recent call last):
    ...
    ValueError: inputs: expected a waveform in [-1, 1], got a peak of 30000 (int16 PCM scale? divide by 32768)
    """
    rate = expected_rate if sample_rate is None else check_rate(sample_rate)
    if rate != expected_rate and not resample:
        raise ValueError(
            f"{name}: declared sample rate {sample_rate} Hz, but this codec "
            f"expects {expected_rate} Hz; resample first (e.g. "
            f"torchaudio.functional.resample)"
        )
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(np.ascontiguousarray(inputs))
    if not torch.is_tensor(inputs):
        raise ValueError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(inputs)}")
    if not inputs.is_floating_point():
        raise ValueError(
            f"{name}: expected a floating-point waveform in [-1, 1], got {inputs.dtype} "
            f"(for int16 PCM, divide by 32768)"
        )
    if inputs.dim() == 2:
        inputs = inputs.unsqueeze(1)
    if inputs.dim() != 3 or inputs.shape[1] != 1:
        raise ValueError(
            f"{name}: expected shape [batch, samples] or [batch, 1, samples], got "
            f"{tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (shape {tuple(inputs.shape)})")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError(f"{name}: contains NaN or inf values")
    if check_range and inputs.numel():
        peak = float(inputs.abs().max())
        if peak > MAX_PEAK:
            hint = " (int16 PCM scale? divide by 32768)" if peak > 256 else ""
            raise ValueError(
                f"{name}: expected a waveform in [-1, 1], got a peak of {peak:g}{hint}"
            )
    inputs = inputs.to(dtype)
    if rate != expected_rate:
        inputs = torchaudio.functional.resample(inputs, rate, expected_rate)
    if inputs.shape[-1] < hop_length:
        raise ValueError(
            f"{name}: {inputs.shape[-1]} samples is shorter than one hop "
            f"({hop_length} samples = {1000 * hop_length / expected_rate:.0f} ms)"
        )
    return inputs


def check_length(length: Any, batch_size: int, name: str = "length") -> Optional[torch.Tensor]:
    """Relative lengths as a float tensor ``[batch_size]`` (None stays None).

    Raises
    ------
    ValueError
        Unless ``length`` holds ``batch_size`` values in (0, 1].

    Example
    -------
    >>> check_length(torch.tensor([1.0, 1.5]), 2, name="wav_lens")
    Traceback (most recent call last):
    ...
    ValueError: wav_lens: relative lengths must be in (0, 1], got values in [1, 1.5]
    """
    if length is None:
        return None
    if isinstance(length, (np.ndarray, list, tuple)):
        length = torch.as_tensor(np.asarray(length, dtype=np.float32))
    if not torch.is_tensor(length):
        raise ValueError(f"{name}: expected a tensor of relative lengths, got {type(length)}")
    if length.dim() != 1 or length.shape[0] != batch_size:
        raise ValueError(
            f"{name}: expected one relative length per item, shape [{batch_size}], got "
            f"shape {tuple(length.shape)}"
        )
    length = length.float()
    if not bool(((length > 0) & (length <= 1)).all()):
        raise ValueError(
            f"{name}: relative lengths must be in (0, 1], got values in "
            f"[{float(length.min()):g}, {float(length.max()):g}]"
        )
    return length


def codebooks_note(available: int, total: int) -> str:
    """What error messages add when only the first ``available`` of ``total`` codebooks are in use.

    Example
    -------
    >>> codebooks_note(8, 8), codebooks_note(2, 8)
    ('', " (the tokenizer uses num_codebooks=2 of this codec's 8)")
    """
    if available == total:
        return ""
    return f" (the tokenizer uses num_codebooks={available} of this codec's {total})"


def check_tokens(
    tokens: Any, available: int, total: int, vocab_size: int, name: str = "tokens"
) -> torch.Tensor:
    """Validates tokens ``[B, T, K]`` (``1 <= K <= available``) and returns them as long.

    Example
    -------
    >>> check_tokens(torch.zeros(2, 5, 2, dtype=torch.int32), 3, 3, 16).dtype
    torch.int64
    >>> check_tokens(torch.full((2, 5, 2), 16), 3, 3, 16)
    Traceback (most recent call last):
    ...
    ValueError: tokens: values must be in [0, vocab_size=16), got [16, 16]
    """
    if not torch.is_tensor(tokens) or tokens.dim() != 3 or not (1 <= tokens.shape[-1] <= available):
        shape = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens)
        raise ValueError(
            f"{name}: expected [batch, frames, K] with 1 <= K <= num_codebooks="
            f"{available}{codebooks_note(available, total)}, got {shape}"
        )
    if tokens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name}: expected an integer tensor, got {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"{name}: values must be in [0, vocab_size={vocab_size}), got "
            f"[{int(tokens.min())}, {int(tokens.max())}]"
        )
    return tokens.long()


def select_codebooks(
    num_codebooks: Union[int, Sequence[int], None],
    available: int,
    total: int,
    name: str = "num_codebooks",
    lists: bool = True,
) -> List[int]:
    """Codebook indices meant by DASB's ``num_codebooks``: None, a count or a list.

    Only the ``available`` codebooks in use (the first ones of the codec's
    ``total``) can be asked for; more is a ValueError naming ``name``. With
    ``lists=False`` only None or a count (the first K codebooks) is accepted, as
    for DAC's ``n_quantizers``.

    Example
    -------
    >>> select_codebooks(None, 3, 3), select_codebooks(2, 3, 3), select_codebooks([2, 0], 3, 3)
    ([0, 1, 2], [0, 1], [2, 0])
    >>> select_codebooks(4, 3, 3)
    Traceback (most recent call last):
    ...
    ValueError: num_codebooks: expected 1..3 codebooks, got 4
    >>> select_codebooks([2], 3, 3, "n_quantizers", lists=False)
    Traceback (most recent call last):
    ...
    ValueError: n_quantizers: expected None or an int (the first K codebooks), got [2]
    """
    if num_codebooks is None:
        return list(range(available))
    if not lists and not is_int(num_codebooks):
        raise ValueError(
            f"{name}: expected None or an int (the first K codebooks), got {num_codebooks!r}"
        )
    note = codebooks_note(available, total)
    if is_int(num_codebooks):
        if not 1 <= num_codebooks <= available:
            raise ValueError(
                f"{name}: expected 1..{available} codebooks{note}, got {num_codebooks}"
            )
        return list(range(int(num_codebooks)))
    if (
        isinstance(num_codebooks, (list, tuple))
        and num_codebooks
        and all(is_int(i) for i in num_codebooks)
    ):
        index = [int(i) for i in num_codebooks]
        if not all(0 <= i < available for i in index) or len(set(index)) != len(index):
            raise ValueError(
                f"{name}: expected distinct codebook indices in [0, {available}){note}, "
                f"got {list(num_codebooks)}"
            )
        return index
    raise ValueError(
        f"{name}: expected None, an int or a list of codebook indices, got {num_codebooks!r}"
    )


def refuse_ssl_options(kwargs: Dict[str, Any]) -> None:
    """Accepts DASB's discrete-SSL keywords only when they ask for nothing.

    Example
    -------
    >>> refuse_ssl_options({"deduplicates": [False, False], "SSL_layers": [1, 3]})
    >>> refuse_ssl_options({"deduplicates": [True]})
    Traceback (most recent call last):
    ...
    ValueError: deduplicates: codec tokens are frame-aligned codebook indices; deduplicates (an option of DASB's discrete SSL tokenizers) is not supported, got [True]
    """
    for key in SSL_ONLY_OPTIONS:
        value = kwargs.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v for v in values):
            raise ValueError(
                f"{key}: codec tokens are frame-aligned codebook indices; {key} (an option "
                f"of DASB's discrete SSL tokenizers) is not supported, got {value!r}"
            )
