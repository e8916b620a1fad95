"""A run's report as PNG plots (``clnp report``): the accuracy matrix, each task's accuracy over time, capacity,
the forecast and the training curves, in the one style of :mod:`clnp.experiments.plotting`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..experiments.plotting import SMALL_SIZE, TITLE_SIZE, grid, new_figure, save_png
from ..experiments.run_files import LOG, PLOTS

PLOT_FILES = PLOTS
"""The plots' file names (:data:`clnp.experiments.run_files.PLOTS`)."""


# -------------------------------------------------------------------------------------------- plots
@dataclass
class Plots:
    """The PNG files a report wrote, and why any plot was left out."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _task_labels(results: dict, n: int) -> list[str]:
    """``T0``, ``T1``, ... with the class group of split benchmarks appended (``T0 (0/1)``)."""
    labels = [f"T{j}" for j in range(n)]
    for info in results.get("tasks") or []:
        j, name = info.get("task"), str(info.get("name", ""))
        if isinstance(j, int) and 0 <= j < n and ":" in name:
            suffix = name.rsplit(":", 1)[1]
            if suffix and len(suffix) <= 9 and "/" in suffix:
                labels[j] = f"T{j} ({suffix})"
    return labels


def title(results: dict) -> str:
    bits = [f"{results['method']} on {results['benchmark']}"]
    if results.get("model"):
        bits.append(str(results["model"]))
    if results.get("unfinished"):
        bits.append(f"unfinished: {results['unfinished']['finished_tasks']} of {results['n_tasks']} tasks")
    if results.get("average_accuracy") is not None:
        bits.append(f"ACC {100 * results['average_accuracy']:.1f} %")
    if results.get("backward_transfer") is not None:
        bits.append(f"BWT {100 * results['backward_transfer']:+.2f}")
    return ", ".join(bits)


def plot_accuracy_matrix(results: dict, path: str | Path) -> Path:
    """Heat map of the accuracy matrix, one annotated cell per (task learned, task evaluated)."""
    import matplotlib
    import numpy as np

    matrix = results["accuracy_matrix"]
    rows, n = len(matrix), len(matrix[0])
    values = np.array([[math.nan if v is None else 100 * v for v in row] for row in matrix], dtype=float)
    finite = values[np.isfinite(values)]
    vmin = 10 * math.floor(float(finite.min()) / 10) if finite.size else 0.0
    vmin = min(vmin, 90.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f2f2f2")

    size = max(4.8, 0.55 * n + 2.6)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=100.0, aspect="equal")
    labels = _task_labels(results, n)
    crowded = sum(len(s) + 2 for s in labels) > 6 * size  # about six characters fit per inch
    ax.set_xticks(range(n), labels, rotation=45 if crowded else 0, ha="right" if crowded else "center")
    ax.set_yticks(range(rows), labels[:rows])
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after learning task")
    ax.set_title(f"Test accuracy (%)\n{title(results)}", fontsize=TITLE_SIZE)
    ax.set_xticks(np.arange(-0.5, n), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    if n <= 20:
        fontsize = 10 if n <= 6 else 8 if n <= 12 else 6
        for i in range(rows):
            for j in range(n):
                v = values[i, j]
                if math.isfinite(v):
                    shade = (v - vmin) / (100.0 - vmin) if vmin < 100 else 1.0
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=fontsize,
                            color="black" if shade > 0.55 else "white")
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("test accuracy (%)")
    return save_png(fig, path)


def plot_task_accuracy(results: dict, path: str | Path) -> Path:
    """One line per task: its test accuracy after it is learned and after each later task."""
    matrix = results["accuracy_matrix"]
    rows, n = len(matrix), len(matrix[0])
    labels = _task_labels(results, n)
    fig = new_figure(7.5 if n > 6 else 6.5, 4.5)
    ax = fig.add_subplot()
    markers = "osD^vP*Xh<>p"
    lowest = 100.0
    # Earlier tasks are drawn wider and underneath, so tasks with identical accuracies stay visible as stripes.
    tasks = min(rows, n)
    for j in range(tasks):
        xs = [i for i in range(j, rows) if matrix[i][j] is not None]
        ys = [100 * matrix[i][j] for i in xs]
        if ys:
            lowest = min(lowest, *ys)
        width = 1.3 + 2.2 * (tasks - 1 - j) / max(1, tasks - 1)
        ax.plot(xs, ys, marker=markers[j % len(markers)], markersize=3 + width, linewidth=width, label=labels[j])
    means = []
    for i in range(rows):
        seen = [v for v in matrix[i][: i + 1] if v is not None]
        means.append(100 * sum(seen) / len(seen) if seen else math.nan)
    ax.plot(range(rows), means, color="black", linestyle="--", linewidth=1.2, label="mean of tasks learned")
    finite_means = [m for m in means if math.isfinite(m)]
    if finite_means:
        lowest = min(lowest, *finite_means)
    ax.set_xticks(range(rows), [f"T{i}" for i in range(rows)])
    ax.set_xlim(-0.3, rows - 0.7)
    ax.set_ylim(max(0.0, 5 * math.floor(lowest / 5) - 2), 101)
    ax.set_xlabel("after learning task")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Each task's test accuracy as later tasks are learned\n{title(results)}", fontsize=TITLE_SIZE)
    grid(ax)
    ax.yaxis.set_major_formatter("{x:.0f}")
    ncol = 1 if n <= 12 else 2
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=SMALL_SIZE, ncol=ncol, frameon=False)
    return save_png(fig, path)


def plot_training(results: dict, log: list[dict], path: str | Path) -> Path:
    """Training loss and validation accuracy per epoch, all tasks in order (from ``log.csv``)."""
    import matplotlib

    fig = new_figure(7.5, 5.2)
    ax_loss, ax_acc = fig.subplots(2, 1, sharex=True)
    colours = matplotlib.colormaps["tab10"]
    styles = {"train": "-", "finetune": "--"}
    tasks = sorted({row["task"] for row in log})
    x = 0
    for t in tasks:
        start = x
        for phase in dict.fromkeys(row["phase"] for row in log if row["task"] == t):
            rows = [row for row in log if row["task"] == t and row["phase"] == phase]
            xs = list(range(x + 1, x + len(rows) + 1))
            # Training: solid with small dots; fine-tuning: dashed, thicker, with small open markers, drawn on top,
            # so that its dashes are not hidden under markers (it is often only one or two epochs long).
            if phase == "train":
                kw = dict(color=colours(t % 10), linestyle="-", marker="o", markersize=2.5, linewidth=1.2, zorder=2)
            else:
                kw = dict(color=colours(t % 10), linestyle=styles.get(phase, ":"), dashes=(2.5, 1.2), marker="D",
                          markersize=2.8, markerfacecolor="white", linewidth=1.8, zorder=3)
            ax_loss.plot(xs, [row["loss"] for row in rows], **kw)
            ax_acc.plot(xs, [100 * row["val_accuracy"] for row in rows], **kw)
            x += len(rows)
        for ax in (ax_loss, ax_acc):
            if start > 0:
                ax.axvline(start + 0.5, color="#999999", linewidth=0.8)
        ax_loss.annotate(f"T{t}", xy=((start + x + 1) / 2, 1.0), xycoords=("data", "axes fraction"),
                         ha="center", va="bottom", fontsize=SMALL_SIZE)
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.set_xlabel("epoch, tasks in the order learned")
    for ax in (ax_loss, ax_acc):
        grid(ax)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="black", linestyle="-", marker="o", markersize=2.5, label=p) if p == "train"
               else Line2D([], [], color="black", dashes=(3, 1.5), marker="D", markersize=3.5, markerfacecolor="white",
                           linewidth=1.8, label=p)
               for p in dict.fromkeys(row["phase"] for row in log)]
    ax_acc.legend(handles=handles, fontsize=SMALL_SIZE, loc="lower right", title="phase", title_fontsize=SMALL_SIZE)
    fig.suptitle(f"Training, epoch by epoch\n{title(results)}", fontsize=TITLE_SIZE)
    return save_png(fig, path)


def write_plots(results: dict, out_dir: str | Path, log: list[dict] | None = None) -> Plots:
    """Write the report's PNG plots into ``out_dir``; plots the results cannot support are skipped.

    ``log`` holds the rows of the run's ``log.csv`` (see :func:`read_log`; ``None``: the run has
    none); with rows, the training curves are plotted too. A symbolic link at a plot's name is refused
    (``RunDirError``, a ``ValueError``) before any plot is written: clnp never writes through a link.
    """
    from ..experiments.links import refuse_link
    from .capacity_plots import plot_capacity, plot_forecast  # (they draw with this module's title)

    out = Path(out_dir)
    for name in PLOT_FILES.values():
        refuse_link(out / name)
    out.mkdir(parents=True, exist_ok=True)
    plots = Plots()
    plots.written.append(plot_accuracy_matrix(results, out / PLOT_FILES["accuracy_matrix"]))
    plots.written.append(plot_task_accuracy(results, out / PLOT_FILES["task_accuracy"]))
    if results.get("capacity"):
        plots.written.append(plot_capacity(results, out / PLOT_FILES["capacity"]))
    else:
        plots.skipped.append(
            f"{PLOT_FILES['capacity']}: skipped, this results.json has no capacity diagnostics "
            f"(method '{results['method']}' does not partition units)")
    if results.get("capacity_forecast"):
        plots.written.append(plot_forecast(results, out / PLOT_FILES["forecast"]))
    if log:
        plots.written.append(plot_training(results, log, out / PLOT_FILES["training"]))
    elif log is not None:
        plots.skipped.append(f"{PLOT_FILES['training']}: skipped, {LOG} holds no complete epoch row")
    return plots


def plots_text(plots: Plots) -> str:
    """The lines ``clnp report`` prints about its plots: each file written, each plot skipped and why."""
    lines = [f"wrote {p}" for p in plots.written]
    lines += [f"note: {s}" for s in plots.skipped]
    return "\n".join(lines)
