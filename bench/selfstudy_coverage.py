"""Which of a memory suite's facts reach a night's training set, without training.

    .venv/bin/python bench/selfstudy_coverage.py [--suite FILE.json] [--days N] [--set OPTION=VALUE]

A night can only teach what its self-study set holds: a fact that no training
answer states is never recalled, however the distillation is tuned. For each day this
builds the night's self-study set exactly as `pocketsleep sleep` does (the embedded
model on MLX, no earlier experts) and prints, for every probe, whether some training
answer (and some held-out one) contains its expected answer, the number of examples of
each kind, the share of learnable answers that state some probe's answer, and the
seconds it took. Minutes for dev-week on a 2-core CPU, against an hour of nights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketsleep.config import Config, Paths  # noqa: E402
from pocketsleep.eval.scoring import mentions  # noqa: E402
from pocketsleep.eval.suite import load_suite  # noqa: E402
from pocketsleep.sleep.episode import Episode  # noqa: E402
from pocketsleep.sleep.options import SleepOptions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sleep_lab import DEFAULT_SUITE, parse_sets  # noqa: E402


def fresh_student(folder: Path, options: SleepOptions):
    """The embedded model on MLX (a fresh home in `folder`, no earlier experts),
    wearing tonight's zero expert: (ModelIO, Teacher) as a night starts."""
    from pocketsleep.backends import mlx_lora
    from pocketsleep.backends.mlx_engine import MlxEngine
    from pocketsleep.models import resolve_model
    from pocketsleep.sleep.selfstudy import ModelIO, Teacher

    paths = Paths(folder).ensure()
    engine = MlxEngine.load(resolve_model(Config().model, paths), paths)
    mlx_lora.add_trainable_expert(engine.model, options.num_layers, list(options.keys),
                                  options.rank, options.scale, seed=options.seed)
    io = ModelIO(engine.model, engine.tokenizer)
    return io, Teacher(io, options)


def day_episode(day) -> Episode:
    """A suite day's conversations as one night's episode."""
    return Episode(tuple(range(len(day.conversations))),
                   tuple(tuple(c) for c in day.conversations),
                   (day.date,) * len(day.conversations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE)
    parser.add_argument("--days", type=int)
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="OPTION=VALUE")
    parser.add_argument("--show", action="store_true", help="Print every learnable example.")
    args = parser.parse_args()
    options = SleepOptions().but(**parse_sets(args.sets))
    suite = load_suite(args.suite).first(args.days)

    from pocketsleep.sleep.selfstudy import build_examples

    with tempfile.TemporaryDirectory() as tmp:
        io, teacher = fresh_student(Path(tmp), options)
        covered = held_covered = total = 0
        for n, day in enumerate(suite.days, 1):
            started = time.perf_counter()
            train, held = build_examples(io, teacher, day_episode(day), options)
            seconds = time.perf_counter() - started
            learn = [e for e in train if e.kind != "anchor"]
            texts = {id(e): io.decode(e.answer.tokens) for e in learn + held}
            stating = sum(any(mentions(texts[id(e)], p.answers) for p in day.probes)
                          for e in learn)
            print(f"== day {n} ({day.date}): {len(learn)} learnable, "
                  f"{len(train) - len(learn)} anchors, {len(held)} held out; "
                  f"{stating}/{len(learn)} learnable answers state a probe's answer; "
                  f"{seconds:.0f} s")
            for probe in day.probes:
                in_train = sum(mentions(texts[id(e)], probe.answers) for e in learn)
                in_held = sum(mentions(texts[id(e)], probe.answers) for e in held
                              if e.kind != "anchor")
                covered += in_train > 0
                held_covered += in_held > 0
                total += 1
                print(f"  {'+' if in_train else '-'} {probe.question:40} {in_train:2} train, "
                      f"{in_held} held out")
            if args.show:
                for e in learn:
                    print(f"    {e.kind:9} {e.question} -> {texts[id(e)][:100]!r}")
        print(f"\nprobes whose answer some training answer states: {covered}/{total} "
              f"(in held-out answers: {held_covered}/{total})")


if __name__ == "__main__":
    main()
