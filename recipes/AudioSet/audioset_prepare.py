"""Data preparation for AudioSet Speech vs Silence: manifests of locally stored clips.

AudioSet is distributed as segment lists, not audio. Download the CSVs from
<https://research.google.com/audioset/download.html> (``eval_segments.csv``,
``balanced_train_segments.csv``, ``class_labels_indices.csv``) and fetch the clips
you can with a tool of your choice; store them in one folder under any of the
common names ``Y<YTID>.wav``, ``<YTID>.wav``, ``<YTID>.flac`` or
``<YTID>_<start>.wav``. Clips listed but not found are skipped and counted (a real
download always misses some), malformed CSV lines are skipped and reported.

Each manifest entry: ``{"wav", "duration", "label" ("speech" | "silence"), "ytid",
"start", "end"}``. A clip labelled both Speech and Silence is ambiguous and skipped.
Bad clips (unreadable, empty, truncated, a name that is not UTF-8) are refused,
all named in one error, or left out and counted with ``skip_bad_audio=True`` (the
rule of :mod:`speechbrain_dsl.data.audio`, the same in every prepare script). The
CSVs must be UTF-8; an error names the file and line otherwise.
"""

import csv
import io
import logging
from pathlib import Path

from speechbrain_dsl.atomic import write_json
from speechbrain_dsl.data.audio import AudioChecker, read_text

logger = logging.getLogger(__name__)
TARGETS = {"/m/09x0r": "speech", "/m/028v0c": "silence"}
NAME_SCHEMES = (
    "Y{ytid}.wav",
    "{ytid}.wav",
    "{ytid}.flac",
    "Y{ytid}.flac",
    "{ytid}_{start}.wav",
    "{ytid}_{start}.flac",
)


def read_class_labels(path):
    """``{mid: display_name}`` from ``class_labels_indices.csv``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"class label index not found: {path}")
    reader = csv.DictReader(io.StringIO(read_text(path, "class label index"), newline=""))
    if reader.fieldnames is None or not {"mid", "display_name"} <= set(reader.fieldnames):
        raise ValueError(f"{path}: expected a header 'index,mid,display_name'")
    return {row["mid"]: row["display_name"] for row in reader}


def read_segments(path):
    """Rows ``(ytid, start, end, [labels])`` of an AudioSet segments CSV.

    Returns
    -------
    rows : list of tuple
    malformed : list of (line number, text)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"AudioSet segments CSV not found: {path}")
    rows, malformed = [], []
    for number, line in enumerate(read_text(path, "AudioSet segments CSV").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields = next(csv.reader([line], skipinitialspace=True))
            ytid, start, end, labels = fields
            start, end = float(start), float(end)
            if not ytid or end <= start or not labels:
                raise ValueError
        except (ValueError, StopIteration, csv.Error):
            malformed.append((number, line))
            continue
        rows.append((ytid, start, end, labels.split(",")))
    return rows, malformed


def find_clip(audio_folder, ytid, start):
    """The local file of a segment under any common naming scheme, or None."""
    for scheme in NAME_SCHEMES:
        candidate = Path(audio_folder) / scheme.format(ytid=ytid, start=int(start))
        if candidate.is_file():
            return candidate
    return None


def prepare_audioset(
    segments_csv, class_labels_csv, audio_folder, save_json, skip_prep=False, skip_bad_audio=False
):
    """Writes a Speech/Silence manifest of the clips found locally.

    Arguments
    ---------
    segments_csv : str
        e.g. ``eval_segments.csv``.
    class_labels_csv : str
        ``class_labels_indices.csv`` (checks that Speech and Silence are known).
    audio_folder : str
        Folder holding the clips.
    save_json : str
    skip_prep : bool
    skip_bad_audio : bool
        Leave bad clips out (named in warnings, counted as ``bad``) instead of
        refusing them.

    Returns
    -------
    dict
        Counts: ``speech``, ``silence``, ``missing``, ``malformed``,
        ``ambiguous``, ``other`` (clips of neither class); with
        ``skip_bad_audio`` also ``bad``.
    """
    save_json = Path(save_json)
    if skip_prep:
        return {}
    labels = read_class_labels(class_labels_csv)
    for mid, name in (("/m/09x0r", "Speech"), ("/m/028v0c", "Silence")):
        if mid not in labels:
            raise ValueError(f"{class_labels_csv}: has no {name} class ({mid})")
    if not Path(audio_folder).is_dir():
        raise ValueError(f"AudioSet audio folder does not exist: {audio_folder}")
    rows, malformed = read_segments(segments_csv)
    for number, text in malformed:
        logger.warning(f"{segments_csv}:{number}: malformed line skipped: {text[:80]}")
    counts = {
        "speech": 0,
        "silence": 0,
        "missing": 0,
        "malformed": len(malformed),
        "ambiguous": 0,
        "other": 0,
    }
    checker = AudioChecker(skip_bad=skip_bad_audio)
    entries = {}
    for ytid, start, end, mids in rows:
        classes = {TARGETS[m] for m in mids if m in TARGETS}
        if not classes:
            counts["other"] += 1
            continue
        if len(classes) > 1:
            counts["ambiguous"] += 1
            continue
        clip = find_clip(audio_folder, ytid, start)
        if clip is None:
            counts["missing"] += 1
            continue
        info = checker.check(clip)
        if info is None:
            continue
        label = classes.pop()
        counts[label] += 1
        entries[f"{ytid}_{int(start)}"] = {
            "wav": str(info.path),
            "duration": info.duration,
            "label": label,
            "ytid": ytid,
            "start": start,
            "end": end,
        }
    bad = checker.finish(f"AudioSet clips in {audio_folder}")["bad"]
    if skip_bad_audio:
        counts["bad"] = bad
    if not entries:
        raise ValueError(
            f"no Speech or Silence clip of {segments_csv} was found in {audio_folder} "
            f"(missing: {counts['missing']}, bad: {bad})"
        )
    write_json(save_json, entries)
    logger.info(f"AudioSet manifest {save_json}: {counts}")
    return counts
