"""Human-readable reports of a run's results (read from ``results.json``, never from a live model)."""

from __future__ import annotations


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def accuracy_table(results: dict) -> str:
    """The accuracy matrix as text: one row per task learned, one column per task evaluated."""
    matrix = results["accuracy_matrix"]
    n = len(matrix)
    header = "after \\ on " + "".join(f"{'T' + str(j):>8}" for j in range(n))
    lines = [header]
    for i, row in enumerate(matrix):
        lines.append(f"{'T' + str(i):<11}" + "".join(f"{_pct(v):>8}" for v in row))
    return "\n".join(lines)


def capacity_table(results: dict) -> str:
    """Per layer and task: units owned, free units left after the task, old units reused."""
    capacity = results.get("capacity") or []
    if not capacity:
        return "(no capacity diagnostics for this method)"
    n = results["n_tasks"]
    lines = [f"{'layer':<24}{'units':>6}  " + "".join(f"{'T' + str(t) + ' own/free/reuse':>22}" for t in range(n))]
    for row in capacity:
        cells = "".join(
            f"{f'{o}/{f}/{r}':>22}"
            for o, f, r in zip(row["owned_by_task"], row["free_after_task"], row["reused_by_task"], strict=True)
        )
        lines.append(f"{row['layer']:<24}{row['units']:>6}  " + cells)
    return "\n".join(lines)


def summary(results: dict) -> str:
    """Accuracy matrix, headline metrics and capacity table, ready to print."""
    head = (
        f"{results['method']} on {results['benchmark']} ({results['n_tasks']} tasks, seed {results['seed']})\n"
        f"test accuracy (%), row = after learning task i:\n{accuracy_table(results)}\n\n"
        f"average accuracy   {100 * results['average_accuracy']:.2f} %\n"
        f"backward transfer  {100 * results['backward_transfer']:+.2f} points\n"
    )
    return head + "\nunits per layer (owned by the task / free after it / old units it reuses):\n" + capacity_table(
        results)
