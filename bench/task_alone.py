"""One task of a stream learned by CLNP alone, on a fresh network, with a run's settings: a quick screen of CLNP's
one-task recipe (training under the L1 pull, annealing, the search, fine-tuning) on the task that decides a stream.

    python bench/task_alone.py --task 1 [module.NAME=value ...] -- --benchmark split-fashion-mnist \\
        --model mlp:1000,1000 --epochs 5 --batch-size 256 --lr 1e-3 --seed 0 [--l1 1e-3 ...]

After ``--`` come ``clnp run``'s flags (the run's settings, resolved as ``clnp run`` resolves them); before it,
``module.NAME=value`` sets a module constant as ``bench/with_constants.py`` does. The network is planned for the tasks
from ``--task`` on (so its budget is the one a stream's first task would have for that many tasks), and the task is
learned as the stream's first; prints its test accuracy, units kept and validation accuracy dense and final. A task
learned in a stream also reads older tasks' units, so its figure there differs (bench/RESULTS.md, "The capacity
plan", thirteenth session, where this screened split-fashion-mnist's task 1).
"""

from __future__ import annotations

import dataclasses
import sys

import torch
from with_constants import set_constant, usage

from clnp.cli import build_parser
from clnp.data.benchmarks import get_benchmark
from clnp.data.tasks import Task
from clnp.engine.learner import Learner
from clnp.experiments.config import RunConfig, from_namespace
from clnp.methods import build_method


def run_setup(run_args: list[str]) -> tuple[RunConfig, list[Task]]:
    """``clnp run``'s settings from its flags, resolved as ``clnp run`` resolves them, and the run's stream; torch
    seeded as the runner seeds it."""
    cfg, _ = from_namespace(build_parser().parse_args(["run", *run_args, "--no-progress"]))
    cfg = cfg.resolved()
    torch.manual_seed(cfg.seed)
    return cfg, get_benchmark(cfg.benchmark, n_tasks=cfg.tasks, seed=cfg.seed, data_dir=cfg.data_dir)


def learner_for(cfg: RunConfig, input_shape: tuple[int, ...], expected_tasks: int | None) -> Learner:
    """The run's learner, as the runner builds it, on the CPU without progress bars, planned for ``expected_tasks``
    (None: open-ended)."""
    train = dataclasses.replace(cfg.train_config(), progress=False, device="cpu", expected_tasks=expected_tasks)
    return build_method(cfg.method, cfg.model, input_shape, train, cfg.method_options())


def main(argv: list[str]) -> int:
    if "--" not in argv or "--task" not in argv[:argv.index("--")]:
        print(usage(__doc__), file=sys.stderr)
        return 2
    split = argv.index("--")
    own, run_args = argv[:split], argv[split + 1:]
    at = own.index("--task")
    task = int(own[at + 1])
    for assignment in own[:at] + own[at + 2:]:
        set_constant(assignment)
    cfg, stream = run_setup(run_args)
    if not 0 <= task < len(stream):
        print(f"--task must name one of the stream's {len(stream)} tasks (0..{len(stream) - 1}), got {task}",
              file=sys.stderr)
        return 2
    learner = learner_for(cfg, stream[task].input_shape, len(stream) - task)
    report = learner.learn(stream[task])
    test = stream[task].test
    print(f"{stream[task].name} alone, seed {cfg.seed}: test {100 * learner.accuracy(0, test.x, test.y):.2f} %, "
          f"units kept {report.owned}, validation {100 * report.val_accuracy_dense:.2f} % dense, "
          f"{100 * report.val_accuracy_final:.2f} % final")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
