"""Showing an eval result: a side-by-side table for the terminal, and a figure."""

from __future__ import annotations

from pathlib import Path

from ..errors import require


def format_table(result: dict) -> str:
    methods = result["methods"]
    names = list(methods)
    width = max(14, *(len(n) + 2 for n in names))
    label_w = 22

    def row(label: str, cells: list[str]) -> str:
        return f"{label:<{label_w}}" + "".join(f"{c:>{width}}" for c in cells)

    def each(fn) -> list[str]:
        return [fn(methods[n]) for n in names]

    model = result.get("model_name") or result["model"]
    lines = [
        f"{result['suite']}: {result['days']} days, {result['probes']} probes, "
        f"{result['general_probes']} general · {model} on {result['engine']} · seed {result['seed']}",
        "",
        row("", names),
        row("final recall", each(lambda m: f"{m['final_correct']}/{m['final_total']} {m['final_recall']:.2f}")),
        row("today's recall", each(lambda m: f"{m['today_recall']:.2f}")),
        row("stale answers", each(lambda m: str(m["stale_answers"]))),
        row("general probes", each(lambda m: _general(m, result["general_probes"]))),
        row("perplexity change", each(lambda m: _pct(m["ppl_change"]))),
        row("sleep s (total)", each(lambda m: f"{sum(m['sleep_seconds']):.1f}")),
        row("peak RSS MB (max)", each(lambda m: f"{max(m['peak_rss_mb']):.0f}")),
    ]
    n_days = result["days"]
    name_w = max(8, *(len(n) for n in names))
    lines += ["", "recall after each night (all probes so far)",
              f"  {'':<{name_w}}" + "".join(f"{'n' + str(n + 1):>6}" for n in range(n_days))]
    for name in names:
        lines.append(f"  {name:<{name_w}}"
                     + "".join(f"{r:>6.2f}" for r in methods[name]["recall_per_night"]))
    lines += ["", "retention: fraction of day d's probes right after night n"]
    for name in names:
        matrix = methods[name]["retention"]
        lines.append(f"  {name:<{name_w}}" + "".join(f"{'n' + str(n + 1):>6}" for n in range(n_days)))
        for d, cells in enumerate(matrix):
            lines.append(f"  {'d' + str(d + 1):<{name_w}}"
                         + "".join(f"{'·' if c is None else f'{c:.2f}':>6}" for c in cells))
    return "\n".join(lines)


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
                 f"on {result['engine']} · seed {result['seed']}")

    ax = fig.add_subplot(grid[0, :])
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
    for i, name in enumerate(names):
        m = methods[name]
        marker, line = styles[i % len(styles)]
        # Methods often tie (at 0): shrinking markers keep every one visible.
        ax.plot(nights, m["recall_per_night"], marker=marker, linestyle=line,
                markersize=max(4, 9 - 1.5 * i), linewidth=2,
                label=f"{name} (final {m['final_correct']}/{m['final_total']})")
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
