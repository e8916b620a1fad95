"""A run's stream learned by a learner that is not told how many tasks will come (``expected_tasks=None``: the
library's default, the open-ended plan), with the run's settings otherwise.

    python bench/open_ended.py [module.NAME=value ...] -- --benchmark permuted-digits --tasks 10 --seed 0 [...]

After ``--`` come ``clnp run``'s flags (resolved as ``clnp run`` resolves them); before it, ``module.NAME=value``
sets a module constant as ``bench/with_constants.py`` does. Prints one JSON line: ACC (the mean final test accuracy
over the tasks, %), the free units per layer after the last task, and per task the units kept and the budget.
``clnp run`` always plans for the stream's length; this measures what a library user who leaves it out gets.
"""

from __future__ import annotations

import json
import sys

from task_alone import learner_for, run_setup
from with_constants import apply_constants


def main(argv: list[str]) -> int:
    run_args = apply_constants(argv, __doc__)
    if run_args is None:
        return 2
    cfg, stream = run_setup(run_args)
    learner = learner_for(cfg, stream[0].input_shape, None)
    reports = [learner.learn(task) for task in stream]
    accuracies = [learner.accuracy(t, task.test.x, task.test.y) for t, task in enumerate(stream)]
    net = getattr(learner, "net", None)
    free = net.free_units() if hasattr(net, "free_units") else None  # CLNP's; a baseline has no free units
    print(json.dumps({"benchmark": cfg.benchmark, "model": cfg.model, "seed": cfg.seed, "tasks": len(stream),
                      "acc": round(100 * sum(accuracies) / len(accuracies), 2),
                      "test": [round(100 * a, 2) for a in accuracies], "free": free,
                      "kept": [getattr(r, "owned", None) for r in reports],
                      "budget": [getattr(r, "budget", None) for r in reports]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
