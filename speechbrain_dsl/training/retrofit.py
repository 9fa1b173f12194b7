"""Start a codec from a trained one: resume a lost run, or insert a DSL into a baseline.

``init_codec_from(codec, source)`` loads the weights of a packaged codec folder
(or a ``codec.ckpt`` file) into ``codec``. When ``codec`` has a DSL and the
source is a baseline, the encoder's weights are renamed to the DSL layout
(:func:`~speechbrain_dsl.lobes.dsl_encoder.baseline_to_dsl_state`) and only the
DSL's own parts (mask, switch, light tail, threshold) keep their fresh init. With
the mask at identity, the new codec's full pass equals the baseline's exactly.
"""

import pickle
from pathlib import Path

import torch

from speechbrain_dsl.lobes.dsl_encoder import baseline_to_dsl_state
from speechbrain_dsl.training.checkpoints import has_bad_values
from speechbrain_dsl.training.weight_average import averaged_state

DSL_ONLY_PREFIXES = (
    "encoder.dsl.mask.",
    "encoder.dsl.switch.",
    "encoder.dsl.light_tail.",
    "encoder.dsl.calibrated_threshold",
)


def widen_encoder_state(state, target, noise=0.01, seed=0, prefix="encoder.stages."):
    """Encoder weights of ``state`` widened to the shapes of ``target`` (Net2Net).

    Every channel dimension that grew by a whole factor ``f`` is tiled: new channel
    ``j`` copies old channel ``j % C``. A conv's input side is divided by ``f``, so
    each layer sums the ``f`` copies back to the old value and the widened encoder
    computes the old encoder's function (elementwise ELUs and residual adds keep the
    copies equal). Copies would also get equal gradients forever, so the input side
    gets Gaussian noise of ``noise`` times each weight tensor's standard deviation.

    Arguments
    ---------
    state : dict
        The trained codec's state dict.
    target : dict
        The wider codec's state dict (only shapes are read).
    noise : float
    seed : int
    prefix : str
        Keys to widen.

    Returns
    -------
    dict
        ``state`` with the widened tensors.

    Example
    -------
    >>> from speechbrain_dsl.lobes.soundstream import SoundStreamEncoder
    >>> narrow = SoundStreamEncoder(channels=2, multipliers=(2,), strides=(4,), emb_dim=4)
    >>> wide = SoundStreamEncoder(channels=4, multipliers=(2,), strides=(4,), emb_dim=4)
    >>> state = widen_encoder_state(narrow.state_dict(), wide.state_dict(), 0.0, prefix="stages.")
    >>> _ = wide.load_state_dict(state)
    >>> x = torch.randn(1, 1, 64)
    >>> torch.allclose(wide(x), narrow(x), atol=1e-5)
    True
    """
    generator = torch.Generator().manual_seed(seed)
    out = dict(state)
    for key, value in state.items():
        if not key.startswith(prefix) or key not in target or target[key].shape == value.shape:
            continue
        shape = target[key].shape
        if len(shape) != value.dim() or any(n % o for n, o in zip(shape, value.shape)):
            raise ValueError(
                f"init_from: {key}: shape {tuple(value.shape)} cannot be widened to {tuple(shape)}"
            )
        wide = value
        for dim, (new, old) in enumerate(zip(shape[:2], value.shape[:2])):
            if new == old:
                continue
            index = torch.arange(new) % old
            wide = wide.index_select(dim, index)
            if dim == 1:  # the input side: f copies sum back to the old value
                wide = wide / (new // old)
                scale = float(wide.std()) if wide.numel() > 1 else 0.0
                wide = wide + noise * scale * torch.randn(wide.shape, generator=generator)
        out[key] = wide.contiguous()
    return out


SWITCH_INPUT_WEIGHT = "encoder.dsl.switch.mlp.0.weight"


def add_switch_inputs(state, target, widths):
    """A switch extended to read more inputs (a level, the sub-blocks' modulation).

    The new inputs come after the old ones and their columns start at zero, so
    the extended switch predicts exactly what it did; training then teaches it
    to use them. Only an old input count in ``widths`` (the new switch's
    :attr:`~speechbrain_dsl.nnet.switch.SegmentStatsHead.input_widths`) is a
    prefix of the new inputs: any other (a modulation-reading switch given a
    level, whose column comes first) passes unchanged, to be refused as a shape
    mismatch. Other states pass unchanged.

    Example
    -------
    >>> state = {SWITCH_INPUT_WEIGHT: torch.ones(2, 4)}
    >>> add_switch_inputs(state, {SWITCH_INPUT_WEIGHT: torch.empty(2, 6)}, (4, 6))[
    ...     SWITCH_INPUT_WEIGHT].tolist()
    [[1.0, 1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]]
    >>> add_switch_inputs(state, {SWITCH_INPUT_WEIGHT: torch.empty(2, 6)}, (3, 6)) is state
    True
    """
    old, new = state.get(SWITCH_INPUT_WEIGHT), target.get(SWITCH_INPUT_WEIGHT)
    if old is None or new is None or new.shape[0] != old.shape[0]:
        return state
    extra = new.shape[1] - old.shape[1]
    if extra <= 0 or old.shape[1] not in widths:
        return state
    return {**state, SWITCH_INPUT_WEIGHT: torch.cat([old, old.new_zeros(old.shape[0], extra)], 1)}


def init_codec_from(codec, source, widen=False):
    """Loads weights from ``source`` (a packaged folder or a ``codec.ckpt``) into ``codec``.

    Returns the list of keys left at their initial values (DSL-only parts when a
    baseline is retrofitted, else empty). Raises ValueError naming the file when
    the weights do not fit: unknown or missing keys, other shapes, non-finite values.
    With ``widen``, a baseline encoder whose channels are a whole factor narrower
    than ``codec``'s is widened first (:func:`widen_encoder_state`).
    """
    path = Path(source)
    path = path / "codec.ckpt" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(
            f"init_from: no codec weights at {path} (expected a packaged "
            f"folder holding codec.ckpt, or the file itself)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"init_from: cannot read {path}: {err}") from None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"init_from: {path} holds no state dict")
    try:  # a recipe checkpoint with averaged weights starts from the average
        state = averaged_state(path, state)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise ValueError(
            f"init_from: cannot read the weight average beside {path}: {err}"
        ) from None
    retrofit = codec.has_dsl and any(k.startswith("encoder.stages.") for k in state)
    if widen:
        if codec.has_dsl:
            raise ValueError("init_from: widening takes a baseline codec (retrofit a DSL after)")
        state = widen_encoder_state(state, codec.state_dict())
    if retrofit:
        state = baseline_to_dsl_state(state, codec.encoder.split_after)
    expected = codec.state_dict()
    if codec.has_dsl:
        state = add_switch_inputs(state, expected, codec.encoder.dsl.switch.input_widths)
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    allowed_missing = [k for k in missing if retrofit and k.startswith(DSL_ONLY_PREFIXES)]
    problems = []
    if unknown:
        problems.append(f"unknown keys {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    if set(missing) - set(allowed_missing):
        rest = sorted(set(missing) - set(allowed_missing))
        problems.append(f"missing keys {rest[:5]}{' ...' if len(rest) > 5 else ''}")
    for key in set(state) & set(expected):
        if state[key].shape != expected[key].shape:
            problems.append(
                f"{key}: shape {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
            )
        elif has_bad_values(key, state[key]):  # a threshold may be +/-inf, never NaN
            problems.append(f"{key}: non-finite values")
    if problems:
        raise ValueError(f"init_from: {path} does not fit this codec: " + "; ".join(problems[:8]))
    codec.load_state_dict(state, strict=False)
    return allowed_missing
