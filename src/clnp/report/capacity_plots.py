"""The plots of a run's capacity: units per layer after each task, and the forecast of free units."""

from __future__ import annotations

import math
from pathlib import Path

from ..experiments.plotting import SMALL_SIZE, TITLE_SIZE, new_figure, save_png
from .plots import title

# Colours of the capacity bars, bottom to top; the legend reads in the same order.
_CAPACITY_SEGMENTS = (
    ("earlier tasks' units, not reused", "#bdbdbd"),
    ("earlier tasks' units, reused", "#f4a259"),
    ("owned by this task", "#3b6ea8"),
    ("free after this task", "#cfe8cf"),
)



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
    fig.suptitle(f"Units per layer after each task\n{title(results)}", fontsize=TITLE_SIZE)
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
    ax.set_title(f"Free units, and the forecast at the rate so far (dashed){first}\n{title(results)}", fontsize=9)
    return save_png(fig, path)
