"""What the recipes share before and while they train.

- :func:`read_plain_hparams` and :func:`check_hparams`: a recipe checks the types
  and ranges of its hyperparameters (from the YAML file and the command line
  alike) before anything is built, prepared or written; every problem is named
  in one ``ValueError`` as ``key=value: expected ...``.
- :func:`quiet_third_party_loggers`: SpeechBrain's ``log.txt`` takes every DEBUG
  record; numba alone writes megabytes of them when it compiles (ViSQOL's
  kernels). Third-party loggers are set to WARNING.
- :class:`RunningMeans`: per-term sums and counts of an epoch that survive an
  intra-epoch checkpoint and are averaged over all processes under DDP.

Example
-------
>>> rules = {"number_of_epochs": integer(low=1), "lr": number(above=0)}
>>> check_hparams({"number_of_epochs": "abc", "lr": 0.001}, rules, "train.yaml")
Traceback (most recent call last):
...
ValueError: bad hyperparameter in train.yaml: number_of_epochs='abc': expected an integer >= 1
"""

import json
import logging
import math
import os
import reprlib
from numbers import Real
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Union

import ruamel.yaml
import torch
import yaml
from hyperpyyaml import resolve_references
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process, is_distributed_initialized

from speechbrain_dsl.atomic import write_text
from speechbrain_dsl.data.audio import read_json

PathLike = Union[str, os.PathLike]
#: A check takes a value and returns what was expected when the value fails, else None.
Check = Callable[[Any], Optional[str]]

#: Loggers whose DEBUG records are noise in a recipe's log.txt.
NOISY_LOGGERS = (
    "numba",
    "matplotlib",
    "PIL",
    "h5py",
    "urllib3",
    "fsspec",
    "filelock",
    "asyncio",
    "tensorboard",
    "git",
)


# --- hyperparameter checks ---------------------------------------------------------


class Tagged:
    """Stands for a tagged HyperPyYAML node (``!new:``, ``!name:``, ...) not built."""

    def __init__(self, tag: str):
        self.tag = tag

    def __repr__(self):
        return self.tag


class _PlainLoader(ruamel.yaml.Loader):
    """Reads resolved HyperPyYAML text as ``load_hyperpyyaml`` does (YAML 1.2 numbers:
    ``1e-3`` is a float), without importing or building anything."""

    yaml_multi_constructors = {}  # not the !new: and !apply: ones HyperPyYAML adds to its base


_PlainLoader.add_multi_constructor("!", lambda loader, suffix, node: Tagged("!" + suffix))


def read_plain_hparams(hparams_file: PathLike, overrides=None) -> Dict[str, Any]:
    """The values of ``hparams_file`` with ``overrides`` applied, nothing built.

    References (``!ref``, ``!include``) are resolved as HyperPyYAML does; tagged
    objects (``!new:``, ``!name:``, ``!apply:``, ``!PLACEHOLDER``) stay
    :class:`Tagged` markers, so no class is instantiated and no function runs.
    """
    with open(hparams_file, encoding="utf-8") as f:
        text = resolve_references(f, overrides).getvalue()
    values = yaml.load(text, Loader=_PlainLoader)
    return values if isinstance(values, dict) else {}


def _bounds(low=None, above=None, high=None, below=None) -> str:
    if above is not None and below is not None:
        return f" in ({above}, {below})"
    parts = [
        f">= {low}" if low is not None else None,
        f"> {above}" if above is not None else None,
        f"<= {high}" if high is not None else None,
        f"< {below}" if below is not None else None,
    ]
    parts = [p for p in parts if p]
    return (" " + " and ".join(parts)) if parts else ""


def _outside(value, low=None, above=None, high=None, below=None) -> bool:
    return (
        (low is not None and value < low)
        or (above is not None and value <= above)
        or (high is not None and value > high)
        or (below is not None and value >= below)
    )


def integer(low=None, high=None) -> Check:
    """An ``int`` (not a bool, not a float) within ``[low, high]``."""

    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or _outside(value, low, high=high):
            return "an integer" + _bounds(low, high=high)
        return None

    return check


def number(low=None, above=None, high=None, below=None) -> Check:
    """A finite int or float (not a bool) within the given bounds."""

    def check(value):
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not math.isfinite(value)
            or _outside(value, low, above, high, below)
        ):
            return "a number" + _bounds(low, above, high, below)
        return None

    return check


def boolean() -> Check:
    """``True`` or ``False`` (YAML's true/false; not a string like 'yes please')."""
    return lambda value: None if isinstance(value, bool) else "True or False"


def text() -> Check:
    """A string."""
    return lambda value: None if isinstance(value, str) else "a string"


def one_of(*choices) -> Check:
    """One of ``choices`` (``True`` is not ``1`` here)."""

    def check(value):
        ok = not isinstance(value, bool) and any(
            value == c and type(value) is type(c) for c in choices
        )
        return None if ok else f"one of {', '.join(map(repr, choices))}"

    return check


def optional(check: Check) -> Check:
    """``null`` or whatever ``check`` accepts."""

    def optional_check(value):
        expected = None if value is None else check(value)
        return None if expected is None else f"null or {expected}"

    return optional_check


def list_of(check: Check, choices: Optional[Iterable] = None) -> Check:
    """A non-empty list whose items pass ``check`` (and are among ``choices``, if given)."""
    choices = None if choices is None else tuple(choices)

    def check_list(value):
        item = "items" + (f" among {', '.join(map(str, choices))}" if choices else "")
        if not isinstance(value, list) or not value:
            return f"a non-empty list of {item}"
        for element in value:
            expected = check(element)
            if expected is not None or (choices is not None and element not in choices):
                return f"a non-empty list of {item}" + (f", each {expected}" if expected else "")
        return None

    return check_list


def weights(known: Optional[Iterable[str]], check: Check) -> Check:
    """A mapping from names (among ``known``; any, for ``None``) to values that pass ``check``."""
    known = None if known is None else tuple(known)

    def check_weights(value):
        if not isinstance(value, dict):
            return f"a mapping of {', '.join(known) if known else 'names'} to weights"
        unknown = [k for k in value if known is not None and k not in known]
        if unknown:
            return f"only the terms {', '.join(known)} (unknown: {', '.join(map(str, unknown))})"
        bad = {k: v for k, v in value.items() if check(v) is not None}
        if bad:
            first = next(iter(bad))
            return f"weights that are each {check(bad[first])} ({first}: {bad[first]!r})"
        return None

    return check_weights


def check_hparams(
    values: Mapping[str, Any], rules: Mapping[str, Check], source: PathLike = "the hyperparameters"
) -> None:
    """Raises one ``ValueError`` naming every value of ``values`` that fails its rule.

    Keys absent from ``values`` are skipped (a YAML may not use every key the
    recipe knows). The message reads ``key=value: expected ...`` for each.
    """
    problems = []
    for key, check in rules.items():
        if key in values:
            expected = check(values[key])
            if expected is not None:
                problems.append(f"{key}={_show(values[key])}: expected {expected}")
    if problems:
        what = "bad hyperparameter" + ("s" if len(problems) > 1 else "")
        raise ValueError(f"{what} in {source}: " + "; ".join(problems))


def _show(value) -> str:
    """``repr(value)``, shortened for long lists and mappings."""
    shorten = reprlib.Repr()
    shorten.maxlist = shorten.maxdict = 4
    shorten.maxstring = shorten.maxother = 80
    return shorten.repr(value)


def check_hparams_file(
    hparams_file: PathLike, overrides, rules: Mapping[str, Check]
) -> Dict[str, Any]:
    """:func:`read_plain_hparams` then :func:`check_hparams`; returns the plain values."""
    values = read_plain_hparams(hparams_file, overrides)
    source = f"{hparams_file} (with its command-line overrides)" if overrides else str(hparams_file)
    check_hparams(values, rules, source)
    return values


def check_manifest(path: PathLike, fields: Iterable[str] = ("wav",)) -> dict:
    """The entries of a JSON manifest, each checked to be an object with ``fields``.

    A ``ValueError`` names the file (and the entry and field) when it does not
    parse, is not a JSON object of objects, or lacks a field.
    """
    entries = read_json(path, "manifest", expect=dict)
    for utt, entry in entries.items():
        if not isinstance(entry, dict):
            raise ValueError(
                f"manifest {path}: entry {utt!r} is a JSON {type(entry).__name__}, "
                f"expected an object with the fields {', '.join(fields)}"
            )
        missing = [f for f in fields if f not in entry]
        if missing:
            raise ValueError(
                f"manifest {path}: entry {utt!r} lacks the field(s) {', '.join(missing)}"
            )
    return entries


#: The hyperparameters both probe recipes (Speech Commands, LibriCount) share.
PROBE_RULES = {
    "seed": integer(),
    "skip_prep": boolean(),
    "cpu_threads": integer(low=1),
    "model_yaml": optional(text()),
    "codec_checkpoint": text(),
    "threshold": optional(number()),
    "encode_batch_size": integer(low=1),
    "modes": list_of(text(), ("full", "light", "mixed")),
    "features": one_of("embedding", "tokens"),
    "number_of_epochs": integer(low=1),
    "batch_size": integer(low=1),
    "lr": number(above=0),
}


# --- logging -----------------------------------------------------------------------


def quiet_third_party_loggers(names: Iterable[str] = NOISY_LOGGERS, level: int = logging.WARNING):
    """Sets the loggers ``names`` (and so their children) to ``level``.

    Called by every recipe: ``log.txt`` records DEBUG, and numba alone writes
    ~7 MB of SSA and bytecode dumps each time it compiles ViSQOL's kernels.
    """
    for name in names:
        logging.getLogger(name).setLevel(level)


# --- running means -----------------------------------------------------------------


def _world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed_initialized() else 1


def _gather(obj):
    """``[obj of every process]`` (``[obj]`` without DDP); a collective under DDP."""
    if not is_distributed_initialized():
        return [obj]
    gathered = [None] * _world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


class RunningMeans:
    """Sums and counts of named values (e.g. loss terms) over an epoch.

    A checkpoint recoverable: an intra-epoch checkpoint stores the sums of all
    processes, so the epoch's means after a resume equal those of a run that
    never stopped. Under DDP :meth:`means` and the saver are collectives (every
    process must call them): the means are over all processes' values.

    Example
    -------
    >>> means = RunningMeans()
    >>> means.add("mel", 1.0); means.add("mel", 2.0); means.add("loss_d", 4.0)
    >>> means.means()
    {'mel': 1.5, 'loss_d': 4.0}
    """

    def __init__(self):
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}

    def add(self, key: str, value) -> None:
        """Adds one value (a float or a one-element tensor) to ``key``'s sum."""
        self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.counts[key] = self.counts.get(key, 0) + 1

    def reset(self) -> None:
        """Forgets every value (at the end of an epoch)."""
        self.sums, self.counts = {}, {}

    def totals(self):
        """``(sums, counts)`` over all processes (a collective under DDP)."""
        sums, counts = {}, {}
        for part_sums, part_counts in _gather((self.sums, self.counts)):
            for key, value in part_sums.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + part_counts[key]
        return sums, counts

    def means(self) -> Dict[str, float]:
        """``{key: mean}`` over all processes, in the order keys were first added."""
        sums, counts = self.totals()
        return {key: sums[key] / counts[key] for key in sums}

    @mark_as_saver
    def _save(self, path):
        sums, counts = self.totals()  # every process takes part; the main one writes
        if if_main_process():
            write_text(path, json.dumps({"sums": sums, "counts": counts}))

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        del end_of_epoch
        if not if_main_process():  # the main process holds everyone's sums
            self.reset()
            return
        state = read_json(path, "running means", expect=dict)
        sums, counts = state.get("sums"), state.get("counts")
        if not (isinstance(sums, dict) and isinstance(counts, dict) and set(sums) == set(counts)):
            raise ValueError(
                f"running means {Path(path)} is corrupt (sums and counts do not match)"
            )
        self.sums = {k: float(v) for k, v in sums.items()}
        self.counts = {k: int(v) for k, v in counts.items()}


# Savers run on every process (the saver gathers), not on the main one only.
register_checkpoint_hooks(RunningMeans, save_on_main_only=False)


def refuse_distributed_debug(run_opts: Mapping[str, Any], environ: Mapping[str, str] = os.environ):
    """Stops a ``--debug`` run started by torchrun with a message saying why.

    SpeechBrain's debug mode gives each rank its own temporary checkpoint folder, so
    ranks would disagree on every checkpoint (the first symptom is a misleading
    ``checkpoint_key`` error on rank 1). Debug runs are single-process.

    Example
    -------
    >>> refuse_distributed_debug({"debug": True}, {"WORLD_SIZE": "1"})
    >>> refuse_distributed_debug({"debug": True}, {"WORLD_SIZE": "2"})
    Traceback (most recent call last):
    ...
    SystemExit: --debug runs in one process (SpeechBrain gives each rank its own temporary checkpoint folder): run it without torchrun, or drop --debug
    """
    if run_opts.get("debug") and int(environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(
            "--debug runs in one process (SpeechBrain gives each rank its own temporary "
            "checkpoint folder): run it without torchrun, or drop --debug"
        )
