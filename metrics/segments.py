"""Reference segmentation for long-form scoring: a segment file plus one reference per line.

The segment file is the IWSLT / SimulEval / OmniSTEval / FBK one: a YAML (or JSON) list with one
entry per reference sentence, ``{wav: talk1.wav, offset: 12.34, duration: 3.2}`` (seconds from
the start of the recording), in the same order as the lines of the reference file. A recording's
long-form output is one instances.log line whose ``source`` (or ``source[0]``) names its audio.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metrics.io import Instance
from streamrt.errors import DataError


@dataclass(frozen=True, kw_only=True)
class Segment:
    """One reference sentence: its recording, its span (seconds) and its text (line, stripped)."""

    wav: str
    offset_s: float
    duration_s: float
    reference: str

    @property
    def offset_ms(self) -> float:
        return self.offset_s * 1000

    @property
    def duration_ms(self) -> float:
        return self.duration_s * 1000


def _load_segment_list(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"not valid JSON ({e.msg})") from None
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("YAML segment files need PyYAML; or give the segments as .json") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, mark.line + 1 if mark else None, f"not valid YAML ({e})") from None


def read_segments(segments_path: str | Path, references_path: str | Path) -> list[Segment]:
    """Read a segment file (.yaml/.yml or .json) and its reference file (one line per segment).

    Raises DataError naming the file and the 1-based entry/line for a bad entry, a count
    mismatch, or a non-positive duration.
    """
    segments_path, references_path = str(segments_path), str(references_path)
    entries = _load_segment_list(segments_path)
    if not isinstance(entries, list) or not entries:
        raise DataError(segments_path, None, "expected a non-empty list of {wav, offset, duration} entries")
    with open(references_path, encoding="utf-8") as f:
        references = [line.strip() for line in f]
    if len(references) != len(entries):
        raise DataError(
            references_path, None,
            f"{len(references)} reference lines for {len(entries)} segments in {segments_path}",
        )
    out = []
    for row, (entry, reference) in enumerate(zip(entries, references), 1):
        if not isinstance(entry, dict) or not all(k in entry for k in ("wav", "offset", "duration")):
            raise DataError(segments_path, row, "segment entry needs 'wav', 'offset' and 'duration'")
        offset, duration = entry["offset"], entry["duration"]
        for key, value in (("offset", offset), ("duration", duration)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise DataError(segments_path, row, f"segment {key} must be a number of seconds, got {value!r}")
        if duration <= 0:
            raise DataError(segments_path, row, f"segment duration must be positive, got {duration!r} s")
        out.append(Segment(wav=str(entry["wav"]), offset_s=offset, duration_s=duration, reference=reference))
    return out


def group_by_recording(segments: Sequence[Segment]) -> dict[str, list[tuple[int, Segment]]]:
    """``{basename(wav): [(segment number, segment), ...]}`` in first-appearance order."""
    groups: dict[str, list[tuple[int, Segment]]] = {}
    for i, seg in enumerate(segments):
        groups.setdefault(os.path.basename(seg.wav), []).append((i, seg))
    return groups


def match_recordings(instances: Sequence[Instance], recordings: Sequence[str], log_name: str = "<log>") -> dict[str, Instance]:
    """Map each recording (basename) to the log instance whose source names it (by basename,
    else by file stem). Raises DataError when one is missing, ambiguous or unused."""
    by_name: dict[str, Instance] = {}
    for ins in instances:
        name = ins.recording
        if name is None:
            raise DataError(log_name, None, f"instance {ins.index} has no 'source' naming its recording")
        base = os.path.basename(name)
        if base in by_name:
            raise DataError(log_name, None, f"two instances for recording {base!r}")
        by_name[base] = ins
    stems = {Path(b).stem: b for b in by_name}
    out: dict[str, Instance] = {}
    for rec in recordings:
        key = rec if rec in by_name else stems.get(Path(rec).stem)
        if key is None:
            raise DataError(log_name, None, f"no instance in the log for recording {rec!r}")
        out[rec] = by_name.pop(key)
    if by_name:
        raise DataError(log_name, None, f"instances for recordings with no segments: {', '.join(sorted(by_name))}")
    return out
