"""The comparison's plot, ``accuracy_per_task.png``, in the style of a run's report (:mod:`..plotting`)."""

from __future__ import annotations

from pathlib import Path

from ..plotting import SMALL_SIZE, TITLE_SIZE, grid, new_figure, save_png


def plot(summary: dict, path: Path) -> Path:
    """Grouped bars from 0 %: final test accuracy per task (x) for every method (colour), with the standard
    deviation over seeds as error bars where there are several seeds; the legend sits above the axes."""
    methods = list(summary["methods"])
    n_tasks = summary["n_tasks"]
    width = 0.8 / max(1, len(methods))
    fig = new_figure(max(6.0, 1.1 * n_tasks + 2), 4.6)
    ax = fig.add_subplot()
    seeds = 1
    for k, method in enumerate(methods):
        m = summary["methods"][method]
        values = [100 * v for v in m["final_accuracy_per_task"]]
        n = m["average_accuracy"]["n"]
        seeds = max(seeds, n)
        std = [100 * v for v in m.get("final_accuracy_per_task_std", [0.0] * n_tasks)] if n > 1 else None
        ax.bar([j - 0.4 + width * (k + 0.5) for j in range(n_tasks)], values, width, yerr=std, capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"}, label=f"{method} (n={n})" if n > 1 else method)
    ax.set_ylim(0, 105)
    ax.set_xticks(range(n_tasks), [f"T{j}" for j in range(n_tasks)])
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy after the last task (%)")
    grid(ax, axis="y")
    note = f"mean over {seeds} seeds, bars: ± 1 std" if seeds > 1 else "one seed"
    context = f"{summary['benchmark']}, {summary['model']}" if summary.get("model") else summary["benchmark"]
    ax.set_title(f"Final test accuracy per task ({note})\n{context}", fontsize=TITLE_SIZE, pad=28)
    if methods:
        ax.legend(fontsize=SMALL_SIZE, ncol=min(6, len(methods)), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
    return save_png(fig, path)
