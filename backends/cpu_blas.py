"""A fast BLAS for MLX's CPU path on Linux, picked up at start with no extra steps.

The `mlx[cpu]` Linux wheel links a bundled *reference* BLAS/LAPACK
(`mlx_cpu.libs/libblas-*.so.3`), about 20-60x slower on matmul than an optimised one.
`libmlx.so` imports only plain C/Fortran names (`cblas_sgemm`, `cblas_dgemm`,
`cblas_cgemm` and 21 LP64 LAPACK routines such as `sgesdd_`, `sgetrf_`, `ssyevd_`).
The dynamic loader resolves those against the process's *global* scope before the
library's own dependencies, so an optimised library loaded with `RTLD_GLOBAL` before
`mlx.core` is first imported wins: no root, no `LD_PRELOAD`, no re-exec.

`enable_fast_blas()` does that. It looks, in order, at:

1. `POCKETSLEEP_BLAS`: `off` disables everything (benchmarks, debugging); a path to a
   shared library uses exactly that one (no fallback when it is unusable).
2. The library that install_blas.sh provided: `$POCKETSLEEP_BLAS_DIR`, else
   `<sys.prefix>/lib/pocketsleep-blas/`, else `~/.cache/pocketsleep/blas/`.
3. A system OpenBLAS (Debian/Ubuntu libopenblas0-*, Fedora openblas-threads, conda,
   Homebrew on Linux) or Intel MKL's `libmkl_rt`.

Every candidate is opened privately first and checked (exports `cblas_sgemm`, is not
a 64-bit-integer build, gets a 2x2 and a 1x2 product right) before it is made global.

The library itself is provided at install time by cpu_blas_provide.py
(install_blas.sh runs `python backends/cpu_blas_provide.py --install`).

This file has no pocketsleep imports so it can be run or loaded by path; running it
(`python backends/cpu_blas.py [--install|--check]`) hands over to cpu_blas_provide.py.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

ENV_BLAS = "POCKETSLEEP_BLAS"
ENV_DIR = "POCKETSLEEP_BLAS_DIR"
OFF_VALUES = frozenset({"off", "0", "no", "false", "none", "disable", "disabled"})

# What cpu_blas_provide.py leaves in a provided folder (the library to load).
SHIM_NAME = "libpocketsleep_blas.so"
OPENBLAS_COPY = "libopenblas.so.0"  # the ngsolve-openblas fallback, renamed
PROVIDED_NAMES = (SHIM_NAME, OPENBLAS_COPY)

# Unprefixed LP64 libraries a system may have (sonames first: dlopen searches the
# loader cache), then a few well-known prefixes.
SYSTEM_NAMES = (
    "libopenblas.so.0",  # Debian/Ubuntu (alternatives), Arch, conda, Homebrew
    "libopenblasp.so.0",  # Fedora/RHEL openblas-threads
    "libopenblaso.so.0",  # Fedora/RHEL openblas-openmp
    "libopenblas.so",
    "libmkl_rt.so.2",
    "libmkl_rt.so",
)


def _system_dirs() -> list[Path]:
    dirs = []
    for var in ("CONDA_PREFIX", "HOMEBREW_PREFIX"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]) / "lib")
    dirs += [Path("/home/linuxbrew/.linuxbrew/lib"), Path("/opt/OpenBLAS/lib")]
    return dirs


# What enable_fast_blas() did in this process (it runs at most once).
_state: dict = {"called": False, "description": None, "library": None,
                "source": None, "reason": None}
_handle: ctypes.CDLL | None = None  # keeps the library loaded


# ----------------------------------------------------------------- small helpers

def _applies() -> str | None:
    """None if this platform needs the fix, else why not."""
    if sys.platform == "darwin":
        return "macOS: MLX uses Accelerate"
    if not sys.platform.startswith("linux"):
        return f"{sys.platform}: not needed"
    return None


def _setting() -> str:
    value = os.environ.get(ENV_BLAS, "").strip()
    if not value or value.lower() == "auto":
        return "auto"
    return "off" if value.lower() in OFF_VALUES else value


def _mapped_libraries(words=("blas", "lapack", "mkl_rt", "libmlx")) -> list[str]:
    """Shared libraries of this process whose file name holds one of `words`."""
    found: list[str] = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if any(w in os.path.basename(path) for w in words) and path not in found:
                        found.append(path)
    except OSError:
        pass
    return found


def mlx_imported() -> bool:
    if "mlx.core" in sys.modules:
        return True
    return any(os.path.basename(p).startswith("libmlx") for p in _mapped_libraries(("libmlx",)))


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _dladdr_file(address: int) -> str | None:
    for name in (None, "libdl.so.2"):
        try:
            dladdr = ctypes.CDLL(name).dladdr
        except (OSError, AttributeError):
            continue
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        info = _DlInfo()
        if dladdr(ctypes.c_void_p(address), ctypes.byref(info)) and info.dli_fname:
            return os.fsdecode(info.dli_fname)
    return None


def global_provider(symbol: str = "cblas_sgemm") -> str | None:
    """The file that defines `symbol` in the global scope: the one MLX will bind to."""
    try:
        func = getattr(ctypes.CDLL(None), symbol)
    except (OSError, AttributeError):
        return None
    return _dladdr_file(ctypes.cast(func, ctypes.c_void_p).value)


def _library_path(lib: ctypes.CDLL) -> str:
    """The file a handle was loaded from (sonames resolve to real paths)."""
    try:
        func = lib.cblas_sgemm
        return _dladdr_file(ctypes.cast(func, ctypes.c_void_p).value) or lib._name
    except AttributeError:
        return lib._name


def _openblas_config(lib: ctypes.CDLL) -> str | None:
    try:
        func = lib.openblas_get_config
    except AttributeError:
        return None
    func.restype = ctypes.c_char_p
    return (func() or b"").decode(errors="replace").strip()


def _check(lib: ctypes.CDLL) -> str | None:
    """None if MLX can use `lib`, else what is wrong with it."""
    try:
        sgemm = lib.cblas_sgemm
    except AttributeError:
        return "does not export cblas_sgemm"
    config = _openblas_config(lib) or ""
    if "USE64BITINT" in config:
        return "is a 64-bit-integer (ILP64) build; MLX needs 32-bit integers"
    if hasattr(lib, "MKL_Set_Interface_Layer") and "ILP64" in os.environ.get(
            "MKL_INTERFACE_LAYER", "").upper():
        return "MKL_INTERFACE_LAYER asks for ILP64; MLX needs LP64"
    f4 = ctypes.c_float * 4
    a, b, c = f4(1, 2, 3, 4), f4(5, 6, 7, 8), f4()
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.POINTER(ctypes.c_float)
    sgemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    sgemm.restype = None
    # C = A @ B, row-major 2x2 (CblasRowMajor=101, CblasNoTrans=111).
    sgemm(101, 111, 111, 2, 2, 2, 1.0, a, 2, b, 2, 0.0, c, 2)
    if list(c) != [19.0, 22.0, 43.0, 50.0]:
        return f"computes a wrong product ({list(c)})"
    # A vector-matrix product (M = 1), as in decoding; old NaNs in C must go.
    v = f4(float("nan"), float("nan"))
    sgemm(101, 111, 111, 1, 2, 2, 1.0, a, 2, b, 2, 0.0, v, 2)
    if list(v)[:2] != [19.0, 22.0]:
        return f"computes a wrong vector-matrix product ({list(v)[:2]})"
    return None


def _describe(lib: ctypes.CDLL, path: str, source: str) -> str:
    config = _openblas_config(lib)
    if config:
        words = config.split()
        name = " ".join(words[:2])  # "OpenBLAS 0.3.34"
        core = None
        try:
            lib.openblas_get_corename.restype = ctypes.c_char_p
            core = (lib.openblas_get_corename() or b"").decode(errors="replace")
        except AttributeError:
            pass
        try:
            threads = int(lib.openblas_get_num_threads())
            plural = "" if threads == 1 else "s"
            extra = ", ".join(x for x in (core, f"{threads} thread{plural}") if x)
        except AttributeError:
            extra = core or ""
        name = f"{name} ({extra})" if extra else name
    elif hasattr(lib, "MKL_Get_Version_String") or "mkl" in os.path.basename(path):
        name = "Intel MKL"
    else:
        name = os.path.basename(path)
    return f"{name}, {source}: {path}"


# -------------------------------------------------------------------- lookup

def provided_dirs() -> list[Path]:
    """Where install_blas.sh puts the library, most specific first."""
    if os.environ.get(ENV_DIR):
        return [Path(os.environ[ENV_DIR]).expanduser()]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [Path(sys.prefix) / "lib" / "pocketsleep-blas", cache / "pocketsleep" / "blas"]


def _candidates(setting: str) -> list[tuple[str, str]]:
    """(how to dlopen it, where it comes from), in order of preference."""
    if setting not in ("auto", "off"):
        return [(setting, ENV_BLAS)]
    found = []
    for d in provided_dirs():
        for name in PROVIDED_NAMES:
            if (d / name).is_file():
                found.append((str(d / name), "provided by install_blas.sh"))
    found += [(name, "system") for name in SYSTEM_NAMES]
    for d in _system_dirs():
        for name in SYSTEM_NAMES[:3]:
            if (d / name).is_file():
                found.append((str(d / name), "system"))
    return found


def find_library(setting: str | None = None) -> tuple:
    """Open (privately) the first usable candidate.

    Returns (handle, path, source), or (None, reason, None). `setting` defaults to
    the POCKETSLEEP_BLAS environment variable ("auto", "off" or a path).
    """
    setting = _setting() if setting is None else setting
    if setting == "off":
        return None, f"disabled by {ENV_BLAS}=off", None
    problems = []
    for spec, source in _candidates(setting):
        try:
            lib = ctypes.CDLL(spec, mode=ctypes.RTLD_LOCAL)
        except OSError as e:
            if source != "system":  # a missing system soname is the normal case
                problems.append(f"{spec}: cannot load ({e})")
            continue
        path = _library_path(lib)
        problem = _check(lib)
        if problem:
            problems.append(f"{path} {problem}")
            continue
        return lib, path, source
    if not problems:
        return None, "no optimised BLAS found (run install_blas.sh)", None
    return None, "no usable optimised BLAS: " + "; ".join(problems), None


# ------------------------------------------------------------------ the API

def enable_fast_blas() -> str | None:
    """Make MLX's CPU path use an optimised BLAS. Call before mlx is first imported.

    Returns a short description of the library picked up, or None (then
    `blas_status()["reason"]` says why). No-op on macOS, when mlx is already
    imported, and with POCKETSLEEP_BLAS=off. Safe to call more than once.
    """
    global _handle
    if _state["called"]:
        return _state["description"]
    _state["called"] = True
    reason = _applies()
    if reason:
        _state["reason"] = reason
        return None
    if _setting() == "off":
        _state["reason"] = f"disabled by {ENV_BLAS}=off"
        return None
    if mlx_imported():
        _state["reason"] = "mlx was imported before enable_fast_blas(); nothing changed"
        return None
    already = global_provider()
    if already and "mlx_cpu.libs" not in already:  # e.g. the user's LD_PRELOAD: it wins
        lib = ctypes.CDLL(already, mode=ctypes.RTLD_LOCAL)
        _state.update(library=already, source="already in the global scope (LD_PRELOAD?)")
        _state["description"] = _describe(lib, already, _state["source"])
        return _state["description"]
    # One BLAS thread unless the user says otherwise: measured on 2 shared cores,
    # OpenBLAS's default (one spinning thread per core) made prefill 5x slower as soon
    # as anything else ran, while one thread lost little on an idle machine.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    lib, path_or_reason, source = find_library()
    if lib is None:
        _state["reason"] = path_or_reason
        return None
    try:  # promote the already-open library to the global scope
        _handle = ctypes.CDLL(lib._name, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        _state["reason"] = f"cannot load {path_or_reason} globally: {e}"
        return None
    _state.update(library=path_or_reason, source=source,
                  description=_describe(_handle, path_or_reason, source))
    return _state["description"]


def blas_status() -> dict:
    """What `pocketsleep status` shows about the CPU BLAS (no side effects on MLX)."""
    status = {
        "applies": _applies() is None,
        "setting": _setting(),
        "enabled": bool(_state["description"]),
        "description": _state["description"],
        "library": _state["library"],
        "source": _state["source"],
        "reason": _state["reason"],
        "mlx_imported": mlx_imported(),
        "global_cblas_sgemm": None,
        "mapped": [],
        "available": None,
    }
    if not status["applies"]:
        status["reason"] = _applies()
        return status
    status["global_cblas_sgemm"] = global_provider()
    status["mapped"] = [p for p in _mapped_libraries() if "libmlx" not in p]
    if not _state["called"]:
        status["reason"] = "enable_fast_blas() was not called in this process"
    lib, path_or_reason, source = find_library()
    status["available"] = f"{path_or_reason} ({source})" if lib is not None else None
    if lib is None and not status["enabled"] and _state["reason"] is None:
        status["reason"] = path_or_reason
    return status


if __name__ == "__main__":  # the command line (--install, --check, status) lives there
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_blas_provide import main

    sys.exit(main())
