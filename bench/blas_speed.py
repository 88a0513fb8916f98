"""MLX on the Linux CPU: the bundled reference BLAS against the optimised one.

    python bench/blas_speed.py            # both, and the ratio
    python bench/blas_speed.py --blas /path/libopenblas.so.0

Each side runs in its own interpreter (mlx can be imported once per process, and the
BLAS must be loaded before it): `POCKETSLEEP_BLAS=off` for the reference BLAS that the
mlx[cpu] wheel links, and pocketsleep's normal start-up (`enable_fast_blas()`) for the
fixed path. Measured:

- a 1024x1024 f32 matmul, 10 times (seconds, lower is better);
- an mlx-lm llama model of the embedded model's shape (SmolLM2-135M: hidden 576,
  30 layers, 9 heads / 3 KV heads, intermediate 1536, vocab 49152, tied embeddings),
  random f32 weights: prefill tokens/s on a 128-token prompt, and greedy decode
  tokens/s for 32 tokens with the KV cache.

Each side does the three measures `--repeat` times (default 2) in one process and
the best of each is shown, as load from other processes only ever slows a run.
About 2-3 minutes on 2 cores, nearly all of it on the reference side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = 128
DECODE = 32


def worker(repeat: int) -> dict:
    from pocketsleep.backends import cpu_blas

    blas = cpu_blas.enable_fast_blas()
    import mlx.core as mx
    from mlx_lm.models import llama
    from mlx_lm.models.cache import make_prompt_cache

    mx.random.seed(0)
    a = mx.random.normal((1024, 1024))
    b = mx.random.normal((1024, 1024))
    args = llama.ModelArgs(
        model_type="llama", hidden_size=576, num_hidden_layers=30, intermediate_size=1536,
        num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, vocab_size=49152,
        rope_theta=100000, tie_word_embeddings=True)
    model = llama.Model(args)
    mx.eval(model.parameters())
    prompt = mx.random.randint(0, args.vocab_size, (1, PROMPT))
    mx.eval(a @ b, model(prompt[:, :8], cache=make_prompt_cache(model)))  # warm-up

    runs: dict[str, list[float]] = {"matmul_s": [], "prefill_tps": [], "decode_tps": []}
    for _ in range(repeat):  # the best of each: other load only ever slows a run
        t = time.perf_counter()
        for _ in range(10):
            mx.eval(a @ b)
        runs["matmul_s"].append(time.perf_counter() - t)

        cache = make_prompt_cache(model)
        t = time.perf_counter()
        logits = model(prompt, cache=cache)
        token = mx.argmax(logits[:, -1, :], axis=-1)
        mx.eval(token)
        runs["prefill_tps"].append(PROMPT / (time.perf_counter() - t))

        t = time.perf_counter()
        for _ in range(DECODE):
            logits = model(token[:, None], cache=cache)
            token = mx.argmax(logits[:, -1, :], axis=-1)
            mx.eval(token)
        runs["decode_tps"].append(DECODE / (time.perf_counter() - t))
    return {"blas": blas or "reference BLAS (mlx_cpu.libs)", "mlx": mx.__version__,
            "runs": runs, "matmul_s": min(runs["matmul_s"]),
            "prefill_tps": max(runs["prefill_tps"]), "decode_tps": max(runs["decode_tps"])}


def run_side(env_blas: str | None, repeat: int, threads: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    env.pop("POCKETSLEEP_BLAS", None)
    if env_blas:
        env["POCKETSLEEP_BLAS"] = env_blas
    cmd = [sys.executable, __file__, "--worker", "--repeat", str(repeat)]
    run = subprocess.run(cmd, env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        sys.exit(f"worker failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blas", help="library for the fixed side (default: auto)")
    parser.add_argument("--threads", type=int,
                        help="OPENBLAS_NUM_THREADS for the fixed side (default: OpenBLAS's "
                             "own, one per core; 1 is steadier on a busy machine)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per side; the best is shown (default 2)")
    parser.add_argument("--json", action="store_true", help="print the raw figures too")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.repeat)))
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores (load {load:.1f}); "
          f"{platform.system()} {platform.machine()}; Python {platform.python_version()}",
          flush=True)
    ref = run_side("off", args.repeat)
    fast = run_side(args.blas, args.repeat, args.threads)
    if fast["blas"] == ref["blas"]:
        print("WARNING: no optimised BLAS was picked up; run install_blas.sh")
    print(f"MLX {fast['mlx']}")
    print(f"reference: {ref['blas']}")
    print(f"fixed:     {fast['blas']}")
    print(f"best of {args.repeat} runs each\n")
    rows = [
        ("1024² f32 matmul ×10 (s, lower better)", "matmul_s", True),
        (f"prefill, {PROMPT}-token prompt (tok/s)", "prefill_tps", False),
        (f"decode, {DECODE} tokens (tok/s)", "decode_tps", False),
    ]
    print(f"{'measure':<42}{'reference':>12}{'fixed':>12}{'ratio':>9}")
    for label, key, lower_better in rows:
        r, f = ref[key], fast[key]
        ratio = r / f if lower_better else f / r
        print(f"{label:<42}{r:>12.3f}{f:>12.3f}{ratio:>8.1f}×")
    if args.json:
        print(json.dumps({"reference": ref, "fixed": fast}, indent=2))


if __name__ == "__main__":
    main()
