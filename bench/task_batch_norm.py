"""Batch norm across tasks on a traced residual network: the owners' frozen statistics for reused units (clnp's
default) against per-task statistics (EideticNet's choice: each task normalises the old units it reads with
statistics of its own data, frozen when it is learned).

    python bench/task_batch_norm.py [--benchmark split-fashion-mnist] [--model resnet18:8] [--epochs 2]
                                    [--finetune-epochs 1] [--seeds 0] [--threads 1]

CLNP at its defaults otherwise (batch size from the benchmark). Prints per variant and seed the average accuracy,
each task's final test accuracy and the old units each task reuses; both variants keep every earlier task exact
(backward transfer 0, checked here).
"""

from __future__ import annotations

import argparse
import time

import torch

import clnp
from clnp.core.network import CLNPNet
from clnp.data.benchmarks import BENCHMARKS, get_benchmark
from clnp.models import build


def run(benchmark: str, model: str, per_task: bool, seed: int, epochs: int, finetune_epochs: int) -> dict:
    tasks = get_benchmark(benchmark, seed=seed)
    spec = BENCHMARKS[benchmark]
    torch.manual_seed(seed)
    net = CLNPNet(build(model, tasks[0].input_shape), tasks[0].input_shape, task_batch_norm=per_task)
    config = clnp.CLNPConfig(epochs=epochs, finetune_epochs=finetune_epochs, seed=seed,
                             batch_size=spec.defaults.get("batch_size", 128), expected_tasks=len(tasks))
    learner = clnp.CLNP(net, config)
    started = time.perf_counter()
    right_after = []
    for t, task in enumerate(tasks):
        learner.learn(task)
        right_after.append(learner.accuracy(t, task.test.x, task.test.y))
    final = [learner.accuracy(t, task.test.x, task.test.y) for t, task in enumerate(tasks)]
    assert final == right_after, "an earlier task changed"
    return {"acc": 100 * sum(final) / len(final), "final": [round(100 * a, 2) for a in final],
            "reused": [sum(r.reused) for r in learner.reports], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="split-fashion-mnist")
    parser.add_argument("--model", default="resnet18:8")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.benchmark}, {args.model}, {args.epochs} epochs + {args.finetune_epochs} fine-tuning, CLNP defaults")
    for seed in (int(s) for s in args.seeds.split(",")):
        for per_task in (False, True):
            r = run(args.benchmark, args.model, per_task, seed, args.epochs, args.finetune_epochs)
            name = "per-task statistics" if per_task else "owners' statistics "
            print(f"seed {seed} {name}: ACC {r['acc']:.2f} %  per task {r['final']}  old units reused {r['reused']}"
                  f"  ({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
