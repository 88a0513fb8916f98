"""Chat speed on the embedded model: our engines against the raw libraries, same run.

    .venv/bin/python bench/engine_speed.py [--reps 3] [--prompt-words 200] [--gen 64]

Measures time to first token (TTFT), prefill tokens/s (prompt tokens / TTFT) and
decode tokens/s for:
  raw llama-cpp-python      vs  our llama.cpp engine (same GGUF, same settings)
  raw mlx-lm stream_generate vs our MLX engine (same converted model)
  our MLX engine on CPU without the BLAS fix (POCKETSLEEP_BLAS=off)
Every measurement runs in its own process (MLX and the BLAS are chosen at import),
the pairs are interleaved, and the median of the repetitions is reported with the
ratio to its baseline: these machines are shared and noisy, so compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# A user turn long enough that prefill is measurable, the same in every run.
FILLER = ("My sister Ada lives in Lisbon and works as a marine biologist; she studies "
          "octopuses and writes about the tides. ")


def prompt_messages(words: int) -> list[dict]:
    text = (FILLER * (words // len(FILLER.split()) + 1)).split()[:words]
    return [{"role": "user", "content": " ".join(text) + "\nSummarise this in one line."}]


# -- one measurement (runs in a child process) ---------------------------------------

def timed_stream(pieces, prompt_tokens: int, count_tokens) -> dict:
    start = time.perf_counter()
    first = None
    text = []
    for piece in pieces:
        if first is None:
            first = time.perf_counter()
        text.append(piece)
    end = time.perf_counter()
    generated = count_tokens("".join(text))
    return {
        "ttft_s": first - start,
        "prefill_tps": prompt_tokens / (first - start),
        "decode_tps": (generated - 1) / (end - first) if generated > 1 else float("nan"),
        "generated": generated,
        "prompt_tokens": prompt_tokens,
    }


def measure(kind: str, words: int, gen: int) -> dict:
    # Imported here: which BLAS MLX links is decided at import time, per process.
    from pocketsleep.config import Paths
    from pocketsleep.models import resolve_model

    paths = Paths.resolve().ensure()
    model = resolve_model("default", paths)
    messages = prompt_messages(words)

    if kind in ("llamacpp-raw", "llamacpp-ours"):
        from pocketsleep.backends.llamacpp_engine import LlamaCppEngine

        engine = LlamaCppEngine.load(model)  # same construction settings for both
        prompt_tokens = len(engine.llm.tokenize(
            engine.prompt_text(messages).encode(), add_bos=False, special=True))
        # Warm-up: page the weights in.
        engine.chat([{"role": "user", "content": "Hi"}])
        if kind == "llamacpp-raw":
            llm = engine.llm
            llm.reset()
            chunks = llm.create_chat_completion(messages=messages, stream=True,
                                                temperature=0.0, max_tokens=gen)
            pieces = (c["choices"][0]["delta"].get("content") or "" for c in chunks)
            pieces = (p for p in pieces if p)
        else:
            from pocketsleep.backends.base import GenerationOptions

            pieces = engine.stream_chat(messages, GenerationOptions(max_tokens=gen))
        return timed_stream(pieces, prompt_tokens, engine.count_tokens)

    from pocketsleep.backends.base import GenerationOptions
    from pocketsleep.backends.mlx_engine import MlxEngine

    engine = MlxEngine.load(model, paths)
    prompt = engine.prompt_tokens(messages)
    engine.chat([{"role": "user", "content": "Hi"}], GenerationOptions(max_tokens=4))
    if kind == "mlx-raw":
        from mlx_lm.generate import stream_generate
        from mlx_lm.sample_utils import make_sampler

        responses = stream_generate(engine.model, engine.tokenizer, prompt, max_tokens=gen,
                                    sampler=make_sampler(temp=0.0))
        pieces = (r.text for r in responses if r.text)
    else:
        pieces = engine.stream_chat(messages, GenerationOptions(max_tokens=gen))
    result = timed_stream(pieces, len(prompt), engine.count_tokens)
    from pocketsleep.backends.cpu_blas import blas_status

    result["blas"] = blas_status().get("library") or "bundled reference BLAS"
    return result


# -- the driver ----------------------------------------------------------------------

PAIRS = [
    ("llama.cpp", "llamacpp-raw", "llamacpp-ours", {}),
    ("MLX", "mlx-raw", "mlx-ours", {}),
]


def run_child(kind: str, words: int, gen: int, env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--prompt-words", str(words),
         "--gen", str(gen)],
        capture_output=True, text=True, env=env, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--child")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.prompt_words, args.gen)))
        return

    runs: dict[str, list[dict]] = {}
    plan = [(k, {}) for _, a, b, _ in PAIRS for k in (a, b)]
    plan.append(("mlx-ours-noblas", {"POCKETSLEEP_BLAS": "off"}))
    for rep in range(args.reps):
        for kind, env in plan:
            child = "mlx-ours" if kind == "mlx-ours-noblas" else kind
            reps = 1 if kind == "mlx-ours-noblas" else args.reps
            if rep >= reps:
                continue
            runs.setdefault(kind, []).append(run_child(child, args.prompt_words, args.gen, env))
            print(f"  rep {rep + 1}: {kind} done", file=sys.stderr)

    table = {k: {m: median_of(v, m) for m in ("ttft_s", "prefill_tps", "decode_tps")}
             for k, v in runs.items()}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    print(f"\nEmbedded model (SmolLM2-135M-Instruct), {args.prompt_words}-word prompt "
          f"(~{runs['mlx-ours'][0]['prompt_tokens']} tokens), {args.gen} new tokens, "
          f"median of {args.reps}; {machine}\n")
    print("| engine | TTFT s | prefill tok/s | decode tok/s | decode vs baseline |")
    print("|---|---|---|---|---|")
    baselines = {"llamacpp-ours": "llamacpp-raw", "mlx-ours": "mlx-raw",
                 "mlx-ours-noblas": "mlx-ours"}
    for kind, row in table.items():
        base = baselines.get(kind)
        ratio = f"{row['decode_tps'] / table[base]['decode_tps']:.2f}× {base}" if base else "—"
        print(f"| {kind} | {row['ttft_s']:.3f} | {row['prefill_tps']:.0f} | "
              f"{row['decode_tps']:.1f} | {ratio} |")
    noblas, fixed = table["mlx-ours-noblas"], table["mlx-ours"]
    print(f"\nBLAS fix: prefill ×{fixed['prefill_tps'] / noblas['prefill_tps']:.1f}, "
          f"decode ×{fixed['decode_tps'] / noblas['decode_tps']:.1f} "
          f"({runs['mlx-ours'][0].get('blas')})")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "runs": runs, "median": table},
                                        indent=2))


if __name__ == "__main__":
    main()
