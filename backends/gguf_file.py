"""Read and check a GGUF file's header without loading its tensors.

`mlx.core.load` reads GGUF tensors fast, but it trusts the file: a truncated or
foreign file can crash it or hand back garbage. So before anything touches the
tensors, `read_header` walks the header in pure Python (the metadata, the tensor
table) and checks that every tensor lies inside the file. Every problem a user can
cause becomes one `InputError` line that names the file and says what to do.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
(magic, version, tensor count, key/value count, key/values, tensor infos, padding
to `general.alignment`, tensor data).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pocketsleep.errors import InputError, require

# GGUF metadata value types (gguf.md "gguf_metadata_value_type").
_SCALARS = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4",
          7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy/MLX order (GGUF stores the reverse)
    type_name: str          # ggml type, e.g. "Q4_1", "F32"
    type_id: int
    offset: int             # from the start of the data section
    nbytes: int


@dataclass
class GGUFHeader:
    path: Path
    version: int
    metadata: dict = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    data_offset: int = 0
    file_size: int = 0

    def get(self, key: str, default=None):
        return self.metadata.get(key, default)

    def arch_get(self, key: str, default=None):
        """`{architecture}.{key}`, e.g. arch_get("block_count")."""
        return self.metadata.get(f"{self.metadata.get('general.architecture')}.{key}", default)


class _Truncated(Exception):
    pass


class _Cursor:
    """Little-endian reads from a buffer, raising _Truncated past its end."""

    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.size:
            raise _Truncated(f"needs byte {start + n:,} of {self.size:,}")
        self.pos = start + n
        return start

    def scalar(self, fmt: str, n: int):
        return struct.unpack_from(fmt, self.buf, self.take(n))[0]

    def u32(self) -> int:
        return self.scalar("<I", 4)

    def u64(self) -> int:
        return self.scalar("<Q", 8)

    def string(self) -> str:
        n = self.u64()
        start = self.take(n)
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")

    def strings(self, count: int) -> list[str]:
        # The hot loop of the header (vocabularies and merges hold ~50k-150k
        # strings each), so it avoids per-item method calls.
        if count > self.size:  # each string takes at least 8 bytes
            raise _Truncated(f"array of {count:,} strings")
        buf, pos, size, unpack = self.buf, self.pos, self.size, struct.Struct("<Q").unpack_from
        out = []
        append = out.append
        try:
            for _ in range(count):
                n = unpack(buf, pos)[0]
                pos += 8
                append(buf[pos:pos + n].decode("utf-8", errors="replace"))
                pos += n
        except struct.error:
            pos = size + 1
        if pos > size:
            raise _Truncated(f"an array of {count:,} strings runs past the end")
        self.pos = pos
        return out

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.scalar(*_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.u32(), self.u64()
            if itype == _STRING:
                return self.strings(count)
            if itype in _NUMPY:
                width = np.dtype(_NUMPY[itype]).itemsize
                start = self.take(count * width)
                arr = np.frombuffer(self.buf, _NUMPY[itype], count, start).copy()
                return arr.astype(bool) if itype == 7 else arr
            raise ValueError(f"unsupported array element type {itype}")
        raise ValueError(f"unknown metadata value type {vtype}")


def _ggml_types() -> dict[int, tuple[str, int, int]]:
    """ggml type id -> (name, values per block, bytes per block), from gguf-py."""
    constants = require("gguf.constants", "mlx", "Reading GGUF files")
    GGML_QUANT_SIZES, GGMLQuantizationType = constants.GGML_QUANT_SIZES, constants.GGMLQuantizationType
    return {int(t): (t.name, *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType}


def read_header(path: Path) -> GGUFHeader:
    """Parse and check the header of the GGUF file at `path`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found; pass the path of a .gguf model file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a GGUF file; pass the .gguf file itself")
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            if size < 4 or f.read(4) != b"GGUF":
                raise InputError(
                    f"{path}: not a GGUF file (it does not start with 'GGUF'); "
                    "pass a .gguf model file as written by llama.cpp"
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(path, buf, size)
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e}); check the file") from None


def _parse(path: Path, buf, size: int) -> GGUFHeader:
    cur = _Cursor(buf, size)
    cur.take(4)  # magic, already checked
    try:
        version = cur.u32()
        if version not in (2, 3):
            raise InputError(
                f"{path}: GGUF version {version} is not supported (only 2 and 3, "
                "little-endian); re-convert the model with a current llama.cpp"
            )
        n_tensors, n_kv = cur.u64(), cur.u64()
        if n_tensors > size or n_kv > size:
            raise _Truncated("impossible tensor or key counts")
        header = GGUFHeader(path=path, version=version, file_size=size)
        for _ in range(n_kv):
            key = cur.string()
            header.metadata[key] = cur.value(cur.u32())
        types = _ggml_types()
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.u32()
            if n_dims > 8:
                raise _Truncated(f"tensor {name!r} claims {n_dims} dimensions")
            dims = [cur.u64() for _ in range(n_dims)]
            type_id, offset = cur.u32(), cur.u64()
            if type_id not in types:
                raise InputError(
                    f"{path}: tensor {name!r} has an unknown ggml type {type_id}; "
                    "this file needs a newer converter than pocketsleep has"
                )
            type_name, block, block_bytes = types[type_id]
            count = int(np.prod(dims, dtype=np.uint64)) if dims else 1
            if count % block:
                raise _Truncated(f"tensor {name!r} size is not a whole number of blocks")
            infos.append(TensorInfo(name, tuple(reversed(dims)), type_name, type_id,
                                    offset, count // block * block_bytes))
        align = int(header.metadata.get("general.alignment", 32) or 32)
        header.data_offset = (cur.pos + align - 1) // align * align
    except _Truncated as e:
        raise InputError(
            f"{path}: the GGUF file is truncated or corrupt ({e}); download or copy it again"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: the GGUF header cannot be parsed ({e}); check the file") from None
    for info in infos:
        end = header.data_offset + info.offset + info.nbytes
        if end > size:
            raise InputError(
                f"{path}: the GGUF file is truncated (tensor {info.name!r} ends at byte "
                f"{end:,} but the file has {size:,}); download or copy it again"
            )
        header.tensors[info.name] = info
    return header
