"""What the student says after one night: to the questions it trained on, and to the
suite's probes.

    .venv/bin/python bench/student_answers.py [--suite FILE.json] [--day N] [--set OPTION=VALUE]

Tells a fact the night did not teach from one it taught under other words. For one
day of a memory suite (fresh embedded model on MLX, no earlier experts, no gate) it
builds the night's self-study set and distils it as `pocketsleep sleep` does, then
prints each training example (question -> teacher answer), and the student's greedy
closed-book answer to every training question and every probe, before and after the
night, with the probes' expected answers. About 4 minutes a dev-week day on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketsleep import prompts  # noqa: E402
from pocketsleep.eval.scoring import mentions  # noqa: E402
from pocketsleep.eval.suite import load_suite  # noqa: E402
from pocketsleep.sleep.options import SleepOptions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selfstudy_coverage import day_episode, fresh_student  # noqa: E402
from sleep_lab import DEFAULT_SUITE, parse_sets  # noqa: E402

ANSWER_TOKENS = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE)
    parser.add_argument("--day", type=int, default=1, help="Which day (from 1).")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="OPTION=VALUE")
    args = parser.parse_args()
    options = SleepOptions().but(**parse_sets(args.sets))
    suite = load_suite(args.suite)
    if not 1 <= args.day <= len(suite.days):
        sys.exit(f"student_answers: --day must be 1 to {len(suite.days)}")
    day = suite.days[args.day - 1]

    from pocketsleep.sleep.distill import distill
    from pocketsleep.sleep.sampling import generate
    from pocketsleep.sleep.selfstudy import build_examples

    with tempfile.TemporaryDirectory() as tmp:
        io, teacher = fresh_student(Path(tmp), options)
        train, _ = build_examples(io, teacher, day_episode(day), options)
        learn = [e for e in train if e.kind != "anchor"]

        def says(question: str) -> str:
            prompt = io.chat_ids(prompts.closed_book(question))
            return io.decode(generate(io.model, prompt, io.eos_ids, ANSWER_TOKENS).tokens)

        asked = list(dict.fromkeys(e.question for e in learn))
        before = {q: says(q) for q in asked + [p.question for p in day.probes]}
        log = distill(io, teacher, train, options)
        print(f"== day {args.day} ({day.date}): {len(learn)} learnable examples, "
              f"{log.steps} steps, learnable KL {log.fit['learnable']}")
        for e in learn:
            print(f"  train {e.question!r} -> {io.decode(e.answer.tokens)!r}")
        print("\n== training questions, closed-book")
        for q in asked:
            print(f"  {q!r}\n    before: {before[q]!r}\n    after:  {says(q)!r}")
        print("\n== probes, closed-book")
        for probe in day.probes:
            after = says(probe.question)
            print(f"  {'+' if mentions(after, probe.answers) else '-'} {probe.question!r} "
                  f"(expects {' / '.join(probe.answers)})\n"
                  f"    before: {before[probe.question]!r}\n    after:  {after!r}")


if __name__ == "__main__":
    main()
