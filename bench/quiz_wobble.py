"""How much the gate's quiz wobbles under perturbations that teach nothing.

    .venv/bin/python bench/quiz_wobble.py [--sizes 0.03,0.06,0.12] [--draws 10]
        [--candidates bench/quiz_candidates.json] [--json OUT]

The gate rejects a night whose expert makes the model get two of the quiz's general
questions wrong (prompts.GATE_QUIZ, options.max_quiz_lost). A question whose greedy
answer flips under any change of the weights rejects nights for noise, not harm. This
puts random low-rank noise (the dreaming phase's noise_expert) on the layers tonight's
expert would train, at a few sizes, several draws each, and reports per size the
drift it causes on the quiz's answers (the gate's unseen_drift_kl, nats per token, so
it can be set beside real nights' figures: `gate.unseen_drift_kl` in the journal's
sleeps.metrics, the "unseen drift KL" column of `eval`'s night table) and how
many draws lose each question (greedy answer no longer names the expected keyword,
exactly as the gate judges).

Noise moves the weights in no particular direction: at the same drift, a question it
flips is fragile, not harmed. A size is the noise's output relative to each layer's
own (dreaming's noise_expert); on the embedded model 0.03 drifts the quiz by about as
much as a kept dev-week night (KL 0.005-0.018). With --candidates it measures
questions one might add to the quiz instead (bench/quiz_candidates.json: those tried
for the eleventh round, bench/RESULTS.md). The embedded model, MLX on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_io(home: Path):
    from pocketsleep.backends import mlx_lora
    from pocketsleep.backends.mlx_engine import MlxEngine
    from pocketsleep.config import Config, Paths
    from pocketsleep.models import resolve_model
    from pocketsleep.sleep.options import SleepOptions
    from pocketsleep.sleep.selfstudy import ModelIO

    paths = Paths(home).ensure()
    engine = MlxEngine.load(resolve_model(Config().model, paths), paths)
    options = SleepOptions()
    # Tonight's expert, untrained (B = 0): it only marks the layers noise goes on.
    mlx_lora.add_trainable_expert(engine.model, options.num_layers, list(options.keys),
                                  options.rank, options.scale)
    return ModelIO(engine.model, engine.tokenizer), options


def wobble(io, options, quiz, sizes: list[float], draws: int, rank: int) -> dict:
    import numpy as np

    from pocketsleep.eval.scoring import mentions
    from pocketsleep.sleep import gate
    from pocketsleep.sleep.dreaming.diversify import noise_expert

    unseen = gate.unseen_generic(io, options, quiz)
    expected = dict(quiz)
    right = [e for e in unseen if mentions(io.decode(e.answer.tokens), expected[e.question])]
    before = gate.answers_logprobs(io, unseen)  # as the gate's unseen_drift_kl: the whole quiz
    rows = []
    for size in sizes:
        per_draw = []
        for d in range(draws):
            with noise_expert(io.model, rank, size, seed=1000 * d + 7):
                kl = gate.drift_kl(before, gate.answers_logprobs(io, unseen))
                lost = gate.quiz_lost(io, unseen, options, quiz)["quiz_lost"]
            per_draw.append({"unseen_drift_kl": round(kl, 4), "lost": lost})
        rows.append({"size": size, "draws": per_draw})
        kls = [x["unseen_drift_kl"] for x in per_draw]
        counts = [len(x["lost"]) for x in per_draw]
        print(f"size {size:<6} drift KL {np.mean(kls):.3f} ({min(kls):.3f}-{max(kls):.3f})  "
              f"lost per draw {counts}", flush=True)
    return {"right_before": [e.question for e in right],
            "wrong_before": {e.question: io.decode(e.answer.tokens).strip()
                             for e in unseen if e not in right},
            "draws": draws, "rank": rank, "rows": rows}


def print_table(result: dict) -> None:
    sizes = [r["size"] for r in result["rows"]]
    print(f"\n| question | {' | '.join(f'lost at {s}' for s in sizes)} |")
    print(f"|---|{'---|' * len(sizes)}")
    for q in result["right_before"]:
        cells = [f"{sum(q in x['lost'] for x in r['draws'])}/{result['draws']}"
                 for r in result["rows"]]
        print(f"| {q} | {' | '.join(cells)} |")
    for q, answer in result["wrong_before"].items():
        print(f"| {q} | wrong before any noise: \"{answer[:50]}\" |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.03,0.06,0.12",
                    help="Noise output relative to each layer's own, comma-separated.")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--rank", type=int, default=16, help="Noise rank (tonight's expert's).")
    ap.add_argument("--candidates", type=Path,
                    help="A JSON list of [question, [keywords]] to measure instead of "
                         "the gate's quiz (questions one might add to it).")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from pocketsleep import prompts

    quiz = prompts.GATE_QUIZ
    if args.candidates:
        quiz = tuple((q, tuple(k)) for q, k in json.loads(args.candidates.read_text()))
    with tempfile.TemporaryDirectory() as home:
        io, options = load_io(Path(home))
        result = wobble(io, options, quiz, [float(s) for s in args.sizes.split(",")],
                        args.draws, args.rank)
    print_table(result)
    if args.json:
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
