"""Finding a run's checkpoints, read only: the ``CKPT+...`` folders and the best one.

A recipe's save folder holds SpeechBrain checkpoints (``CKPT+<time>/`` with a
``CKPT.yaml`` meta file and ``<name>.ckpt`` parameter files). Inference, packaging
and training all need to find the ``codec.ckpt`` a run keeps as best without
writing anything there:

- :func:`list_checkpoints`: the checkpoints whose meta file parses (a corrupt one
  is left out with a warning naming it);
- :func:`find_codec_checkpoint`: the ``codec.ckpt`` behind a save folder, one
  ``CKPT+`` folder, a packaged folder or the file itself, ranked by a meta key
  or by the :data:`BEST_BY` entry the run recorded;
- :func:`warn_once`: the once-per-process warning these searches (and the
  checkpointer's recovery) give about a checkpoint they skip or cannot rank.

Loading the weights found is :mod:`speechbrain_dsl.inference.loading`'s job.
"""

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import yaml
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    ckpt_recency,
)

__all__ = ["BEST_BY", "find_codec_checkpoint", "list_checkpoints", "warn_once"]

#: Meta key of a checkpoint kept by ``save_and_keep_only`` with one ranking key:
#: ``{"min_key": name}`` or ``{"max_key": name}``, the key the run keeps the best by.
BEST_BY = "best_by"
PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)
_warned = set()  # keys already warned about, to warn once per process


def warn_once(key, message: str, log: logging.Logger = logger) -> None:
    """Logs ``message`` as a warning on ``log`` the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def list_checkpoints(folder: PathLike) -> List[Checkpoint]:
    """The ``CKPT+...`` checkpoints of a save folder whose ``CKPT.yaml`` parses.

    SpeechBrain's ``Checkpoint`` tuples (``path``, ``meta``, ``paramfiles``), in no
    particular order. A checkpoint whose meta file is unreadable, corrupt or has
    no ``unixtime`` is left out with a warning naming it; a folder that does not
    exist holds none.

    Example
    -------
    >>> import tempfile
    >>> save = Path(tempfile.mkdtemp())
    >>> (save / "CKPT+a").mkdir()
    >>> _ = (save / "CKPT+a" / "CKPT.yaml").write_text("unixtime: 1.0\\nloss: 0.5\\n")
    >>> _ = (save / "CKPT+a" / "codec.ckpt").write_bytes(b"")
    >>> [(c.path.name, c.meta["loss"], list(c.paramfiles)) for c in list_checkpoints(save)]
    [('CKPT+a', 0.5, ['codec'])]
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    checkpoints = []
    for ckpt_dir in folder.iterdir():
        meta_path = ckpt_dir / METAFNAME
        if not (ckpt_dir.is_dir() and ckpt_dir.name.startswith(CKPT_PREFIX)):
            continue
        if not meta_path.exists():
            continue
        try:
            meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or not isinstance(meta.get("unixtime"), (int, float)):
                raise ValueError("no 'unixtime' entry")
        except (OSError, ValueError, yaml.YAMLError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            warn_once(
                ("meta", str(meta_path)),
                f"skipping checkpoint {ckpt_dir}: its {METAFNAME} is unreadable "
                f"or corrupt ({reason})",
            )
            continue
        paramfiles = {p.stem: p for p in ckpt_dir.iterdir() if p.suffix == PARAMFILE_EXT}
        checkpoints.append(Checkpoint(ckpt_dir, meta, paramfiles))
    return checkpoints


def find_codec_checkpoint(
    path, min_key: Optional[str] = None, max_key: Optional[str] = None
) -> Path:
    """The ``codec.ckpt`` file behind ``path``.

    Arguments
    ---------
    path : str or Path
        A save folder of a run (checkpoints ``CKPT+...``), one ``CKPT+...``
        folder, a packaged folder or the ``codec.ckpt`` file itself.
    min_key, max_key : str, optional
        In a save folder, take the checkpoint with the lowest (highest) value of
        this ``CKPT.yaml`` entry (at most one of them). Without either, the
        checkpoint the run itself keeps as best (the :data:`BEST_BY` entry
        ``AtomicCheckpointer.save_and_keep_only`` writes), else the latest
        checkpoint. If no checkpoint holds the key, the latest is taken, with a
        warning. Among equal values the latest wins.

    Returns
    -------
    Path

    Example
    -------
    >>> import tempfile
    >>> save = Path(tempfile.mkdtemp())
    >>> for name, loss, time in (("CKPT+first", 1.0, 1.0), ("CKPT+latest", 2.0, 2.0)):
    ...     (save / name).mkdir()
    ...     _ = (save / name / "CKPT.yaml").write_text(f"unixtime: {time}\\nloss: {loss}\\n")
    ...     _ = (save / name / "codec.ckpt").write_bytes(b"")
    >>> find_codec_checkpoint(save).parent.name
    'CKPT+latest'
    >>> find_codec_checkpoint(save, min_key="loss").parent.name
    'CKPT+first'
    """
    if min_key is not None and max_key is not None:
        raise ValueError(
            f"find_codec_checkpoint: give min_key ({min_key!r}) or max_key ({max_key!r}), not both"
        )
    path = Path(path)
    if path.is_file():
        return path
    if (path / "codec.ckpt").is_file():
        return path / "codec.ckpt"
    if not path.is_dir():
        raise ValueError(f"codec checkpoint not found: {path}")
    checkpoints = list_checkpoints(path)
    if min_key is not None or max_key is not None:
        ranking = {"min_key": min_key} if min_key is not None else {"max_key": max_key}
    else:
        ranking = _recorded_ranking(checkpoints, path)
    key = next(iter(ranking.values()), None)
    # latest first, so that max() keeps the latest of equal values (as SpeechBrain's ranking)
    by_recency = sorted(checkpoints, key=ckpt_recency, reverse=True)
    ranked = [c for c in by_recency if key is not None and key in c.meta]
    found = by_recency[0] if by_recency else None
    if ranked:
        sign = 1 if "max_key" in ranking else -1
        found = max(ranked, key=lambda c: sign * c.meta[key])
    elif found is not None and key is not None:
        warn_once(
            ("no key", str(path), key),
            f"no checkpoint in {path} records {key!r}: took the latest, {found.path.name}",
        )
    elif found is not None and len(checkpoints) > 1:
        warn_once(
            ("latest", str(path)),
            f"took the latest of {len(checkpoints)} checkpoints in {path}, "
            f"{found.path.name} (they record no best_by entry): name the metric "
            f"to take the best by (min_key / max_key, --min-key)",
        )
    if found is None or not (found.path / "codec.ckpt").is_file():
        raise ValueError(f"{path} holds no checkpoint with a codec.ckpt file")
    return found.path / "codec.ckpt"


def _recorded_ranking(checkpoints, folder) -> Dict[str, str]:
    """The ``best_by`` entry of the latest checkpoint that has one (``{}`` if none)."""
    for checkpoint in sorted(checkpoints, key=ckpt_recency, reverse=True):
        entry = checkpoint.meta.get(BEST_BY)
        if entry is None:
            continue
        if (
            isinstance(entry, dict)
            and len(entry) == 1
            and next(iter(entry)) in ("min_key", "max_key")
            and isinstance(next(iter(entry.values())), str)
        ):
            return dict(entry)
        warn_once(
            ("best_by", str(checkpoint.path)),
            f"{checkpoint.path / METAFNAME}: ignoring its {BEST_BY} entry {entry!r} "
            f"(expected {{min_key: <name>}} or {{max_key: <name>}})",
        )
    return {}
