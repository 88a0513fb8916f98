"""MLX's compiled CPU kernels, kept where only this user can write.

MLX's CPU backend compiles fused operations into shared libraries under
`<temp>/mlx/<version>/cpu/` (C++ `temp_directory_path()`: $TMPDIR, $TMP, $TEMP or
$TEMPDIR, else /tmp) and loads a library already there without compiling, found
by its name, a hash of the kernel that any MLX user computes alike. In a /tmp
shared with other accounts, whoever creates `/tmp/mlx` first owns it: another
account could leave a library under a name this process will look for, and it
would run as this user, who can read the journal. (Seen here: a world-readable
`/tmp/mlx` made by the first MLX process, with the umask's modes.)

`secure_kernel_cache()`, run before mlx is first imported, keeps MLX's folder if
it is this user's and nobody else can write to it, creates it (mode 0700) if it is
missing, and otherwise points $TMPDIR, for this process and its children, at a
private folder (`~/.cache/pocketsleep/tmp`, 0700).

No pocketsleep imports, like cpu_blas.py beside it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# The variables std::filesystem::temp_directory_path reads on POSIX, in its order.
TEMP_VARS = ("TMPDIR", "TMP", "TEMP", "TEMPDIR")


def temp_root(environ=os.environ) -> Path:
    for var in TEMP_VARS:
        if environ.get(var):
            return Path(environ[var])
    return Path("/tmp")


def safe(folder: Path) -> bool:
    """The folder itself (not a link) is this user's, and no one else may write to it."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def private_temp(environ=os.environ) -> Path:
    cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pocketsleep" / "tmp"


def secure_kernel_cache(environ=os.environ) -> str:
    """Make MLX's kernel folder one only this user writes; say what was done."""
    if os.name != "posix":
        return "not POSIX: left to MLX"
    mlx_dir = temp_root(environ) / "mlx"
    if safe(mlx_dir):
        return f"{mlx_dir}: this user's"
    if not os.path.lexists(mlx_dir):
        try:
            os.mkdir(mlx_dir, 0o700)
            if safe(mlx_dir):  # another account cannot have slipped in between
                return f"{mlx_dir}: created"
        except OSError:
            pass  # made by someone else meanwhile, or a temp folder we cannot write
    private = private_temp(environ)
    try:
        private.mkdir(parents=True, exist_ok=True)
        private.chmod(0o700)
    except OSError:
        return f"{mlx_dir}: not safe, and {private} could not be made; left to MLX"
    environ["TMPDIR"] = str(private)
    return f"{mlx_dir}: not this user's alone; TMPDIR={private}"
