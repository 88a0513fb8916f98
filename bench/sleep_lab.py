"""One sleep setting against the defaults, on the first days of a memory suite.

    .venv/bin/python bench/sleep_lab.py --days 1 --set learning_rate=4e-4 --set steps=48

Runs `pocketsleep eval`'s harness with one method: the sleep job with the given
SleepOptions changed (no flag: the defaults), and prints what a setting is judged by:
each day's recall right after its night, the general probes, and each night's gate
(kept?, drift, quiz, perplexity, seconds), then every probe's answer. With --examples
it also prints the self-study set the night trained on (question -> teacher answer),
which is where a fact that is never recalled is usually missing.

Two labs at once use one core each (the BLAS runs one thread): compare settings run
side by side, not against figures from another day.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketsleep.config import Config  # noqa: E402
from pocketsleep.eval.harness import run_eval  # noqa: E402
from pocketsleep.eval.methods import Sleep  # noqa: E402
from pocketsleep.eval.suite import load_suite  # noqa: E402
from pocketsleep.sleep import selfstudy  # noqa: E402
from pocketsleep.sleep.options import SleepOptions  # noqa: E402

DEFAULT_SUITE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev-week.json"


def parse_sets(pairs: list[str]) -> dict:
    """'steps=48' -> {'steps': 48}, typed as the option's default is."""
    fields = {f.name: f for f in dataclasses.fields(SleepOptions)}
    out = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in fields:
            sys.exit(f"sleep_lab: no option '{name}'; options: {', '.join(fields)}")
        default = getattr(SleepOptions(), name)
        if isinstance(default, bool):
            value = text.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, tuple):
            value = tuple(t for t in text.split(",") if t)
        elif default is None:
            value = None if text.lower() == "none" else float(text)
        else:
            value = type(default)(text)
        out[name] = value
    return out


def lab_method(changes: dict) -> type[Sleep]:
    class LabSleep(Sleep):
        name = "lab"
        description = f"sleep with {changes or 'the defaults'}"

        def sleep_options(self):
            return SleepOptions(seed=self.ctx.seed).but(**changes)

    return LabSleep


def capture_examples(store: list) -> None:
    """Keep every night's training and held-out examples (question, answer text)."""
    original = selfstudy.study

    def study(io, teacher, episode, options, *args, **kwargs):
        studied, train, held = original(io, teacher, episode, options, *args, **kwargs)
        # By identity: two examples alike up to their answers would compare arrays.
        held_ids = {id(e) for e in held}
        store.append([(e.kind, "held" if id(e) in held_ids else "train", e.question,
                       io.decode(e.answer.tokens)) for e in train + held])
        return studied, train, held

    selfstudy.study = study  # the sleep job imports it when a night starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="OPTION=VALUE", help="A SleepOptions field to change.")
    parser.add_argument("--engine", default="llamacpp", help="Which engine answers the probes.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", action="store_true", help="Print the self-study set.")
    parser.add_argument("--json", type=Path, help="Write the eval result here.")
    args = parser.parse_args()

    changes = parse_sets(args.sets)
    examples: list = []
    capture_examples(examples)
    suite = load_suite(args.suite).first(args.days)
    result = run_eval(suite, [lab_method(changes)], config=Config(engine=args.engine),
                      seed=args.seed, progress=lambda line: print(f"lab: {line}", flush=True))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print_result(result["methods"]["lab"], changes, examples if args.examples else [])


def print_result(lab: dict, changes: dict, examples: list) -> None:
    print(f"\n== {changes or 'defaults'}")
    today = [a for a in lab["answers"] if a["day"] is not None and a["day"] == a["night"]]
    for night, verdict in enumerate(lab.get("nights") or [], 1):
        right = [a for a in today if a["night"] == night]
        general = [a for a in lab["answers"] if a["night"] == night and a["day"] is None]
        keys = ("status", "examples", "drift_kl", "quiz_right_before", "quiz_right_after",
                "ppl_change", "heldout_logprob_before", "heldout_logprob_after",
                "dreaming_undone", "scaled_back", "total_seconds")
        shown = {k: verdict.get(k) for k in keys if k in verdict}
        print(f"night {night}: today {sum(a['correct'] for a in right)}/{len(right)}, "
              f"general {sum(a['correct'] for a in general)}/{len(general)}, {shown}")
        print(f"  seconds: {verdict.get('seconds')}")
        if verdict.get("dream"):
            print(f"  dream: {verdict['dream']}")
        if verdict.get("reasons"):
            print(f"  reasons: {verdict['reasons']}")
    print(f"final recall {lab['final_recall']:.2f}, today {lab['today_recall']:.2f}, "
          f"general {lab['general_accuracy']:.2f}, ppl {lab['ppl_change']:+.3f}")
    last = max(a["night"] for a in lab["answers"])
    for a in lab["answers"]:
        if a["night"] == last:
            mark = "+" if a["correct"] else "-"
            print(f"  {mark} [{a['day']}] {a['question']} -> {a['answer'][:90]!r}")
    for night, rows in enumerate(examples, 1):
        print(f"-- night {night} self-study set ({len(rows)} examples)")
        for kind, part, question, answer in rows:
            if kind != "anchor":
                print(f"  {kind:9} {part:5} {question} -> {answer[:100]!r}")


if __name__ == "__main__":
    main()
