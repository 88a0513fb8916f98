"""An eval result as the Markdown tables of bench/RESULTS.md, ready to paste.

Works on a partial result too (a stopped run's --json file): a method stopped
part-way shows the nights it finished and says where it stopped.
"""

from __future__ import annotations

from .verdicts import nights_kept


def results_tables(result: dict, retention: bool = False) -> str:
    """Heading, summary, recall after each night, gate verdicts (and retention)."""
    parts = [heading(result), summary_table(result), per_night_table(result),
             verdicts_table(result)]
    if retention:
        parts += [retention_table(name, m) for name, m in result["methods"].items()]
    return "\n\n".join(p for p in parts if p) + "\n"


def heading(result: dict) -> str:
    model = result.get("model_name") or result["model"]
    text = (f"`pocketsleep eval` on {result['suite']} ({result['days']} days, "
            f"{result['probes']} probes, {result['general_probes']} general probes), "
            f"{model} on {result['engine']}, seed {result['seed']}, "
            f"greedy, {result.get('max_tokens', '?')} tokens.")
    if not result.get("complete", True):
        stopped = [n for n, m in result["methods"].items() if not _complete(m)]
        text += (" **Incomplete**: the run stopped"
                 + (f" during {', '.join(stopped)}" if stopped else "") + ".")
    return text


def summary_table(result: dict) -> str:
    general = result["general_probes"]
    rows = [["method", "today's recall (mean over days)", "final recall", "stale answers",
             "general probes", "perplexity change", "sleep s (total)", "peak RSS MB",
             "nights kept"]]
    for name, m in result["methods"].items():
        done = _complete(m)
        rows.append([
            name,
            f"{m['today_recall']:.2f}" if done else "—",
            f"{m['final_correct']}/{m['final_total']} ({m['final_recall']:.2f})" if done
            else f"stopped after night {m['nights_done']}",
            str(m["stale_answers"]) if done else "—",
            _general(m["general_accuracy"], general) if done else "—",
            _pct(m["ppl_change"]) if done else "—",
            f"{sum(m['sleep_seconds']):.0f}",
            f"{max(m['peak_rss_mb'], default=0):.0f}",
            _kept(m),
        ])
    return _table(rows)


def per_night_table(result: dict) -> str:
    """Right answers after each night, all probes so far, and the general probes."""
    methods = result["methods"]
    rows = [["after night", *methods]]
    for night in range(1, result["days"] + 1):
        cells = [_night_cell(m, night) for m in methods.values()]
        if not any(cells):
            break
        asked = next((c for c in (_asked(m, night) for m in methods.values()) if c), None)
        rows.append([f"{night} ({asked} probes)" if asked else str(night), *cells])
    return _table(rows)


def verdicts_table(result: dict) -> str:
    """One row per night of every method that has gate verdicts (the sleep methods)."""
    gated = {name: m["nights"] for name, m in result["methods"].items() if m.get("nights")}
    if not gated:
        return ""
    phases = list(dict.fromkeys(p for nights in gated.values() for n in nights
                                for p in (n.get("seconds") or {})))
    rows = [["method", "night", "gate", "why not kept", "held-out log-prob", "drift KL",
             "unseen drift KL", "quiz kept", "perplexity change", *(f"{p} s" for p in phases), "total s"]]
    for name, nights in gated.items():
        for n in nights:
            rows.append([
                name, str(n["night"]),
                "kept" if n["status"] == "succeeded" else f"**{n['status']}**",
                "; ".join(n["reasons"]) or "—",
                _arrow(n.get("heldout_logprob_before"), n.get("heldout_logprob_after")),
                _num(n.get("drift_kl"), 3),
                _num(n.get("unseen_drift_kl"), 3),
                _of(n.get("quiz_right_after"), n.get("quiz_right_before")),
                _pct(n.get("ppl_change")),
                *(_num((n.get("seconds") or {}).get(p), 0) for p in phases),
                _num(n.get("total_seconds"), 0),
            ])
    return _table(rows)


def retention_table(name: str, m: dict) -> str:
    """Fraction of day d's probes right after night n, for one method."""
    n_days = len(m["retention"])
    rows = [[f"{name}: day / after night", *(str(n + 1) for n in range(n_days))]]
    for d, cells in enumerate(m["retention"]):
        rows.append([str(d + 1), *("·" if c is None else f"{c:.2f}" for c in cells)])
    return _table(rows)


def _night_cell(m: dict, night: int) -> str:
    answers = [a for a in m.get("answers", []) if a["night"] == night]
    if not answers:
        return ""
    probes = [a for a in answers if a["day"] is not None]
    general = [a for a in answers if a["day"] is None]
    cell = f"{sum(a['correct'] for a in probes)}/{len(probes)}"
    if general:
        cell += f", general {sum(a['correct'] for a in general)}/{len(general)}"
    return cell


def _asked(m: dict, night: int) -> int:
    return sum(1 for a in m.get("answers", []) if a["night"] == night and a["day"] is not None)


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def _cell(text: str) -> str:
    # A reason can quote anything; a bare | would split the cell.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _complete(m: dict) -> bool:
    return m.get("complete", True)


def _kept(m: dict) -> str:
    if not m.get("nights"):
        return "—"
    kept, total = nights_kept(m["nights"])
    return f"{kept}/{total}"


def _general(accuracy: float | None, total: int) -> str:
    return "—" if accuracy is None else f"{round(accuracy * total)}/{total}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:+.1f}%"


def _num(x: float | None, digits: int) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _arrow(before: float | None, after: float | None) -> str:
    return "—" if before is None or after is None else f"{before:.2f} → {after:.2f}"


def _of(part: int | None, whole: int | None) -> str:
    return "—" if part is None or whole is None else f"{part}/{whole}"
