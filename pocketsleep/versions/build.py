"""Write one version folder of the personal model, atomically.

The folder is assembled as `versions/.tmp-v0003` — the MLX copy first (float32,
experts fused by backends/mlx_fuse.py), then the GGUF (backends/gguf_export.py,
fusing the same experts into the base GGUF, f16) and a manifest — every file
fsynced, then renamed to `versions/v0003`. A failure or a kill at any point leaves
no `v0003` behind: only a temporary folder, removed here on failure and swept by
the next merge otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

from ..config import Paths
from ..faults import checkpoint
from ..files import fsync_folder, fsync_tree
from ..journal.records import now
from ..models import ResolvedModel
from .layout import GGUF_FILE, GGUF_QUANT, MANIFEST, MLX_DIR

TEMP_PREFIX = ".tmp-"


def sweep_temporaries(paths: Paths) -> None:
    """Remove folders a killed merge left (callers hold the merge lock)."""
    if paths.versions.exists():
        for old in paths.versions.glob(f"{TEMP_PREFIX}*"):
            shutil.rmtree(old, ignore_errors=True)


def build_version(paths: Paths, base: ResolvedModel, experts: Sequence[tuple[int, Path]],
                  name: str, progress: Callable[[str, int, int], None]) -> Path:
    """Write base + `experts` ((id, folder) pairs) fused as the version folder `name`;
    returns the folder."""
    from ..backends.gguf_export import export_gguf
    from ..backends.mlx_engine import mlx_folder
    from ..backends.mlx_fuse import fuse_folder

    versions = paths.private_subdir(paths.versions)
    final = versions / name
    tmp = versions / f"{TEMP_PREFIX}{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    folders = [folder for _, folder in experts]
    try:
        tmp.mkdir(mode=0o700)
        progress("merge: preparing the base model", 0, 1)
        base_mlx = mlx_folder(base, paths, "float32")  # a GGUF is converted once, cached
        checkpoint("version.base_ready")
        _check_space(base_mlx, versions, final)
        progress("merge: fusing experts into MLX weights (float32)", 0, 1)
        fuse_folder(base_mlx, folders, tmp / MLX_DIR)
        checkpoint("version.mlx_fused")
        progress(f"merge: writing the GGUF for llama.cpp ({GGUF_QUANT})", 0, 1)
        export_gguf(base.path, tmp / GGUF_FILE, GGUF_QUANT, folders)
        checkpoint("version.gguf_written")
        (tmp / MANIFEST).write_text(json.dumps(manifest(base, experts, name), indent=2) + "\n",
                                    encoding="utf-8")
        fsync_tree(tmp / MLX_DIR)
        fsync_tree(tmp)
        # A folder of this name can only be a leftover of a killed merge whose
        # version number was never used (its journal row is the one being built).
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        checkpoint("version.renamed")
        fsync_folder(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _check_space(base_mlx: Path, versions: Path, final: Path) -> None:
    """Refuse early, with one line, when the version cannot fit on the disk."""
    from ..backends.gguf_write import check_space
    from ..backends.mlx_fuse import float32_bytes

    f32 = float32_bytes(base_mlx)
    check_space(versions, f32 + f32 // 2, final)  # float32 MLX copy + f16 GGUF


def manifest(base: ResolvedModel, experts: Sequence[tuple[int, Path]], name: str) -> dict:
    """For people looking in the folder; the journal is what pocketsleep trusts."""
    return {
        "version": name,
        "created_at": now(),
        "base_model": {"spec": base.spec, "path": str(base.path), "name": base.name},
        "experts": [{"id": eid, "folder": str(folder)} for eid, folder in experts],
        "files": {MLX_DIR: "MLX (mlx_lm.load), float32", GGUF_FILE: f"llama.cpp, {GGUF_QUANT}"},
    }
