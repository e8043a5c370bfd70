"""Evaluation data: a TSV with a header, then ``id<TAB>audio<TAB>reference[<TAB>language]``.

Audio paths are relative to the TSV's folder. Rows that cannot be used (wrong number of columns,
empty id or audio, duplicate id) come back as ``DataError`` naming the row (1-based, header = 1);
the usable rows still run. Audio is read later, one row at a time (``load_row_audio``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrt.audio import load_audio
from streamrt.errors import DataError


@dataclass(frozen=True)
class DataRow:
    row: int  # 1-based line in the TSV (header = 1)
    id: str
    audio: Path
    reference: str
    language: str | None = None


def read_data(path: str | Path) -> tuple[list[DataRow], list[DataError]]:
    """Parse the TSV; returns (usable rows, one DataError per unusable row).

    Raises DataError (row None) when the file itself is missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, "data file not found")
    with path.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not lines:
        raise DataError(str(path), None, "data file is empty (expected a header: id, audio, reference)")
    rows: list[DataRow] = []
    errors: list[DataError] = []
    seen: set[str] = set()
    for n, cols in enumerate(lines[1:], start=2):
        if not cols or all(not c.strip() for c in cols):
            continue
        if len(cols) not in (3, 4):
            errors.append(DataError(str(path), n, f"expected 3 or 4 tab-separated columns (id, audio, reference[, language]), got {len(cols)}"))
            continue
        rid, audio, ref = (c.strip() for c in cols[:3])
        lang = cols[3].strip() or None if len(cols) == 4 else None
        if not rid or not audio:
            errors.append(DataError(str(path), n, "empty id or audio column"))
            continue
        if rid in seen:
            errors.append(DataError(str(path), n, f"duplicate id {rid!r}"))
            continue
        seen.add(rid)
        rows.append(DataRow(n, rid, (path.parent / audio), ref, lang))
    return rows, errors


def load_row_audio(data_path: str | Path, row: DataRow, sample_rate: int = 16000) -> np.ndarray:
    """The row's audio as mono float32; DataError naming the row when missing or unreadable."""
    try:
        x = load_audio(row.audio, sample_rate)
    except DataError as e:
        raise DataError(str(data_path), row.row, f"{row.audio}: {e.problem}") from None
    if len(x) == 0:
        raise DataError(str(data_path), row.row, f"{row.audio}: audio is empty")
    return x
