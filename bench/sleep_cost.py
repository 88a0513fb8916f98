"""What one night's sleep costs as the day grows: 1x, 4x and 16x a dev-week day.

    .venv/bin/python bench/sleep_cost.py [--sizes 1,4,16] [--day 0] [--budget 5m] [--json OUT]

Each size runs `pocketsleep sleep`'s own pipeline (run_sleep, default options, gate
on) on the embedded model in a fresh temporary data home and its own process, so
peak memory is that night's alone. A k-times day is the suite day's conversations
repeated k times with the names in them varied, so the questions differ. Reported:
episode tokens (estimate), self-study examples, seconds per phase, total, peak RSS.
With --budget (as `pocketsleep sleep --budget`), also how many conversations the
night learned and how many it left pending for the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = HERE.parent.parent / "shared" / "eval" / "dev-week.json"
# Names swapped in for the copies of a day, so a 16x day is 16 different people.
NAMES = ["Biscuit", "Pepper", "Mango", "Ziggy", "Olive", "Rocket", "Hazel", "Bruno",
         "Luna", "Tofu", "Maple", "Pixel", "Nacho", "Clover", "Juniper", "Waffles"]


def varied_day(conversations: list, k: int) -> list:
    out = []
    for i in range(k):
        for c in conversations:
            out.append([{**m, "content": m["content"].replace("Biscuit", NAMES[i % len(NAMES)])}
                        for m in c])
    return out


def one_night(suite: Path, day: int, k: int, budget: str | None) -> dict:
    """Run in a child process: log the k-times day, sleep, report."""
    import time

    from pocketsleep.config import Config, Paths
    from pocketsleep.journal import Journal
    from pocketsleep.sleep import SleepOptions, run_sleep
    from pocketsleep.sleep.options import parse_budget

    days = json.loads(suite.read_text())["days"]
    with tempfile.TemporaryDirectory() as home:
        paths = Paths(Path(home)).ensure()
        with Journal.open(paths.journal) as journal:
            for c in varied_day(days[day]["conversations"], k):
                journal.log_conversation(c)
        started = time.perf_counter()
        options = SleepOptions(budget_seconds=parse_budget(budget) if budget else None)
        report = run_sleep(paths, Config(), options)
        total = time.perf_counter() - started
        m = report.metrics
        tokens = sum(len(x["content"].split()) for c in varied_day(
            days[day]["conversations"], k) for x in c) * 4 // 3
    return {"size": k, "status": report.status, "episode_tokens": tokens,
            "examples": m.get("examples", {}), "seconds": m.get("seconds", {}),
            "total_seconds": round(total, 1),
            "learned": len(report.conversations) if report.status == "succeeded" else 0,
            "deferred": len(m.get("deferred", [])),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--day", type=int, default=0)
    ap.add_argument("--suite", type=Path, default=SUITE)
    ap.add_argument("--budget", help="Each night's --budget (e.g. 5m).")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(one_night(args.suite, args.day, args.child, args.budget)))
        return
    rows = []
    for k in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--child", str(k), "--day",
                              str(args.day), "--suite", str(args.suite)]
                             + (["--budget", args.budget] if args.budget else []),
                             capture_output=True, text=True, check=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{k:>3}x  {r['episode_tokens']:>6} tokens  {r['examples'].get('train', 0):>4} "
              f"examples  self-study {r['seconds'].get('self_study', 0):>6.0f} s  "
              f"distill {r['seconds'].get('distill', 0):>5.0f} s  gate "
              f"{r['seconds'].get('gate', 0):>4.0f} s  total {r['total_seconds']:>6.0f} s  "
              f"peak {r['peak_rss_mb']:>5} MB  {r['status']}, learned {r['learned']} "
              f"conversations, {r['deferred']} left pending", flush=True)
    base = rows[0]["total_seconds"] if rows else None
    for r in rows:
        r["time_ratio_to_1x"] = round(r["total_seconds"] / base, 2) if base else None
    if args.json:
        args.json.write_text(json.dumps({"machine": f"{platform.machine()}, "
                                         f"{os.cpu_count()} cores", "budget": args.budget,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
