"""Reports of a run: text tables and PNG plots, read from a run directory's ``results.json`` (or, for an
unfinished run, from its checkpoint) and ``log.csv``.

The report never touches a live model, so it works on any run directory, including those of
baselines (which have no capacity diagnostics) and those copied from another machine.

| module | idea |
|---|---|
| :mod:`.text` | what ``clnp report`` prints: accuracy matrix, metrics, capacity, plan, forecast, per-task numbers |
| :mod:`.plots` | the plots and ``write_plots`` |
| :mod:`.capacity_plots` | units per layer after each task; the forecast of free units |
"""

from ..experiments.epoch_log import read_log
from .capacity_plots import capacity_segments, plot_capacity, plot_forecast
from .plots import (
    PLOT_FILES,
    Plots,
    plot_accuracy_matrix,
    plot_task_accuracy,
    plot_training,
    plots_text,
    write_plots,
)
from .text import (
    accuracy_table,
    capacity_table,
    forecast_text,
    load_results,
    plan_table,
    report_text,
    summary,
    task_table,
)

__all__ = ["PLOT_FILES", "Plots", "accuracy_table", "capacity_segments", "capacity_table", "forecast_text",
           "load_results", "plan_table", "plot_accuracy_matrix", "plot_capacity", "plot_forecast",
           "plot_task_accuracy", "plot_training", "plots_text", "read_log", "report_text", "summary", "task_table",
           "write_plots"]
