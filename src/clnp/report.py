"""Reports of a finished run: text tables and PNG plots, read from a run directory's ``results.json``.

The report never touches a live model, so it works on any run directory, including those of
baselines (which have no capacity diagnostics) and those copied from another machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .experiments.epoch_log import read_log
from .experiments.plotting import SMALL_SIZE, TITLE_SIZE, grid, new_figure, save_png
from .experiments.results import RunResults
from .experiments.run_files import LOG, PLOTS

__all__ = ["PLOT_FILES", "Plots", "capacity_segments", "load_results", "plots_text", "read_log", "report_text",
           "summary", "write_plots"]

PLOT_FILES = PLOTS
"""The plots' file names (:data:`clnp.experiments.run_files.PLOTS`)."""

# Colours of the capacity bars, bottom to top; the legend reads in the same order.
_CAPACITY_SEGMENTS = (
    ("earlier tasks' units, not reused", "#bdbdbd"),
    ("earlier tasks' units, reused", "#f4a259"),
    ("owned by this task", "#3b6ea8"),
    ("free after this task", "#cfe8cf"),
)


# ------------------------------------------------------------------------------------------ loading
def load_results(run_dir: str | Path) -> tuple[dict, Path]:
    """Read and check the results of a run directory (or of its ``results.json``), finished or, from its
    checkpoint, unfinished (the dict then has an ``unfinished`` entry).

    Returns the results and the directory they came from. Raises ``FileNotFoundError`` when the
    directory or file is missing and ``ValueError`` when the file is not a run's results.
    """
    results, directory = RunResults.load(run_dir)
    return results.to_dict(), directory


# --------------------------------------------------------------------------------------------- text
def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _n_tasks(results: dict) -> int:
    return int(results.get("n_tasks") or len(results["accuracy_matrix"][0]))


def accuracy_table(results: dict) -> str:
    """The accuracy matrix as text: one row per task learned, one column per task evaluated.

    A last line gives each task's change from right after it was learned to the end of the run
    (negative = forgotten), so forgetting is visible without reading the diagonal.
    """
    matrix = results["accuracy_matrix"]
    n = len(matrix[0])
    width = max(8, max(len(f"T{j}") for j in range(n)) + 2)
    lines = ["after \\ on " + "".join(f"{'T' + str(j):>{width}}" for j in range(n))]
    for i, row in enumerate(matrix):
        lines.append(f"{'T' + str(i):<11}" + "".join(f"{_pct(v):>{width}}" for v in row))
    last = matrix[-1]
    if len(matrix) > 1 and all(v is not None for v in last[:len(matrix)]):
        cells = []
        for j in range(len(matrix) - 1):
            diff = 100 * (last[j] - matrix[j][j]) if matrix[j][j] is not None else None
            cells.append("" if diff is None else ("0" if diff == 0 else f"{diff:+.1f}"))
        lines.append(f"{'change':<11}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def capacity_table(results: dict) -> str:
    """Per task (rows) and layer (columns): units owned by the task / free after it / old units reused."""
    capacity = results.get("capacity") or []
    if not capacity:
        return "(no capacity diagnostics for this method)"
    n = max(len(row["owned_by_task"]) for row in capacity)
    width = max(18, *(len(str(row["layer"])) + 2 for row in capacity))
    lines = [f"{'task':<6}" + "".join(f"{row['layer']:>{width}}" for row in capacity),
             f"{'':<6}" + "".join(f"{str(row['units']) + ' units':>{width}}" for row in capacity)]
    for t in range(n):
        cells = []
        for row in capacity:
            if t < len(row["owned_by_task"]):
                o, f, r = row["owned_by_task"][t], row["free_after_task"][t], row["reused_by_task"][t]
                g = (row.get("grown_by_task") or [0] * n)[t]
                cells.append(f"{o:>5} /{f:>5} /{r:>5}" + (f" (+{g})" if g else ""))
            else:
                cells.append("")
        lines.append(f"{'T' + str(t):<6}" + "".join(f"{c:>{width + 7 if any_growth(results) else width}}"
                                                    for c in cells))
    if any_growth(results):
        lines.append("(+N: units the layer grew by before the task, --grow)")
    return "\n".join(lines)


def has_plan(results: dict) -> bool:
    return any(b is not None for row in results.get("capacity") or [] for b in row.get("budget_by_task") or [])


def plan_table(results: dict) -> str:
    """Per task (rows) and layer (columns): units kept / the plan's budget, and the validation accuracy (points)
    the search gave up to meet it; ``!`` marks a task over its budget (the margin allowed no fewer units)."""
    capacity = results.get("capacity") or []
    if not has_plan(results):
        return ""
    n = max(len(row["owned_by_task"]) for row in capacity)
    width = max(22, *(len(str(row["layer"])) + 2 for row in capacity))
    lines = [f"{'task':<6}" + "".join(f"{row['layer']:>{width}}" for row in capacity)]
    for t in range(n):
        cells = []
        for row in capacity:
            budget = (row.get("budget_by_task") or [None] * n)[t]
            if budget is None:
                cells.append("greedy")
                continue
            over = (row.get("over_budget_by_task") or [0] * n)[t]
            given = (row.get("given_up_by_task") or [0.0] * n)[t]
            cells.append(f"{row['owned_by_task'][t]:>5} /{budget:>5}{'!' if over else ' '} {given:>5.2f} pts")
        lines.append(f"{'T' + str(t):<6}" + "".join(f"{c:>{width}}" for c in cells))
    if any(any(row.get("over_budget_by_task") or []) for row in capacity):
        lines.append("(!: kept more units than the budget; pruning more would have cost more than the margin)")
    return "\n".join(lines)


def any_growth(results: dict) -> bool:
    return any(any(row.get("grown_by_task") or []) for row in results.get("capacity") or [])


def forecast_text(results: dict) -> str:
    """The capacity forecast after the last task: per layer free units, units per task, tasks that still fit."""
    forecasts = results.get("capacity_forecast") or []
    if not forecasts:
        return ""
    last = forecasts[-1]
    parts = []
    for row in last["layers"]:
        fit = "never fills" if row["tasks_that_fit"] is None else f"{row['tasks_that_fit']} more tasks fit"
        parts.append(f"  {row['layer']}: {row['free']} free, {row['units_per_task']:.1f} units per task so far: {fit}")
    first = f"; {last['fills_first']} fills first" if last.get("fills_first") else ""
    return "\n".join([f"capacity forecast after task {last['after_task']}{first}:", *parts])


def summary(results: dict) -> str:
    """Accuracy matrix, headline metrics and capacity table, ready to print."""
    seed = f", seed {results['seed']}" if "seed" in results else ""
    n = _n_tasks(results)
    model = f", {results['model']}" if results.get("model") else ""
    lines = [f"{results['method']} on {results['benchmark']} ({n} task{'s' if n != 1 else ''}{model}{seed})"]
    unfinished = results.get("unfinished")
    if unfinished:
        k = unfinished["finished_tasks"]
        lines.append(f"UNFINISHED run: {k} of {unfinished['n_tasks']} tasks finished (read from its checkpoint); "
                     "the averages below are over the finished tasks")
    lines += [
        "test accuracy (%), row = after learning task i; 'change' = final minus right after learning:",
        accuracy_table(results),
        "",
    ]
    if results.get("average_accuracy") is not None:
        lines.append(f"average accuracy   {100 * results['average_accuracy']:.2f} %")
    bwt = results.get("backward_transfer")
    if bwt is not None:
        exact = "  (exactly 0)" if bwt == 0.0 and len(results["accuracy_matrix"]) > 1 else ""
        lines.append(f"backward transfer  {100 * bwt:+.2f} points{exact}")
    lines += ["", "units per layer (owned by the task / free after it / old units it reuses):", capacity_table(results)]
    if has_plan(results):
        lines += ["", "capacity plan (units kept / budget, validation points given up for it):", plan_table(results)]
    forecast = forecast_text(results)
    if forecast:
        lines += ["", forecast]
    return "\n".join(lines)


_TASK_COLUMNS = (("val dense", "val_accuracy_dense"), ("val pruned", "val_accuracy_pruned"),
                 ("val final", "val_accuracy_final"))


def task_table(results: dict) -> str:
    """Per task: validation accuracy (%) of the dense network, after pruning and final, and seconds.

    Columns no task reports (baselines do not prune) are left out.
    """
    tasks = results.get("tasks") or []
    if not tasks:
        return ""
    names = [str(info.get("name", "")) for info in tasks]
    width = min(40, max(len("name"), *(len(name) for name in names))) + 2
    columns = [(title, key) for title, key in _TASK_COLUMNS if any(info.get(key) is not None for info in tasks)]
    lines = [f"{'task':<6}{'name':<{width}}" + "".join(f"{title:>12}" for title, _ in columns) + f"{'seconds':>10}"]
    for i, (info, name) in enumerate(zip(tasks, names, strict=True)):
        secs = info.get("wall_seconds")
        lines.append(f"{'T' + str(info.get('task', i)):<6}{name[:width - 2]:<{width}}"
                     + "".join(f"{_pct(info.get(key)):>12}" for _, key in columns)
                     + f"{'' if secs is None else f'{secs:.1f}':>10}")
    return "\n".join(lines)


def report_text(results: dict) -> str:
    """What ``clnp report`` prints: the summary, then the per-task validation accuracies and times."""
    tasks = task_table(results)
    if not tasks:
        return summary(results)
    heading = "per task (validation accuracy %; wall-clock seconds):"
    return f"{summary(results)}\n\n{heading}\n{tasks}"


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


def _title(results: dict) -> str:
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
    ax.set_title(f"Test accuracy (%)\n{_title(results)}", fontsize=TITLE_SIZE)
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
    ax.set_title(f"Each task's test accuracy as later tasks are learned\n{_title(results)}", fontsize=TITLE_SIZE)
    grid(ax)
    ax.yaxis.set_major_formatter("{x:.0f}")
    ncol = 1 if n <= 12 else 2
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=SMALL_SIZE, ncol=ncol, frameon=False)
    return save_png(fig, path)


def capacity_segments(row: dict) -> list[list[int]]:
    """Per task, the layer's units split as in :data:`_CAPACITY_SEGMENTS` (they sum to the layer's units)."""
    segments = []
    grown = row.get("grown_by_task") or [0] * len(row["owned_by_task"])
    for t, (owned, free, reused) in enumerate(zip(row["owned_by_task"], row["free_after_task"],
                                                  row["reused_by_task"], strict=True)):
        width = int(row["units"]) - sum(grown[t + 1:])  # the layer's width at task t (it may have grown since)
        earlier = max(0, width - owned - free)
        reused = min(reused, earlier)
        segments.append([earlier - reused, reused, owned, free])
    return segments


def plot_capacity(results: dict, path: str | Path) -> Path:
    """Stacked bars per layer (one panel each): per task, units free / owned / reused / idle old ones."""
    capacity = results["capacity"]
    n_layers = len(capacity)
    n = max(len(row["owned_by_task"]) for row in capacity)
    ncols = min(n_layers, 3 if n <= 6 else 2)
    nrows = math.ceil(n_layers / ncols)
    panel_w = max(3.6, 0.45 * n + 1.6)
    fig_w = panel_w * ncols
    fig = new_figure(fig_w, 3.4 * nrows + (0.9 if fig_w >= 9 else 1.2))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, row in enumerate(capacity):
        ax = axes[k // ncols][k % ncols]
        segments = capacity_segments(row)
        xs = list(range(len(segments)))
        bottom = [0] * len(segments)
        units = int(row["units"])
        for s, (label, colour) in enumerate(_CAPACITY_SEGMENTS):
            heights = [seg[s] for seg in segments]
            ax.bar(xs, heights, bottom=bottom, color=colour, edgecolor="white", linewidth=0.6, width=0.75,
                   label=label)
            if n <= 12:
                for x, h, b in zip(xs, heights, bottom, strict=True):
                    if h >= 0.07 * units:
                        ax.text(x, b + h / 2, str(h), ha="center", va="center", fontsize=7,
                                color="white" if colour == "#3b6ea8" else "black")
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        budgets = row.get("budget_by_task") or []
        marks = [(x, seg[0] + seg[1] + b) for x, (seg, b) in enumerate(zip(segments, budgets, strict=False))
                 if b is not None]
        if marks:  # the plan's budget: the most the task's own units (the blue bar) were to reach
            ax.hlines([y for _, y in marks], [x - 0.42 for x, _ in marks], [x + 0.42 for x, _ in marks],
                      colors="black", linewidths=1.6, label="budget of the task's units")
        ax.set_title(f"{row['layer']}: {units} units", fontsize=9)
        ax.set_xticks(xs, [f"T{t}" for t in xs])
        ax.set_xlabel("after learning task")
        ax.set_ylim(0, units)
        ax.set_xlim(-0.6, len(xs) - 0.4)
        if k % ncols == 0:
            ax.set_ylabel("units")
    for k in range(n_layers, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="outside lower center", ncol=4 if fig_w >= 9 else 2,
               fontsize=SMALL_SIZE, frameon=False)
    fig.suptitle(f"Units per layer after each task\n{_title(results)}", fontsize=TITLE_SIZE)
    return save_png(fig, path)


def plot_forecast(results: dict, path: str | Path) -> Path:
    """Free units per layer against tasks (solid), extended at the rate so far as a dashed line until the layer
    fills; the layer that fills first is named in the title."""
    forecasts = results["capacity_forecast"]
    fig = new_figure(6.4, 4.0)
    ax = fig.subplots()
    last = forecasts[-1]
    n = len(forecasts)
    horizon = n + max([row["tasks_that_fit"] or 0 for row in last["layers"]] + [1])
    for i, row in enumerate(last["layers"]):
        free = [f["layers"][i]["free"] for f in forecasts]
        line, = ax.plot(range(n), free, marker="o", markersize=3, label=row["layer"])
        rate = row["units_per_task"]
        if rate > 0:
            xs = [n - 1 + k for k in range(horizon - n + 2)]
            ys = [max(0.0, free[-1] - rate * k) for k in range(len(xs))]
            ax.plot(xs, ys, linestyle="--", color=line.get_color())
    ax.set_xlabel("after learning task")
    ax.set_ylabel("free units")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=SMALL_SIZE, frameon=False)
    first = f"; {last['fills_first']} fills first" if last.get("fills_first") else ""
    ax.set_title(f"Free units, and the forecast at the rate so far (dashed){first}\n{_title(results)}", fontsize=9)
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
    fig.suptitle(f"Training, epoch by epoch\n{_title(results)}", fontsize=TITLE_SIZE)
    return save_png(fig, path)


def write_plots(results: dict, out_dir: str | Path, log: list[dict] | None = None) -> Plots:
    """Write the report's PNG plots into ``out_dir``; plots the results cannot support are skipped.

    ``log`` holds the rows of the run's ``log.csv`` (see :func:`read_log`; ``None``: the run has
    none); with rows, the training curves are plotted too. A symbolic link at a plot's name is refused
    (``RunDirError``, a ``ValueError``) before any plot is written: clnp never writes through a link.
    """
    from .experiments.rundir import refuse_link

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
