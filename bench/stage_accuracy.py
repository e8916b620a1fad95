"""Where a CLNP task's test accuracy goes: after training, after the pruning search, after fine-tuning.

    python bench/stage_accuracy.py run --benchmark split-digits --seed 0 --out runs/stages

Runs the ``clnp`` command line unchanged and prints, for every task, one line per stage of its cycle:

* ``dense``: the trained network (the units annealing kept), before the search;
* ``pruned``: the units the search kept, and the old features it cut;
* ``finetuned``: after fine-tuning (before the check that may restore the pruned network).

Each line gives the test accuracy and the mean true-class probability on the test, validation and (first 1000)
training inputs, and the live units per layer (the task's and the older tasks' it reads). The test split is read for
this report only: nothing the run decides sees it. The stages are observed by wrapping three steps of the cycle in
this process (``run``, or ``compare --jobs 1``); the run's results are those of the same command without the wrapper
(``tests/test_bench_stage_accuracy.py``). Used for the split-digits diagnosis in bench/RESULTS.md ("The capacity
plan", eleventh session).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import Tensor

import clnp.methods.clnp.cycle as cycle
from clnp.cli.entry import main as clnp_main
from clnp.core.activity import predict_with_loss

TRAIN_INPUTS = 1000
"""How many of the training inputs the report reads."""


def scores(learner, task_id: int, x: Tensor, y: Tensor, keep: Sequence[Tensor] | None) -> tuple[float, float]:
    """Accuracy and mean true-class probability of the task's network (units ``keep``) on ``x``, in percent."""
    predicted, _, probability = predict_with_loss(learner.net, task_id, x, y, keep)
    return 100 * float((predicted == y).float().mean()), 100 * probability


def stage_line(learner, task, task_id: int, keep: Sequence[Tensor] | None, stage: str) -> str:
    """One stage of one task: test accuracy, mean true-class probability on test / validation / training inputs."""
    test_accuracy, test = scores(learner, task_id, task.test.x, task.test.y, keep)
    _, val = scores(learner, task_id, task.val.x, task.val.y, keep)
    index = torch.arange(min(TRAIN_INPUTS, len(task.train)))
    _, train = scores(learner, task_id, task.train.take(index), task.train.y[index], keep)
    live = "" if keep is None else " | live units " + "/".join(str(int(k.sum())) for k in keep)
    return (f"stage task {task_id} {stage:9s} test {test_accuracy:6.2f} % | true-class probability: test {test:6.2f}, "
            f"validation {val:6.2f}, training {train:6.2f}{live}")


def install() -> None:
    """Wrap the cycle's trained-network check, search and fine-tuning so that each prints its stage line."""
    seen: dict = {}
    check, choose, train = cycle.CycleMixin._check_trained, cycle.choose_pruning, cycle.CycleMixin._train

    def checked(self, task, task_id, keep=None):
        check(self, task, task_id, keep)
        seen.update(learner=self, task=task)
        print(stage_line(self, task, task_id, keep, "dense"), flush=True)

    def chosen(net, task_id, *args, **kwargs):
        decision = choose(net, task_id, *args, **kwargs)
        print(stage_line(seen["learner"], seen["task"], task_id, decision.keep, "pruned"), flush=True)
        return decision

    def trained(self, task, task_id, epochs, phase, generator, *args, **kwargs):
        result = train(self, task, task_id, epochs, phase, generator, *args, **kwargs)
        if phase == "finetune":
            print(stage_line(self, task, task_id, kwargs.get("keep"), "finetuned"), flush=True)
        return result

    cycle.CycleMixin._check_trained = checked
    cycle.choose_pruning = chosen
    cycle.CycleMixin._train = trained


def main(argv: list[str]) -> int:
    install()
    return clnp_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
