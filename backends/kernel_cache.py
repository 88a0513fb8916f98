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
it is this user's and nobody else can write to it (and makes it 0700), creates it
(0700) if it is missing, and otherwise points $TMPDIR, for MLX and child processes,
at a private folder (`~/.cache/pocketsleep/tmp`, 0700). Not covered: a temp root
without the sticky bit, where another account could rename the folder away.

No pocketsleep imports, like cpu_blas.py beside it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

# The variables std::filesystem::temp_directory_path reads on POSIX, in its order.
TEMP_VARS = ("TMPDIR", "TMP", "TEMP", "TEMPDIR")


def temp_root(environ=os.environ) -> Path | None:
    """The folder MLX takes: the first of TEMP_VARS that is set, even if empty (MLX
    then cannot compile at all: None), else /tmp."""
    for var in TEMP_VARS:
        if var in environ:
            return Path(environ[var]) if environ[var] else None
    return Path("/tmp")


def safe(folder: Path) -> bool:
    """The folder itself (not a link) is this user's, and no one else may write to it."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def private_temp(environ=os.environ) -> Path | None:
    cache = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # unset, empty or relative: the spec's default
        try:
            cache = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory to be found
            return None
    return Path(cache) / "pocketsleep" / "tmp"


def secure_kernel_cache(environ=os.environ) -> str:
    """Make MLX's kernel folder one only this user writes; say what was done."""
    if os.name != "posix":
        return "not POSIX: left to MLX"
    root = temp_root(environ)
    mlx_dir = root / "mlx" if root is not None else None
    if mlx_dir is not None and not os.path.lexists(mlx_dir):
        try:
            os.mkdir(mlx_dir, 0o700)
        except OSError:
            pass  # made meanwhile (by a process of ours, or not), or not writable
    if mlx_dir is not None and safe(mlx_dir):
        # Its subfolders get the umask's modes (group-writable under 002): closing
        # this one keeps everyone else out of all of them.
        try:
            os.chmod(mlx_dir, 0o700)
        except OSError:
            pass
        return f"{mlx_dir}: this user's alone"
    private = private_temp(environ)
    if private is None:
        return f"{mlx_dir}: not safe, and no home folder for a private one; left to MLX"
    try:
        private.mkdir(parents=True, exist_ok=True)
        private.chmod(0o700)
    except OSError:
        return f"{mlx_dir}: not safe, and {private} could not be made; left to MLX"
    # Python's own temporary files stay where they were (an evaluation's data homes,
    # say, would otherwise outlive a reboot under ~/.cache); only MLX, which reads
    # the variable, and child processes move.
    tempfile.gettempdir()
    environ["TMPDIR"] = str(private)
    return f"{mlx_dir}: not this user's alone; TMPDIR={private}"
