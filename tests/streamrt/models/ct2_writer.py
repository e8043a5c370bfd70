"""Test helper: write CTranslate2 model.bin bytes (binary version 6) from arrays, independently of
the reader, following the layout in /work/shared/notes/ct2-format.md."""

from __future__ import annotations

import struct

import numpy as np

CODES = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3, np.dtype("float16"): 4}


def ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_bytes(
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    *,
    version: int = 6,
    spec: str = "WhisperSpec",
    revision: int = 3,
    dtype_override: dict[str, int] | None = None,
) -> bytes:
    out = [struct.pack("<I", version), ct2_string(spec), struct.pack("<II", revision, len(variables))]
    for name, arr in variables.items():
        arr = np.array(arr, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        code = (dtype_override or {}).get(name, CODES.get(arr.dtype))
        out += [ct2_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape)]
        out += [struct.pack("<BI", code, arr.nbytes), arr.astype(arr.dtype.newbyteorder("<")).tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [ct2_string(alias), ct2_string(target)]
    return b"".join(out)
