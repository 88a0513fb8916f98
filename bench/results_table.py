"""Markdown tables for bench/RESULTS.md from a `pocketsleep eval --json` file.

    .venv/bin/python bench/results_table.py bench/out/eval-dev-week.json
        [--retention] [--plot OUT.png]

Prints the summary (one row per method), recall after each night, and each night's
gate verdict for the sleep methods, ready to paste. A stopped run's file works too:
it holds every method and night that finished (`"complete": false`).
"""

from __future__ import annotations

import argparse
import sys

from pocketsleep.errors import InputError
from pocketsleep.eval.markdown import results_tables
from pocketsleep.eval.result_file import read_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("result", help="the JSON written by pocketsleep eval --json")
    ap.add_argument("--retention", action="store_true",
                    help="also each method's retention matrix (day x night)")
    ap.add_argument("--plot", metavar="PNG", help="also draw the figure of eval --plot")
    args = ap.parse_args()
    try:
        result = read_result(args.result)
        sys.stdout.write(results_tables(result, retention=args.retention))
        if args.plot:
            from pocketsleep.eval.report import write_plot

            write_plot(result, args.plot)
    except InputError as e:
        print(f"results_table: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
