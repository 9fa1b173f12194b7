"""Loading a trained codec: strict weights, checkpoint folders and packaged folders.

What inference and training both need to read a model, and nothing that writes a
checkpoint (the checkpointer, RNG states and the weight average's updates stay in
the training package, which imports this module; never the other way round):

- :func:`load_weights` and :func:`load_state_strict`: ``torch.load`` with
  ``weights_only=True`` (a file cannot run code), the file checked against the
  ``SHA256SUMS`` of its folder (:mod:`speechbrain_dsl.inference.manifest`), then
  every key present with its shape, no unknown key, all values finite (a switch
  threshold may be +/-inf, never NaN: :func:`has_bad_values`);
- :func:`averaged_state`: the weights a recipe checkpoint folder stands for when
  it holds a weight average (:data:`AVERAGE_FILE`);
- :func:`list_checkpoints` and :func:`find_codec_checkpoint` (from
  :mod:`speechbrain_dsl.inference.checkpoint_search`, importable from here): a
  recipe save folder's ``CKPT+...`` folders, read only, and the ``codec.ckpt`` the
  run keeps as best;
- :func:`load_codec` (a codec from a checkpoint) and :func:`load_packaged` (a
  ``Pretrained`` interface from a packaged folder).

Each failure is a ``ValueError`` (:class:`CheckpointError`) naming the file and
what is wrong with it.
"""

import logging
import os
import pickle
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_dsl.inference.checkpoint_search import (
    BEST_BY,
    find_codec_checkpoint,
    list_checkpoints,
    warn_once,
)
from speechbrain_dsl.inference.manifest import (
    MANIFEST,
    CheckpointError,
    sha256_file,
    verify_manifest,
)

__all__ = [
    "AVERAGE_FILE",
    "BEST_BY",
    "INFINITE_ALLOWED",
    "MANIFEST",
    "RECOVERABLE",
    "CheckpointError",
    "averaged_state",
    "check_state_dict",
    "find_codec_checkpoint",
    "has_bad_values",
    "list_checkpoints",
    "load_codec",
    "load_packaged",
    "load_state_strict",
    "load_weights",
    "read_average",
    "sha256_file",
    "verify_manifest",
    "warn_once",
]

#: The checkpoint recoverable of a weight average, and its file in a ``CKPT+`` folder
#: (written by the training package's ``WeightAverage``).
RECOVERABLE = "codec_average"
AVERAGE_FILE = f"{RECOVERABLE}.ckpt"
#: Buffers (the last part of a state-dict key) where +/-inf is a meaningful
#: value: a switch threshold of inf sends every segment to the light tail (and
#: -inf none). NaN is refused there too.
INFINITE_ALLOWED = ("calibrated_threshold",)
PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


# --- strict weights ----------------------------------------------------------------


def has_bad_values(key: str, value: torch.Tensor) -> bool:
    """True when a state-dict tensor holds values no checkpoint may hold.

    NaN anywhere; +/-inf outside the :data:`INFINITE_ALLOWED` buffers.

    Example
    -------
    >>> has_bad_values("encoder.dsl.calibrated_threshold", torch.tensor(float("inf")))
    False
    >>> has_bad_values("encoder.dsl.calibrated_threshold", torch.tensor(float("nan")))
    True
    >>> has_bad_values("decoder.weight", torch.tensor([1.0, float("-inf")]))
    True
    """
    if not value.is_floating_point():
        return False
    if key.rsplit(".", 1)[-1] in INFINITE_ALLOWED:
        return bool(torch.isnan(value).any())
    return not bool(torch.isfinite(value).all())


def check_state_dict(module: torch.nn.Module, state, source: PathLike) -> None:
    """Raises a ``ValueError`` naming ``source`` unless ``state`` fits ``module`` exactly.

    Every key of ``module.state_dict()`` must be present with the same shape,
    there must be no other key, and every floating-point value must be finite
    (a switch threshold may also be +/-inf: :func:`has_bad_values`).

    Example
    -------
    >>> check_state_dict(torch.nn.Linear(2, 2), {"weight": torch.ones(2, 3)}, "x.ckpt")
    Traceback (most recent call last):
    ...
    speechbrain_dsl.inference.manifest.CheckpointError: x.ckpt does not fit Linear: 1 missing key(s) (bias); 1 shape mismatch(es) (weight: (2, 3) instead of (2, 2))
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict")
    expected = module.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({_some(missing)})")
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s) ({_some(unknown)})")
    shapes, nontensor, nonfinite = [], [], []
    for key, value in state.items():
        if key not in expected:
            continue
        if not torch.is_tensor(value):
            nontensor.append(f"{key}: {type(value).__name__}")
        elif value.shape != expected[key].shape:
            shapes.append(f"{key}: {tuple(value.shape)} instead of {tuple(expected[key].shape)}")
        elif has_bad_values(key, value):
            nonfinite.append(key)
    if nontensor:
        problems.append(f"{len(nontensor)} value(s) not tensors ({_some(nontensor)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es) ({_some(shapes)})")
    if nonfinite:
        problems.append(
            f"NaN or infinite values in {len(nonfinite)} tensor(s) ({_some(nonfinite)})"
        )
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(module).__name__}: " + "; ".join(problems)
        )


def _some(items, shown=3):
    return ", ".join(items[:shown]) + (
        f", ... {len(items) - shown} more" if len(items) > shown else ""
    )


def load_weights(path: PathLike):
    """``torch.load(path, weights_only=True)`` with a ``ValueError`` naming the file.

    Example
    -------
    >>> load_weights("/nonexistent/codec.ckpt")
    Traceback (most recent call last):
    ...
    speechbrain_dsl.inference.manifest.CheckpointError: weights file not found: /nonexistent/codec.ckpt
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        pickle.UnpicklingError,
    ) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot load {path}: not an intact weights file ({reason})"
        ) from None


def load_state_strict(
    module: torch.nn.Module, path: PathLike, verify: bool = True, averaged: bool = False
) -> torch.nn.Module:
    """Loads ``path`` into ``module`` strictly; returns ``module``.

    The file is read with ``weights_only=True`` (it cannot run code); if its
    folder (or, for a symlink, its target's folder) has a ``SHA256SUMS``
    manifest, the file must be listed there with the same sha256 (``verify``).
    With ``averaged``, a ``codec.ckpt`` in a recipe checkpoint folder that holds a
    weight average (:data:`AVERAGE_FILE`) loads the averaged parameters, the
    model the run validated (:func:`averaged_state`); resuming training loads
    the live weights (the default).
    Then every key of the module must be present with its shape, no unknown
    key is allowed and all floating-point values must be finite (a switch
    threshold may be +/-inf, never NaN). Each failure
    is a ``ValueError`` (:class:`CheckpointError`) naming the file.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "layer.ckpt"
    >>> torch.save({"weight": torch.ones(2, 2)}, path)
    >>> load_state_strict(torch.nn.Linear(2, 2), path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_dsl.inference.manifest.CheckpointError: .../layer.ckpt does not fit Linear: 1 missing key(s) (bias)
    """
    path = Path(path)
    if verify:
        _verify_one(path)
    state = load_weights(path)
    average = path.parent / AVERAGE_FILE
    if averaged and average.is_file():
        if verify:
            _verify_one(average)
        state = averaged_state(path, state)
    check_state_dict(module, state, path)
    module.load_state_dict(state, strict=True)
    return module


def _verify_one(path: Path) -> None:
    """Checks ``path`` against the manifest of its folder (or of its symlink target's)."""
    for candidate in dict.fromkeys((path, path.resolve())):
        if (candidate.parent / MANIFEST).is_file():
            verify_manifest(candidate.parent, [candidate.name])
            return
    warn_once(
        ("no manifest", str(path.parent)),
        f"{path.parent} has no {MANIFEST} checksum manifest: {path.name} is loaded "
        f"without an integrity check (only key, shape and finiteness checks)",
        logger,
    )


# --- the weight average, read side ---------------------------------------------------


def read_average(path: PathLike) -> Dict:
    """The ``{"steps", "decay", "weights"}`` dict of an :data:`AVERAGE_FILE` (weights only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"steps", "weights"} <= set(state):
        raise ValueError(f"{path}: not a weight average (expected steps and weights)")
    return state


def averaged_state(codec_ckpt: PathLike, state: Optional[Dict] = None) -> Dict:
    """The weights a checkpoint folder stands for: ``codec.ckpt`` with averaged parameters.

    ``state`` is ``codec.ckpt``'s state dict (read when not given). When an
    :data:`AVERAGE_FILE` beside it holds at least one update, its parameters
    replace the live ones; buffers stay. Otherwise ``state`` is returned as is.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> torch.save({"w": torch.zeros(1), "buf": torch.ones(1)}, folder / "codec.ckpt")
    >>> torch.save({"steps": 3, "weights": {"w": torch.full((1,), 2.0)}}, folder / AVERAGE_FILE)
    >>> averaged_state(folder / "codec.ckpt")
    {'w': tensor([2.]), 'buf': tensor([1.])}
    """
    path = Path(codec_ckpt)
    if state is None:
        state = torch.load(path, map_location="cpu", weights_only=True)
    average_path = path.parent / AVERAGE_FILE
    if not average_path.is_file():
        return state
    average = read_average(average_path)
    if int(average["steps"]) == 0:
        return state
    unknown = sorted(set(average["weights"]) - set(state))
    if unknown:
        raise ValueError(f"{average_path}: parameters not in {path.name}: {unknown[:3]}")
    return {**state, **average["weights"]}


# --- models ------------------------------------------------------------------------


def load_codec(model_yaml, checkpoint, overrides=None, min_key=None, max_key=None):
    """Builds the codec of ``model_yaml`` and loads weights (and threshold) from ``checkpoint``.

    ``model_yaml=None`` takes the model definition that travels with the weights:
    the ``hyperparams.yaml`` of a packaged folder, checked against the folder's
    ``SHA256SUMS`` like the weights. A checkpoint without one (a recipe's
    ``CKPT+`` folder) needs ``model_yaml``. ``checkpoint``, ``min_key`` and
    ``max_key`` are as in :func:`find_codec_checkpoint`.

    Weights are loaded with :func:`load_state_strict` (``weights_only=True``: a
    checkpoint cannot run code; checksum, keys, shapes and finiteness checked):
    a corrupt, truncated or foreign file raises a ValueError naming it.
    """
    ckpt = find_codec_checkpoint(checkpoint, min_key=min_key, max_key=max_key)
    if model_yaml is None:
        model_yaml = ckpt.parent / "hyperparams.yaml"
        if not model_yaml.is_file():
            raise ValueError(
                f"{ckpt} has no hyperparams.yaml beside it (not a packaged folder): "
                f"name the model definition with model_yaml"
            )
        _verify_one(model_yaml)  # the definition travels with the weights: checked alike
    model_yaml = Path(model_yaml)
    if not model_yaml.is_file():
        raise ValueError(f"model YAML not found: {model_yaml}")
    with open(model_yaml) as f:
        codec = load_hyperpyyaml(f, overrides or {})["codec"]
    load_state_strict(codec, ckpt, averaged=True)  # a run's checkpoint: the model it validated
    return codec.eval()


def load_packaged(
    cls,
    source,
    hparams_file="hyperparams.yaml",
    overrides=None,
    overrides_must_match=True,
    savedir=None,
    download_only=False,
    local_strategy=None,
    fetch_config=None,
    verify=True,
    **kwargs,
):
    """A ``Pretrained`` subclass ``cls`` from a local packaged folder, loaded strictly.

    What ``Pretrained.from_hparams`` does for a local folder, except that the
    folder's ``SHA256SUMS`` is checked first (a folder without one loads with a
    warning) and every loadable of the ``pretrainer`` is loaded with
    :func:`load_state_strict`: a corrupt, foreign, empty or non-finite
    ``codec.ckpt`` is a ``ValueError`` naming it instead of a model with random
    weights. Nothing is copied or linked (``savedir`` is only recorded in the
    hparams; ``local_strategy`` and ``fetch_config`` do not apply); other
    ``kwargs`` (``run_opts``, ``freeze_params``) go to ``cls``.
    """
    folder = Path(source)
    hparams_path = folder / hparams_file
    if not hparams_path.is_file():
        raise ValueError(f"packaged codec folder {folder} is missing {hparams_file}")
    if verify and not verify_manifest(folder):
        logger.warning(
            f"{folder} has no {MANIFEST} checksum manifest: loaded without an integrity check "
            f"(write one with python -m speechbrain_dsl.inference.package --manifest-only "
            f"{folder})"
        )
    if download_only:
        return None
    try:
        with open(hparams_path, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides or {}, overrides_must_match)
    except Exception as err:  # YAML syntax, a missing class, a bad override
        raise ValueError(
            f"cannot build the model of {hparams_path}: {type(err).__name__}: {err}"
        ) from None
    pretrainer = hparams.get("pretrainer") if isinstance(hparams, dict) else None
    if pretrainer is None or "modules" not in hparams:
        raise ValueError(f"{hparams_path} defines no 'modules' and 'pretrainer'")
    hparams["savedir"] = savedir
    for name, obj in pretrainer.loadables.items():
        path = Path(pretrainer.paths.get(name, f"{name}.ckpt"))
        path = path if path.is_absolute() else folder / path
        if not isinstance(obj, torch.nn.Module):
            raise ValueError(
                f"{hparams_path}: loadable {name!r} is a {type(obj).__name__}, not a torch module"
            )
        load_state_strict(obj, path, verify=verify)
    return cls(hparams["modules"], hparams, **kwargs)
