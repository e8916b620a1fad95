"""A run's report as text: the accuracy matrix, headline metrics, capacity, the plan, the forecast, per-task
numbers (what ``clnp report`` prints)."""

from __future__ import annotations

from pathlib import Path

from ..experiments.environment import machine_label, task_machines
from ..experiments.results import RunResults


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
    """Per task (rows) and layer (columns): the units the task began training on, the units it kept / the plan's
    budget, and the validation accuracy (points) the search gave up to meet it; ``!`` marks a task over its budget
    (the margin allowed no fewer units). Last, where the tasks record it, the share of the L1 coefficient the task's
    units trained under, per layer (``l1_pull``)."""
    capacity = results.get("capacity") or []
    if not has_plan(results):
        return ""
    n = max(len(row["owned_by_task"]) for row in capacity)
    width = max(30, *(len(str(row["layer"])) + 2 for row in capacity))
    tasks = results.get("tasks") or []
    pulls = [(tasks[t].get("l1_pull") or []) if t < len(tasks) and isinstance(tasks[t], dict) else []
             for t in range(n)]
    pull_header = "   L1 pull" if any(pulls) else ""
    lines = [f"{'task':<6}" + "".join(f"{row['layer']:>{width}}" for row in capacity) + pull_header]
    for t in range(n):
        cells = []
        for row in capacity:
            budget = (row.get("budget_by_task") or [None] * n)[t]
            if budget is None:
                cells.append("greedy")
                continue
            over = (row.get("over_budget_by_task") or [0] * n)[t]
            given = (row.get("given_up_by_task") or [0.0] * n)[t]
            trained = (row.get("trained_by_task") or [None] * n)[t]
            start = "" if trained is None else f"{trained:>5} ->"
            cells.append(f"{start}{row['owned_by_task'][t]:>5} /{budget:>5}{'!' if over else ' '} {given:>5.2f} pts")
        pull = "   " + " ".join(f"{p:.2f}" for p in pulls[t]) if pull_header and pulls[t] else ""
        lines.append(f"{'T' + str(t):<6}" + "".join(f"{c:>{width}}" for c in cells) + pull)
    if any(any(row.get("over_budget_by_task") or []) for row in capacity):
        lines.append("(!: kept more units than the budget; pruning more would have cost more than the margin)")
    if pull_header:
        lines.append("(L1 pull: the share of --l1 on the task's units, per layer: the layer's free share, relaxed\n"
                     " to as little as a third where every earlier task kept under half its budget)")
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


def environment_line(environment: dict | None) -> str:
    """One line for a report: where a run ran (``""`` for runs written before runs recorded it). Results differ
    between processors at the bit level (:mod:`clnp.experiments.environment`), so figures are compared per machine."""
    machine = machine_label(environment)
    if machine is None or not isinstance(environment, dict):
        return ""
    threads, ranks = environment.get("threads"), environment.get("world_size")
    parts = [machine, f"device {environment.get('device', '?')}"]
    if isinstance(threads, int):
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if isinstance(ranks, int) and ranks > 1:
        parts.append(f"{ranks} ranks")
    parts.append(f"clnp {environment.get('clnp', '?')}")
    return "ran on " + ", ".join(parts)


def machines_line(results: dict) -> str:
    """Where the tasks were learned, if not all on one machine (a run resumed elsewhere), else ``""``."""
    per_task = task_machines(results)
    if len(set(per_task)) <= 1:
        return ""
    spans: list[tuple[str, int, int]] = []
    for i, machine in enumerate(per_task):
        if spans and spans[-1][0] == machine:
            spans[-1] = (machine, spans[-1][1], i)
        else:
            spans.append((machine, i, i))
    where = "; ".join(f"T{a}" + (f"-T{b}" if b > a else "") + f" on {m}" for m, a, b in spans)
    return f"tasks learned on {len(set(per_task))} machines (results differ between processors): {where}"


def summary(results: dict) -> str:
    """Accuracy matrix, headline metrics and capacity table, ready to print."""
    seed = f", seed {results['seed']}" if "seed" in results else ""
    n = _n_tasks(results)
    model = f", {results['model']}" if results.get("model") else ""
    lines = [f"{results['method']} on {results['benchmark']} ({n} task{'s' if n != 1 else ''}{model}{seed})"]
    lines += [line for line in (environment_line(results.get("environment")), machines_line(results)) if line]
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
        lines += ["", "capacity plan (units trained -> kept / budget, validation points the search gave up for it):",
                  plan_table(results)]
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
