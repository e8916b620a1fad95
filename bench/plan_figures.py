"""The capacity plan's figures of finished CLNP runs: accuracy, what the search gave up, capacity left, search cost.

Usage: ``python bench/plan_figures.py RUN_DIR [RUN_DIR ...]`` (run directories of ``clnp run`` or the per-seed
directories of ``clnp compare``, e.g. ``runs/compare-split-fashion-mnist/clnp/s0``). Per run it prints ACC, BWT, the
largest drop from a task's dense validation accuracy to its final one (the margin spent), the tasks over their
budget, the free units of every layer after the last task, and the share of the tasks' time the pruning search
took (``seconds.search`` over the sum of a task's phases). An unfinished run (stopped by ``CapacityError``, or cut
off) is read from its checkpoint and says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from clnp.experiments.results import RunResults


def figures(run_dir: Path) -> dict:
    results = RunResults.load(run_dir)[0].to_dict()  # a finished run, or what an unfinished one's checkpoint holds
    tasks = results["tasks"]
    drops = [100 * (t["val_accuracy_dense"] - t["val_accuracy_final"]) for t in tasks]
    over = [t["task"] for t in tasks if any(t.get("over_budget") or [])]
    search = sum(t["seconds"].get("search", 0.0) for t in tasks)
    total = sum(sum(t["seconds"].values()) for t in tasks)
    return {
        "run": str(run_dir),
        "acc": 100 * results["average_accuracy"],
        "bwt": 100 * results["backward_transfer"],
        "tasks": len(tasks),
        "stopped": results.get("unfinished"),
        "largest_drop_points": max(drops),
        "tasks_over_budget": over,
        "free_after_last": [row["free_after_task"][-1] for row in results["capacity"]],
        "search_share_percent": 100 * search / total if total else 0.0,
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    for arg in argv:
        f = figures(Path(arg))
        stopped = f["stopped"]
        learned = (f"{f['tasks']} tasks" if not stopped
                   else f"STOPPED after {stopped['finished_tasks']} of {stopped['n_tasks']} tasks")
        print(f"{f['run']}: ACC {f['acc']:.2f} %, BWT {f['bwt']:+.2f}, {learned}; largest dense->final "
              f"validation drop {f['largest_drop_points']:.2f} points; "
              f"over budget: {f['tasks_over_budget'] or 'none'}; free after the last task {f['free_after_last']}; "
              f"search {f['search_share_percent']:.1f} % of task time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
