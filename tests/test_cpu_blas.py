"""The optimised BLAS for MLX's CPU path (pocketsleep.backends.cpu_blas, cpu_blas_provide,
install_blas.sh).

mlx can be imported only once per process and the BLAS must be loaded before it, so
everything that touches mlx runs in a fresh interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketsleep.backends import cpu_blas, cpu_blas_provide

ROOT = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")
HAS_MLX = importlib.util.find_spec("mlx") is not None
HAS_MLX_LM = importlib.util.find_spec("mlx_lm") is not None

linux_only = pytest.mark.skipif(not LINUX, reason="the fix is for Linux")
needs_mlx = pytest.mark.skipif(not (LINUX and HAS_MLX), reason="needs mlx on Linux")


def _env(**overrides) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("POCKETSLEEP_BLAS", "POCKETSLEEP_BLAS_DIR", "LD_PRELOAD")}
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    return env


def run_json(code: str, timeout: int = 300, **env) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object last."""
    # Snippets load cpu_blas by path: importing pocketsleep.backends would enable it.
    code = textwrap.dedent(code).replace("CPU_BLAS_FILE", repr(cpu_blas.__file__))
    run = subprocess.run([sys.executable, "-c", code], env=_env(**env),
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# Enable (or not), then a matmul and some LAPACK calls on the CPU checked against numpy.
PROBE = """
    import json, sys, time
    import runpy, types
    cpu_blas = types.SimpleNamespace(**runpy.run_path(CPU_BLAS_FILE))
    if "--mlx-first" in sys.argv:
        import mlx.core
    desc = cpu_blas.enable_fast_blas()
    import mlx.core as mx
    import numpy as np
    mx.random.seed(0)
    a = mx.random.normal((256, 384)); b = mx.random.normal((384, 128))
    ref = np.array(a).astype(np.float64) @ np.array(b).astype(np.float64)
    matmul_err = float(np.abs(np.array(a @ b) - ref).max() / np.abs(ref).max())
    m = mx.random.normal((48, 48)); s = m @ m.T + 48 * mx.eye(48)
    with mx.stream(mx.cpu):
        inv = mx.linalg.inv(s); sv = mx.linalg.svd(m, compute_uv=False)
        w = mx.linalg.eigvalsh(s); chol = mx.linalg.cholesky(s)
    sn = np.array(s).astype(np.float64)
    lapack_err = max(
        float(np.abs(np.array(inv) @ sn - np.eye(48)).max()),
        float(np.abs(np.array(sv) - np.linalg.svd(np.array(m), compute_uv=False)).max()),
        float(np.abs(np.array(w) - np.linalg.eigvalsh(sn)).max() / np.abs(sn).max()),
        float(np.abs(np.array(chol) @ np.array(chol).T - sn).max() / np.abs(sn).max()))
    seconds = None
    if "--time" in sys.argv:
        x = mx.random.normal((1024, 1024)); mx.eval(x @ x)
        times = []
        for _ in range(3):
            t = time.perf_counter(); mx.eval(x @ x); times.append(time.perf_counter() - t)
        seconds = min(times)
    maps = sorted({l.split(None, 5)[5].strip() for l in open("/proc/self/maps")
                   if len(l.split(None, 5)) == 6})
    print(json.dumps({"desc": desc, "status": cpu_blas.blas_status(), "maps": maps,
                      "matmul_err": matmul_err, "lapack_err": lapack_err,
                      "seconds": seconds}))
"""


def probe(*args: str, **env) -> dict:
    return run_json(PROBE.replace("sys.argv", repr(list(args))), **env)


def _mapped(result: dict, library: str) -> bool:
    real = os.path.realpath(library)
    return any(os.path.realpath(p) == real for p in result["maps"])


def _assert_correct(result: dict) -> None:
    assert result["matmul_err"] < 1e-4
    assert result["lapack_err"] < 1e-3


@pytest.fixture(scope="module")
def fast_blas(tmp_path_factory) -> dict:
    """Environment overrides under which a fast BLAS is found: the installed one,
    else one provided into a temporary folder (needs pip and a C compiler)."""
    if not (LINUX and HAS_MLX):
        pytest.skip("needs mlx on Linux")
    lib, _path, _source = cpu_blas.find_library("auto")
    if lib is not None:
        return {}
    dest = tmp_path_factory.mktemp("blas")
    path, message = cpu_blas_provide.provide(dest, force=True)
    if path is None:
        pytest.skip(f"no optimised BLAS installed and none could be provided: {message}")
    return {"POCKETSLEEP_BLAS": str(path)}


# ------------------------------------------------------------------ pure parts

def test_shim_forwards_prefixed_functions_only():
    src = cpu_blas_provide.shim_source(["scipy_cblas_sgemm", "scipy_sgesdd_", "claqz0_",
                                        "scipy_claqz0_", "scipy_bad.name", "other"])
    assert "FWD(cblas_sgemm)" in src and "FWD(sgesdd_)" in src
    assert "FWD(claqz0_)" not in src  # the library already exports that plain name
    assert "bad.name" not in src and "FWD(other)" not in src
    assert "jmp scipy_" in src and "b scipy_" in src  # x86_64 and aarch64


@linux_only
def test_exported_functions_reads_a_real_library():
    libc = next(p for p in cpu_blas._mapped_libraries(("libc.so", "libc-"))
                if os.path.basename(p).startswith("libc"))
    names = cpu_blas_provide.exported_functions(libc)
    assert "malloc" in names and "memcpy" in names


def test_is_a_no_op_on_macos(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(cpu_blas, "_state", {"called": False, "description": None,
                                             "library": None, "source": None, "reason": None})
    assert cpu_blas.enable_fast_blas() is None
    status = cpu_blas.blas_status()
    assert status["applies"] is False and "macOS" in status["reason"]
    assert cpu_blas_provide.provide()[0] is None


def test_setting_parses_the_environment(monkeypatch):
    for value, expected in [("", "auto"), ("auto", "auto"), ("off", "off"), ("OFF", "off"),
                            ("0", "off"), ("/x/lib.so", "/x/lib.so")]:
        monkeypatch.setenv("POCKETSLEEP_BLAS", value)
        assert cpu_blas._setting() == expected
    monkeypatch.setenv("POCKETSLEEP_BLAS_DIR", "/somewhere")
    assert cpu_blas.provided_dirs() == [Path("/somewhere")]


# ------------------------------------------------------- in a fresh interpreter

@needs_mlx
def test_fast_blas_is_used_and_correct(fast_blas):
    result = probe(**fast_blas)
    status = result["status"]
    assert result["desc"] and status["enabled"], status
    assert status["library"] and _mapped(result, status["library"])
    # MLX binds cblas_sgemm in the global scope first: that must be our library.
    assert os.path.realpath(status["global_cblas_sgemm"]) == os.path.realpath(status["library"])
    _assert_correct(result)


@needs_mlx
def test_faster_than_the_reference_blas(fast_blas):
    fast = probe("--time", **fast_blas)
    slow = probe("--time", POCKETSLEEP_BLAS="off")
    assert fast["status"]["enabled"] and not slow["status"]["enabled"]
    # Typically 20-60x; a loose bound so a busy machine does not make it flaky.
    assert slow["seconds"] / fast["seconds"] >= 5, (slow["seconds"], fast["seconds"])


@needs_mlx
def test_off_disables_it():
    result = probe(POCKETSLEEP_BLAS="off")
    status = result["status"]
    assert result["desc"] is None and not status["enabled"]
    assert "off" in status["reason"] and status["setting"] == "off"
    assert status["global_cblas_sgemm"] is None
    assert any("mlx_cpu.libs" in p and "libblas" in p for p in result["maps"])
    _assert_correct(result)


@needs_mlx
def test_no_op_when_mlx_was_imported_first():
    result = probe("--mlx-first")
    status = result["status"]
    assert result["desc"] is None and "imported" in status["reason"]
    assert status["global_cblas_sgemm"] is None
    _assert_correct(result)


@needs_mlx
def test_an_unusable_chosen_library_is_refused(tmp_path):
    missing = tmp_path / "libnothing.so"
    result = probe(POCKETSLEEP_BLAS=missing)
    assert result["desc"] is None and str(missing) in result["status"]["reason"]
    _assert_correct(result)
    # A real library without cblas_sgemm: refused, not loaded globally.
    libm = next(p for p in cpu_blas._mapped_libraries(("libm.so", "libm-")))
    result = probe(POCKETSLEEP_BLAS=libm)
    assert result["desc"] is None and "cblas_sgemm" in result["status"]["reason"]


@needs_mlx
def test_calling_twice_returns_the_same(fast_blas):
    result = run_json("""
        import json
        import runpy, types
        cpu_blas = types.SimpleNamespace(**runpy.run_path(CPU_BLAS_FILE))
        first = cpu_blas.enable_fast_blas(); second = cpu_blas.enable_fast_blas()
        print(json.dumps([first, second]))
    """, **fast_blas)
    assert result[0] and result[0] == result[1]


LORA = """
    import json
    import runpy, types
    cpu_blas = types.SimpleNamespace(**runpy.run_path(CPU_BLAS_FILE))
    desc = cpu_blas.enable_fast_blas()
    import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
    from mlx_lm.models import llama
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.tuner.utils import linear_to_lora_layers
    mx.random.seed(0)
    args = llama.ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2,
        intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-5, vocab_size=256)
    model = llama.Model(args); mx.eval(model.parameters())
    toks = mx.random.randint(0, 256, (2, 25))
    cache = make_prompt_cache(model)
    y = model(toks[:1, :12], cache=cache)
    for _ in range(4):
        y = model(mx.argmax(y[:, -1:], axis=-1), cache=cache)
    model.freeze()
    linear_to_lora_layers(model, 2, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    opt = optim.Adam(learning_rate=1e-3)
    step = nn.value_and_grad(model, lambda m, x, t: nn.losses.cross_entropy(m(x), t).mean())
    losses = []
    for _ in range(3):
        loss, grads = step(model, toks[:, :-1], toks[:, 1:])
        opt.update(model, grads); mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    print(json.dumps({"desc": desc, "decode": float(y.abs().sum()), "losses": losses}))
"""


@pytest.mark.skipif(not HAS_MLX_LM, reason="needs mlx-lm")
@needs_mlx
def test_mlx_lm_decode_and_lora_steps_match_the_reference(fast_blas):
    fast = run_json(LORA, **fast_blas)
    ref = run_json(LORA, POCKETSLEEP_BLAS="off")
    assert fast["desc"] and ref["desc"] is None
    assert fast["decode"] == pytest.approx(ref["decode"], rel=1e-4)
    assert fast["losses"] == pytest.approx(ref["losses"], rel=1e-4)
    assert fast["losses"][-1] < fast["losses"][0]


# ------------------------------------------------------------- providing it

def _check_sgemm(path) -> None:
    """The shim's cblas_sgemm (vector-matrix products go to sgemv) against numpy."""
    import ctypes

    import numpy as np

    lib = ctypes.CDLL(str(path))  # private to this test; not made global
    fp, i, f = ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_float
    lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, fp, i, fp, i, f, fp, i]
    lib.cblas_sgemm.restype = None
    rng = np.random.default_rng(0)
    for m, n, k in [(1, 300, 70), (1, 2, 5), (3, 40, 20), (1, 1, 8), (1, 5, 0)]:
        for ta in (111, 112):
            for tb in (111, 112):
                for alpha, beta in ((1.0, 0.0), (1.5, 0.5)):
                    # Stored shapes with padded leading dimensions.
                    a_rows, a_cols = (m, k) if ta == 111 else (k, m)
                    b_rows, b_cols = (k, n) if tb == 111 else (n, k)
                    a = rng.standard_normal((a_rows, a_cols + 3), dtype=np.float32)
                    b = rng.standard_normal((b_rows, b_cols + 2), dtype=np.float32)
                    c = rng.standard_normal((m, n + 1), dtype=np.float32)
                    if beta == 0.0:
                        c[:] = np.nan  # must be overwritten, as sgemm does
                    op_a = a[:, :a_cols] if ta == 111 else a[:, :a_cols].T
                    op_b = b[:, :b_cols] if tb == 111 else b[:, :b_cols].T
                    old = np.nan_to_num(c[:, :n].astype(np.float64))
                    want = alpha * (op_a.astype(np.float64) @ op_b) + beta * old
                    lib.cblas_sgemm(101, ta, tb, m, n, k, alpha,
                                    a.ctypes.data_as(fp), a.shape[1],
                                    b.ctypes.data_as(fp), b.shape[1], beta,
                                    c.ctypes.data_as(fp), c.shape[1])
                    np.testing.assert_allclose(c[:, :n], want, rtol=1e-4, atol=1e-4,
                                               err_msg=f"{(m, n, k, ta, tb, alpha, beta)}")


def _can_build() -> bool:
    return LINUX and cpu_blas_provide._compiler() is not None


@pytest.mark.skipif(not (_can_build() and HAS_MLX), reason="needs Linux, mlx and cc")
def test_provide_builds_a_working_shim(tmp_path):
    path, message = cpu_blas_provide.provide(tmp_path / "blas", force=True)
    if path is None and "pip download" in message:
        pytest.skip(f"no package index reachable: {message}")
    assert path == tmp_path / "blas" / cpu_blas.SHIM_NAME, message
    assert (tmp_path / "blas" / cpu_blas_provide.SCIPY_LIB).is_file()
    names = cpu_blas_provide.exported_functions(path)
    for needed in ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm", "sgesdd_", "sgetrf_",
                   "ssyevd_", "spotrf_", "openblas_get_config"):
        assert needed in names
    _check_sgemm(path)
    # Found through POCKETSLEEP_BLAS_DIR as install_blas.sh would leave it.
    result = probe(POCKETSLEEP_BLAS_DIR=tmp_path / "blas")
    status = result["status"]
    assert status["enabled"] and status["source"] == "provided by install_blas.sh"
    assert os.path.realpath(status["global_cblas_sgemm"]) == os.path.realpath(path)
    assert "OpenBLAS" in result["desc"]
    _assert_correct(result)


@pytest.mark.slow
@pytest.mark.skipif(not (LINUX and HAS_MLX and os.uname().machine == "x86_64"),
                    reason="x86_64 Linux with mlx")
def test_provide_without_a_compiler_uses_ngsolve_openblas(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "false")  # the shim cannot be built
    path, message = cpu_blas_provide.provide(tmp_path / "blas", force=True)
    if path is None and "pip download" in message:
        pytest.skip(f"no package index reachable: {message}")
    assert path == tmp_path / "blas" / cpu_blas.OPENBLAS_COPY, message
    result = probe(POCKETSLEEP_BLAS=path)
    assert result["status"]["enabled"] and "OpenBLAS" in result["desc"]
    _assert_correct(result)


@pytest.mark.skipif(not LINUX or shutil.which("bash") is None, reason="Linux, bash")
def test_install_script_is_idempotent_and_never_fails(tmp_path):
    script = ROOT / "install_blas.sh"
    env = _env(POCKETSLEEP_BLAS_DIR=tmp_path / "blas", POCKETSLEEP_BLAS_NO_SYSTEM="1")
    # Sourced into a `set -eu` script, as install.sh may do.
    cmd = f'set -eu; source "{script}"; pocketsleep_install_blas "{sys.executable}"; echo DONE'
    outputs = []
    for _ in range(2):
        run = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True,
                             timeout=900)
        assert run.returncode == 0 and "DONE" in run.stdout, run.stderr
        outputs.append(run.stdout + run.stderr)
    if "WARNING" not in outputs[0]:  # it got (or already had) a library
        assert "already available" in outputs[1]
    # Nothing obtainable (no compiler, no index, no package manager): a warning, rc 0.
    (tmp_path / "no-wheels").mkdir()
    env.update(CC="false", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "no-wheels"),
               POCKETSLEEP_BLAS_DIR=str(tmp_path / "none"))
    run = subprocess.run(["bash", str(script), sys.executable], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0
    assert "WARNING" in run.stderr or "already available" in run.stdout
    # Disabled: does nothing.
    run = subprocess.run(["bash", str(script), sys.executable],
                         env={**env, "POCKETSLEEP_BLAS": "off"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "skipped" in run.stdout
