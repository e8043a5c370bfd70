"""Reader for CTranslate2 ``model.bin`` files (binary version 6), as shipped by the Whisper packages.

Layout (all little-endian)::

    u32 binary version (6)
    string spec name ("WhisperSpec")        string = u16 length counting a trailing NUL, bytes, NUL
    u32 spec revision
    u32 number of variables
      per variable: string name, u8 rank, rank x u32 dims, u8 dtype, u32 byte count, raw bytes
    u32 number of aliases
      per alias: string alias name, string target name

The reader consumes the file exactly to its end; anything else (other version, truncation, trailing
bytes, unknown dtype, a byte count that does not match the shape) raises ``ModelLoadError`` naming
the problem and the byte offset. Arrays are read-only views into the file's bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrt.errors import ModelLoadError

SUPPORTED_BINARY_VERSION = 6
# CTranslate2's DataType enum, in file order.
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: raw 16-bit words, widened by ``as_float32``
}
BFLOAT16_CODE = 5
MAX_RANK = 8


@dataclass(frozen=True, eq=False)
class Ct2Model:
    """The parsed contents of a model.bin: variables by name (aliases resolved by ``get``)."""

    source: str
    binary_version: int
    spec: str
    revision: int
    variables: Mapping[str, np.ndarray]
    dtype_codes: Mapping[str, int]
    aliases: Mapping[str, str]

    def get(self, name: str) -> np.ndarray:
        """The array stored under ``name`` (or the variable an alias points to)."""
        target = self.aliases.get(name, name)
        try:
            return self.variables[target]
        except KeyError:
            raise ModelLoadError(f"{self.source}: no variable {name!r} in the {self.spec} model") from None

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def as_float32(self, name: str) -> np.ndarray:
        """A float32 copy of a weight (float16, bfloat16 and float32 are accepted)."""
        target = self.aliases.get(name, name)
        arr = self.get(name)
        if self.dtype_codes[target] == BFLOAT16_CODE:
            return (arr.astype(np.uint32) << 16).view(np.float32)
        if arr.dtype.kind != "f":
            raise ModelLoadError(f"{self.source}: variable {name!r} is {arr.dtype}, expected a float weight")
        return arr.astype(np.float32)

    def scalar(self, name: str) -> int:
        """A 0-d integer setting such as ``encoder/num_heads``."""
        arr = self.get(name)
        if arr.ndim != 0 or arr.dtype.kind not in "iub":
            raise ModelLoadError(f"{self.source}: {name!r} should be an integer scalar, got {arr.dtype}{list(arr.shape)}")
        return int(arr)


class _Cursor:
    """Bounds-checked reads from a byte buffer; every failure names the offset and what was read."""

    def __init__(self, data: memoryview, source: str):
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, n: int, what: str) -> memoryview:
        left = len(self.data) - self.pos
        if n > left:
            raise ModelLoadError(
                f"{self.source}: truncated at byte {self.pos} while reading {what}: "
                f"need {n} bytes, {left} left (file is {len(self.data)} bytes)"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def string(self, what: str) -> str:
        start = self.pos
        n = self.u16(f"the length of {what}")
        if n == 0:
            raise ModelLoadError(f"{self.source}: {what} at byte {start} has length 0 (no NUL terminator)")
        raw = bytes(self.take(n, what))
        if raw[-1] != 0:
            raise ModelLoadError(f"{self.source}: {what} at byte {start} does not end with NUL")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelLoadError(f"{self.source}: {what} at byte {start} is not UTF-8") from None


def parse_ct2_model(data: bytes | bytearray | memoryview, source: str = "<bytes>") -> Ct2Model:
    """Parse a whole model.bin held in memory. Raises ModelLoadError on any malformation."""
    cur = _Cursor(memoryview(data).cast("B"), source)
    version = cur.u32("the binary version")
    if version != SUPPORTED_BINARY_VERSION:
        raise ModelLoadError(
            f"{source}: not a CTranslate2 model.bin of binary version {SUPPORTED_BINARY_VERSION} "
            f"(first 4 bytes read as version {version}); this reader supports version {SUPPORTED_BINARY_VERSION} only"
        )
    spec = cur.string("the spec name")
    revision = cur.u32("the spec revision")
    count = cur.u32("the number of variables")
    variables: dict[str, np.ndarray] = {}
    codes: dict[str, int] = {}
    for index in range(count):
        name = cur.string(f"the name of variable {index}")
        rank = cur.u8(f"the rank of {name!r}")
        if rank > MAX_RANK:
            raise ModelLoadError(f"{source}: variable {name!r} has rank {rank}, more than {MAX_RANK}")
        dims = tuple(cur.u32(f"dimension {d} of {name!r}") for d in range(rank))
        code = cur.u8(f"the dtype of {name!r}")
        if code not in DTYPES:
            raise ModelLoadError(
                f"{source}: variable {name!r} has unknown dtype code {code} at byte {cur.pos - 1} "
                f"(known: {sorted(DTYPES)})"
            )
        dtype = DTYPES[code]
        nbytes = cur.u32(f"the byte count of {name!r}")
        expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if nbytes != expected:
            raise ModelLoadError(
                f"{source}: variable {name!r} declares {nbytes} bytes but shape {list(dims)} of "
                f"{dtype} needs {expected}"
            )
        if name in variables:
            raise ModelLoadError(f"{source}: variable {name!r} appears twice")
        raw = cur.take(nbytes, f"the data of {name!r}")
        variables[name] = np.frombuffer(raw, dtype=dtype).reshape(dims)
        codes[name] = code
    aliases: dict[str, str] = {}
    n_aliases = cur.u32("the number of aliases")
    for index in range(n_aliases):
        alias = cur.string(f"the name of alias {index}")
        target = cur.string(f"the target of alias {alias!r}")
        if target not in variables:
            raise ModelLoadError(f"{source}: alias {alias!r} points to missing variable {target!r}")
        aliases[alias] = target
    trailing = len(cur.data) - cur.pos
    if trailing:
        raise ModelLoadError(
            f"{source}: {trailing} trailing bytes after the alias table ending at byte {cur.pos} "
            f"(file is {len(cur.data)} bytes): not a complete, single model.bin"
        )
    return Ct2Model(source, version, spec, revision, variables, codes, aliases)


def read_ct2_model(path: str | Path) -> Ct2Model:
    """Read and parse a model.bin file (the whole file is read into memory)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_ct2_model(data, str(path))
