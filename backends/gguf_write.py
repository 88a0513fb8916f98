"""Write a GGUF file safely: typed metadata, tensors streamed one at a time, and
never a partial file at the target path.

Shared by the model export (gguf_export.py) and the LoRA adapter export
(gguf_lora.py). The tensor table is planned first (names, shapes, ggml types), so
the file's size is known before a byte is written: the free space is checked
against it, then the file is assembled in a temporary sibling of the target,
fsynced and renamed into place. Any failure (a full disk included) removes the
temporary file and becomes one InputError line.
"""

from __future__ import annotations

import errno
import glob
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from pocketsleep.errors import InputError
from pocketsleep.files import fsync_folder, left_by_dead_writer, temp_prefix
from pocketsleep.faults import checkpoint

# A temporary file older than this was left by an export that was killed.
STALE_TEMP_S = 6 * 3600
# Headroom over the planned size: alignment padding and rounding, never less than 1 MiB.
SPACE_MARGIN = 1.02
SPACE_SLACK = 1 << 20


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (GGUF stores the reverse)
    qtype: str              # ggml type name: "F32", "F16" or "Q8_0"

    @property
    def nbytes(self) -> int:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType[self.qtype]]
        return math.prod(self.shape) // block * block_bytes


def encode(array: np.ndarray, qtype: str) -> np.ndarray:
    """A float32 array as the bytes of ggml type `qtype` (F32, F16 or Q8_0)."""
    if qtype == "F32":
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == "F16":
        return np.ascontiguousarray(array, dtype=np.float16)
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    return quantize(np.ascontiguousarray(array, dtype=np.float32), GGMLQuantizationType[qtype])


def typed_value(value):
    """(value, GGUFValueType, array sub-type) the way llama.cpp's converters type them:
    integers as uint32 (int32 if negative), floats as float32."""
    from gguf import GGUFValueType as T

    if isinstance(value, (bool, np.bool_)):
        return bool(value), T.BOOL, None
    if isinstance(value, (int, np.integer)):
        value = int(value)
        return value, (T.UINT32 if 0 <= value < 1 << 32 else T.INT32 if value < 0 else T.UINT64), None
    if isinstance(value, (float, np.floating)):
        return float(value), T.FLOAT32, None
    if isinstance(value, str):
        return value, T.STRING, None
    if isinstance(value, np.ndarray):
        sub = {"b1": T.BOOL, "i1": T.INT8, "u1": T.UINT8, "i2": T.INT16, "u2": T.UINT16,
               "i4": T.INT32, "u4": T.UINT32, "i8": T.INT64, "u8": T.UINT64,
               "f4": T.FLOAT32, "f8": T.FLOAT64}[value.dtype.str.lstrip("<>|=")]
        return value.tolist(), T.ARRAY, sub
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value), T.ARRAY, T.STRING
    raise ValueError(f"cannot write metadata value of type {type(value).__name__}")


def planned_size(metadata: dict, tensors: list[PlannedTensor]) -> int:
    """A generous estimate of the file size (header, metadata, tensor data)."""
    meta = 0
    for key, value in metadata.items():
        meta += len(key) + 16
        if isinstance(value, (list, tuple)):
            meta += sum(len(str(v).encode("utf-8")) + 8 for v in value)
        elif isinstance(value, np.ndarray):
            meta += value.nbytes
        else:
            meta += len(str(value).encode("utf-8")) + 8
    data = sum(t.nbytes + 32 + len(t.name) + 48 for t in tensors)
    return meta + data + 4096


def write_gguf(
    out: Path,
    arch: str,
    metadata: dict,
    tensors: list[PlannedTensor],
    produce: Callable[[], Iterable[np.ndarray]],
    *,
    overwrite: bool = False,
) -> int:
    """Write a GGUF file at `out`; returns its size in bytes.

    `metadata`: key -> value (typed by `typed_value`; general.architecture is added).
    `produce()` yields each tensor's float32 data in the order of `tensors`; each is
    encoded to its planned type and written at once, so only one tensor is in
    memory at a time. `out` is replaced only with `overwrite`.
    """
    from gguf import GGMLQuantizationType, GGUFWriter

    out = Path(out)
    check_target(out, overwrite)
    estimate = planned_size(metadata, tensors)
    sweep_stale_temps(out)
    check_space(out.parent, estimate, out)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(out.name), suffix=".tmp",
                                        dir=out.parent)
        os.close(fd)
    except OSError as e:
        raise _write_error(out, e) from None
    tmp = Path(tmp_name)
    writer = GGUFWriter(str(tmp), arch)
    try:
        for key, value in metadata.items():
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 0:
                continue  # GGUF has no empty arrays
            v, vtype, sub = typed_value(value)
            writer.add_key_value(key, v, vtype, sub_type=sub)
        for t in tensors:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes,
                                   raw_dtype=GGMLQuantizationType[t.qtype])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        count = 0
        for t, data in zip(tensors, produce()):
            if tuple(data.shape) != tuple(t.shape):
                raise RuntimeError(f"tensor {t.name} has shape {data.shape}, planned {t.shape}")
            writer.write_tensor_data(encode(data, t.qtype))
            checkpoint("gguf.tensor")
            count += 1
        if count != len(tensors):
            raise RuntimeError(f"{len(tensors) - count} planned tensors were not produced")
        writer.flush()
        os.fsync(writer.fout[0].fileno())
        writer.close()
        os.replace(tmp, out)
        fsync_folder(out.parent)
    except BaseException as e:
        writer.close()
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(out, e) from None
        raise
    return out.stat().st_size


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse a target that is a folder, or an existing file without `overwrite`;
    create the parent folder if needed."""
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give the path of the .gguf file to write")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists; pass --force to replace it, or choose another name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error(out, e) from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: cannot write in {out.parent} (permission denied); "
                         "choose a folder you can write to")


def check_space(folder: Path, needed: int, out: Path) -> None:
    free = shutil.disk_usage(folder).free
    want = int(needed * SPACE_MARGIN) + SPACE_SLACK
    if free < want:
        raise InputError(f"{out}: not enough disk space ({human_size(want)} needed, "
                         f"{human_size(free)} free in {folder}); free some space or "
                         "write elsewhere")


def sweep_stale_temps(out: Path) -> None:
    """Delete temporary files that an earlier, killed export of `out` left behind."""
    now = time.time()
    for p in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        try:
            # Fix: a killed writer's temporary (as big as the model) is swept at once,
            # not only once it is hours old.
            if p.is_file() and (left_by_dead_writer(p, out.name)
                                or now - p.stat().st_mtime > STALE_TEMP_S):
                p.unlink()
        except OSError:
            pass


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _write_error(out: Path, e: OSError) -> InputError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError(f"{out}: the disk filled up while writing; nothing was written. "
                          "Free some space or write elsewhere")
    return InputError(f"{out}: cannot write ({e.strerror or e}); check the path and its "
                      "permissions")
