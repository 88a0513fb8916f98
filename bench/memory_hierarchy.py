"""Memory hierarchy, merge, rollback and forget on the embedded model, through the CLI.

    .venv/bin/python bench/memory_hierarchy.py [--days 3] [--window 3] [--json OUT]

What a user's first nights do, each step the command a user would type, in a fresh
data home: every dev-week day is logged (`pocketsleep log`), slept on
(`pocketsleep sleep --json`: the night, a consolidation when the nightly window
expires, the morning merge) and probed closed-book (`pocketsleep ask`, greedy).
With --window 3 and 3 days the third night consolidates the three nightly experts
into one weekly expert. Then:

- rollback: `models rollback` to the version before the last night must give the
  very answers that version gave, and a rollback back again the last night's;
- forget: `pocketsleep forget` of the conversation behind a recalled probe (the
  first day's, if none is recalled) rebuilds the experts trained on it and
  re-merges; its probes are asked again, and so are the others.

Prints a table per night (active experts, recall, the merge's fused-vs-unfused
check) and the rollback and forget verdicts. About 35 minutes on a 2-core CPU
for 3 days.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pocketsleep.eval.scoring import mentions  # noqa: E402
from pocketsleep.eval.suite import load_suite  # noqa: E402

SUITE = HERE.parent.parent / "shared" / "eval" / "dev-week.json"
CLI = [sys.executable, "-m", "pocketsleep"]
MAX_TOKENS = 32  # as `pocketsleep eval` asks its probes


class User:
    """Types pocketsleep commands in one data home."""

    def __init__(self, home: Path):
        self.env = {**os.environ, "POCKETSLEEP_HOME": str(home)}

    def run(self, *args: str, input: str | None = None) -> str:
        done = subprocess.run(CLI + list(args), env=self.env, input=input, text=True,
                              capture_output=True)
        if done.returncode not in (0, 3):  # 3: the gate rejected the night
            sys.exit(f"`pocketsleep {' '.join(args)}` failed ({done.returncode}):\n"
                     f"{done.stderr[-2000:]}")
        return done.stdout

    def json(self, *args: str) -> dict | list:
        return json.loads(self.run(*args, "--json"))

    def ask(self, question: str) -> str:
        return self.json("ask", question, "--max-tokens", str(MAX_TOKENS))["answer"]


def ask_all(user: User, probes: list) -> list[dict]:
    return [{"question": p.question, "answer": (a := user.ask(p.question)),
             "recalled": mentions(a, p.answers)} for p in probes]


def conversation_texts(user: User) -> dict[int, str]:
    return {r["id"]: " ".join(m["content"] for m in user.json("history", str(r["id"]))["messages"])
            for r in user.json("history")}


def holding(texts: dict[int, str], answers: tuple[str, ...]) -> int | None:
    """The one conversation whose text mentions a probe's answer."""
    hits = [cid for cid, text in texts.items() if mentions(text, answers)]
    return hits[0] if len(hits) == 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=SUITE)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--window", type=int, default=3, help="nightly_window (and weekly_window)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--home", type=Path, help="Keep the data home here; a rerun with it "
                    "goes on from the nights it finished.")
    args = ap.parse_args()
    suite = load_suite(args.suite).first(args.days)
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "days": args.days, "window": args.window}
    with tempfile.TemporaryDirectory(prefix="pocketsleep-memory-") as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f"nightly_window = {args.window}\nweekly_window = {args.window}\n")
        user = User(home)
        # Nights already done in a kept --home are not run again (kept beside it: the
        # forget check reads every file in the home for what was forgotten).
        state = home.parent / f"{home.name}.bench.json"
        done = json.loads(state.read_text()) if state.exists() else {"nights": [], "answers": []}
        probes = [p for day in suite.days[:len(done["nights"])] for p in day.probes]
        for n, day in enumerate(suite.days[len(done["nights"]):], len(done["nights"]) + 1):
            for c in day.conversations:
                user.run("log", "--file", "-", "--date", day.date, input=json.dumps(list(c)))
            started = time.perf_counter()
            night = user.json("sleep")
            seconds = time.perf_counter() - started
            probes += day.probes
            answers = ask_all(user, probes)
            row = night_row(n, night, seconds, user.json("models"), answers)
            done["nights"].append(row)
            done["answers"].append(answers)
            state.write_text(json.dumps(done))
            print(json.dumps(row), flush=True)
        out["nights"] = done["nights"]
        out["rollback"] = check_rollback(user, probes, done)
        out["forget"] = check_forget(user, home, probes, done["answers"][-1], suite)
    print_tables(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


def night_row(n: int, night: dict, seconds: float, versions: list, answers: list) -> dict:
    merge = night.get("merge") or {}
    checks = merge.get("checks") or {}
    current = next((v for v in versions if v["status"] == "current"), {})
    return {
        "night": n, "status": night["status"], "seconds": round(seconds),
        "consolidations": [f"{r['status']} into {r['into']} ({r['seconds']:.0f} s)"
                           for r in night["consolidation"]["runs"]],
        "merge": merge.get("status"), "version": current.get("version"),
        "experts": "+".join(e["level"][0].upper() for e in current.get("experts", [])),
        "max_logit_diff": checks.get("max_logit_diff"),
        "same_answers": f"{checks.get('same_answers')}/{checks.get('questions')}",
        "recalled": sum(a["recalled"] for a in answers), "probes": len(answers),
    }


def check_rollback(user: User, probes: list, done: dict) -> dict:
    """Back to the version the night before the last made, then forward again."""
    nights, answers = done["nights"], done["answers"]
    if len(nights) < 2 or None in (nights[-1]["version"], nights[-2]["version"]) \
            or nights[-1]["version"] == nights[-2]["version"]:
        return {"ran": False, "why": "the last two nights did not each make a version"}
    last, previous = nights[-1]["version"], nights[-2]["version"]
    user.run("models", "rollback", str(previous))
    back = ask_all(user, probes[:len(answers[-2])])
    user.run("models", "rollback", str(last))
    forward = ask_all(user, probes)
    return {"ran": True, "from": last, "to": previous,
            "same_as_before": sum(a["answer"] == b["answer"] for a, b in zip(back, answers[-2])),
            "asked_back": len(back),
            "same_after_undo": sum(a["answer"] == b["answer"] for a, b in zip(forward, answers[-1])),
            "asked_forward": len(forward)}


def check_forget(user: User, home: Path, probes: list, before: list[dict], suite) -> dict:
    """Forget the conversation behind the first recalled probe that one conversation
    holds (else behind the first day's first probe); ask everything again, and look
    for the forgotten answers in every file of the data home."""
    recalled = [p for p, a in zip(probes, before) if a["recalled"]]
    texts = conversation_texts(user)
    target = next((cid for p in recalled + list(suite.days[0].probes)
                   if (cid := holding(texts, p.answers)) is not None), None)
    if target is None:
        return {"ran": False, "why": "no probe's answer is in exactly one conversation"}
    # Every probe whose answer only that conversation holds is about what is forgotten.
    gone = [i for i, p in enumerate(probes) if holding(texts, p.answers) == target]
    others = [i for i in range(len(probes)) if i not in gone]
    started = time.perf_counter()
    summary = user.run("forget", str(target), "--yes")
    seconds = time.perf_counter() - started
    after = ask_all(user, probes)
    # As written, case and all: in any case "biscuit" is in the base model's own
    # vocabulary ("Ġbiscuits"), so every tokenizer and GGUF file would match.
    words = [w.encode() for i in gone for w in probes[i].answers]
    leftover = sorted(str(f.relative_to(home)) for f in home.rglob("*")
                      if f.is_file() and any(w in f.read_bytes() for w in words))
    return {"ran": True, "conversation": target, "seconds": round(seconds),
            "summary": summary.strip(),
            "forgotten": [{"question": probes[i].question, "before": before[i]["recalled"],
                           "after": after[i]["recalled"], "answer_after": after[i]["answer"]}
                          for i in gone],
            "files_with_the_answers": leftover,
            "others_before": sum(before[i]["recalled"] for i in others),
            "others_after": sum(after[i]["recalled"] for i in others),
            "others": len(others)}


def print_tables(out: dict) -> None:
    print(f"\nmachine: {out['machine']}; {out['days']} days, window {out['window']}\n")
    print("| night | status | s | consolidation | merge | version | experts | "
          "max logit diff | same answers | recall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["nights"]:
        print(f"| {r['night']} | {r['status']} | {r['seconds']} | "
              f"{'; '.join(r['consolidations']) or '—'} | {r['merge']} | v{r['version']} | "
              f"{r['experts']} | {_g(r['max_logit_diff'])} | {r['same_answers']} | "
              f"{r['recalled']}/{r['probes']} |")
    rb = out["rollback"]
    if rb.get("ran"):
        print(f"\nrollback v{rb['from']} -> v{rb['to']}: {rb['same_as_before']}/{rb['asked_back']} "
              f"answers identical to v{rb['to']}'s; undone: {rb['same_after_undo']}/"
              f"{rb['asked_forward']} identical to v{rb['from']}'s")
    f = out["forget"]
    if not f.get("ran"):
        print(f"forget: not run ({f.get('why')})")
        return
    print(f"forget conversation {f['conversation']} ({f['seconds']} s): {f['summary']}")
    for g in f["forgotten"]:
        print(f"  {g['question']!r}: recalled {g['before']} -> {g['after']} "
              f"({g['answer_after'][:60]!r})")
    print(f"  the other probes: recalled {f['others_before']} -> {f['others_after']} of "
          f"{f['others']}; files in the data home holding the forgotten answers: "
          f"{f['files_with_the_answers'] or 'none'}")


def _g(x) -> str:
    return "—" if x is None else f"{x:.2g}"


if __name__ == "__main__":
    main()
