"""Showing an eval result: a side-by-side table for the terminal, and a figure."""

from __future__ import annotations

from pathlib import Path

from ..errors import require
from .verdicts import nights_kept


def format_table(result: dict) -> str:
    methods = result["methods"]
    names = list(methods)
    width = max(14, *(len(n) + 2 for n in names))
    label_w = 22

    def row(label: str, cells: list[str]) -> str:
        return f"{label:<{label_w}}" + "".join(f"{c:>{width}}" for c in cells)

    def each(fn, partial=lambda m: "-") -> list[str]:
        # A method stopped part-way has no whole-run figures (they are null).
        return [fn(methods[n]) if _complete(methods[n]) else partial(methods[n]) for n in names]

    model = result.get("model_name") or result["model"]
    lines = [
        f"{result['suite']}: {result['days']} days, {result['probes']} probes, "
        f"{result['general_probes']} general · {model} on {result['engine']} · seed {result['seed']}"
        + ("" if result.get("complete", True) else " · INCOMPLETE (the run stopped)"),
        "",
        row("", names),
        row("final recall", each(_final, lambda m: f"stopped n{m['nights_done']}")),
        row("today's recall", each(lambda m: f"{m['today_recall']:.2f}")),
        row("stale answers", each(lambda m: str(m["stale_answers"]))),
        row("general probes", each(lambda m: _general(m, result["general_probes"]))),
        row("perplexity change", each(lambda m: _pct(m["ppl_change"]))),
        row("sleep s (total)", [f"{sum(methods[n]['sleep_seconds']):.1f}" for n in names]),
        row("peak RSS MB (max)", [f"{max(methods[n]['peak_rss_mb'], default=0):.0f}"
                                  for n in names]),
        row("nights kept", [_kept(methods[n]) for n in names]),
    ]
    name_w = max(8, *(len(n) for n in names))
    lines += _per_night(result, name_w) + _retention(result, name_w) + _verdicts(result, name_w)
    return "\n".join(lines)


def _per_night(result: dict, name_w: int) -> list[str]:
    methods, n_days = result["methods"], result["days"]
    lines = ["", "recall after each night (all probes so far)",
             f"  {'':<{name_w}}" + "".join(f"{'n' + str(n + 1):>6}" for n in range(n_days))]
    for name, m in methods.items():
        lines.append(f"  {name:<{name_w}}" + "".join(f"{r:>6.2f}" for r in m["recall_per_night"]))
    return lines


def _retention(result: dict, name_w: int) -> list[str]:
    n_days = result["days"]
    lines = ["", "retention: fraction of day d's probes right after night n"]
    for name, m in result["methods"].items():
        lines.append(f"  {name:<{name_w}}" + "".join(f"{'n' + str(n + 1):>6}" for n in range(n_days)))
        for d, cells in enumerate(m["retention"]):
            lines.append(f"  {'d' + str(d + 1):<{name_w}}"
                         + "".join(f"{'·' if c is None else f'{c:.2f}':>6}" for c in cells))
    return lines


def _verdicts(result: dict, name_w: int) -> list[str]:
    """Each night's gate verdict for the methods that have one, reasons when rejected."""
    gated = {name: m["nights"] for name, m in result["methods"].items() if m.get("nights")}
    if not gated:
        return []
    lines = ["", "gate verdict per night (held-out log-prob before → after, drift KL, "
             "perplexity change, seconds per phase)"]
    for name, nights in gated.items():
        for night in nights:
            lines.append(f"  {name:<{name_w}} n{night['night']} {verdict_line(night)}")
            lines += [f"  {'':<{name_w}}    - {reason}" for reason in night["reasons"]]
    return lines


def verdict_line(night: dict) -> str:
    """'kept  -1.55 → -1.21  KL 0.129  ppl +9.5%  self_study 176 s, distill 293 s'"""
    status = "kept" if night["status"] == "succeeded" else night["status"]
    parts = [f"{status:<9}"]
    if night.get("dreaming_undone"):
        parts.append("dreaming undone" if status == "kept"
                     else "dreaming undone, seeding alone rejected too")
    before, after = night.get("heldout_logprob_before"), night.get("heldout_logprob_after")
    if before is not None and after is not None:
        parts.append(f"{before:.2f} → {after:.2f}")
    if night.get("drift_kl") is not None:
        parts.append(f"KL {night['drift_kl']:.3f}")
    if night.get("unseen_drift_kl") is not None:
        parts.append(f"unseen KL {night['unseen_drift_kl']:.3f}")
    if night.get("quiz_right_before") is not None:
        parts.append(f"quiz {night['quiz_right_after']}/{night['quiz_right_before']}")
    if night.get("ppl_change") is not None:
        parts.append(f"ppl {_pct(night['ppl_change'])}")
    phases = night.get("seconds") or {}
    if phases:
        parts.append(", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    return "  ".join(parts)


def method_line(name: str, m: dict, general_total: int) -> str:
    """One method's row of the table, as a line: printed as soon as it finishes."""
    return (f"{name}: done: final recall {_final(m)}, today's {m['today_recall']:.2f}, "
            f"stale {m['stale_answers']}, general {_general(m, general_total)}, "
            f"perplexity {_pct(m['ppl_change'])}, sleep {sum(m['sleep_seconds']):.1f} s, "
            f"peak {max(m['peak_rss_mb'], default=0):.0f} MB, nights kept {_kept(m)}")


def _complete(m: dict) -> bool:
    return m.get("complete", True)  # results written before partial ones existed


def _final(m: dict) -> str:
    return f"{m['final_correct']}/{m['final_total']} {m['final_recall']:.2f}"


def _kept(m: dict) -> str:
    if not m.get("nights"):
        return "-"
    kept, total = nights_kept(m["nights"])
    return f"{kept}/{total}"


def _general(m: dict, total: int) -> str:
    acc = m["general_accuracy"]
    if acc is None:
        return "-"
    return f"{round(acc * total)}/{total} {acc:.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def write_plot(result: dict, path: Path | str) -> Path:
    """Recall per night for every method (lines), and each method's retention
    matrix (heatmaps), in one PNG."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = result["methods"]
    names = list(methods)
    n_days = result["days"]
    nights = np.arange(1, n_days + 1)
    cols = max(2, len(names))
    fig = plt.figure(figsize=(3.4 * cols, 7.4), layout="constrained")
    grid = fig.add_gridspec(2, cols, height_ratios=[1, 1.15])
    fig.suptitle(f"{result['suite']} · {result.get('model_name') or result['model']} "
                 f"on {result['engine']} · seed {result['seed']}"
                 + ("" if result.get("complete", True) else " · incomplete"))

    ax = fig.add_subplot(grid[0, :])
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
    marked_rejected = False
    for i, name in enumerate(names):
        m = methods[name]
        marker, line = styles[i % len(styles)]
        # Methods often tie (at 0): shrinking markers keep every one visible.
        recall = m["recall_per_night"]  # shorter than the suite for a stopped method
        label = (f"final {m['final_correct']}/{m['final_total']}" if _complete(m)
                 else f"stopped after night {len(recall)}")
        ax.plot(nights[: len(recall)], recall, marker=marker, linestyle=line,
                markersize=max(4, 9 - 1.5 * i), linewidth=2, label=f"{name} ({label})")
        rejected = [n["night"] for n in m.get("nights", [])
                    if n["status"] != "succeeded" and n["night"] <= len(recall)]
        if rejected:  # recall that did not move may be the gate's doing, not the method's
            ax.scatter(rejected, [recall[n - 1] for n in rejected], marker="x", s=90,
                       color="black", zorder=5,
                       label="night not kept (gate)" if not marked_rejected else None)
            marked_rejected = True
    ax.set_xlabel("after night")
    ax.set_ylabel("recall (all probes so far)")
    ax.set_xticks(nights)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")

    image = None
    for i, name in enumerate(names):
        hx = fig.add_subplot(grid[1, i])
        matrix = np.array([[np.nan if c is None else c for c in row]
                           for row in methods[name]["retention"]], dtype=float)
        image = hx.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        hx.set_title(f"{name}: retention")
        hx.set_xlabel("after night")
        hx.set_ylabel("day")
        hx.set_xticks(range(n_days), [str(n) for n in nights])
        hx.set_yticks(range(n_days), [str(n) for n in nights])
        if n_days <= 12:
            for d in range(n_days):
                for n in range(n_days):
                    if not np.isnan(matrix[d, n]):
                        hx.text(n, d, f"{matrix[d, n]:.2f}", ha="center", va="center",
                                fontsize=8, color="black" if matrix[d, n] > 0.6 else "white")
    if image is not None:
        fig.colorbar(image, ax=fig.axes[1:], shrink=0.8, label="fraction right")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def check_plotting() -> None:
    """Fail early (before a long run) when matplotlib is missing."""
    require("matplotlib", "plot", "--plot")
