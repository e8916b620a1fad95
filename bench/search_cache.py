"""Time of CLNP's pruning search with and without :class:`clnp.core.activity.SearchCache`, on the same task.

Usage: ``OMP_NUM_THREADS=1 python bench/search_cache.py [--benchmark permuted-fashion-mnist] [--model mlp:1000,1000]
[--epochs 1] [--tasks 2] [--repeats 2]``. Learns the benchmark's first ``--tasks`` tasks (CLNP's defaults otherwise)
once with the cache and once with a cache that keeps nothing (every evaluation a full pass), in turn, ``--repeats``
times, and prints the search's seconds per task and the ratio. The decisions are identical (asserted), so the two
searches do the same evaluations.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import clnp
import clnp.core.activity as activity
from clnp.data.benchmarks import get_benchmark


def search_seconds(tasks, model: str, epochs: int, cached: bool) -> tuple[list[float], list]:
    defaults = activity.SearchCache.__init__.__defaults__
    if not cached:
        activity.SearchCache.__init__.__defaults__ = (defaults[0], 0)
    try:
        torch.manual_seed(0)
        net = clnp.build_model(model, tasks[0].input_shape)
        learner = clnp.CLNP(net, clnp.CLNPConfig(epochs=epochs, finetune_epochs=0, batch_size=256,
                                                 expected_tasks=len(tasks)))
        reports = [learner.learn(task) for task in tasks]
    finally:
        activity.SearchCache.__init__.__defaults__ = defaults
    return [r.seconds["search"] for r in reports], [(r.owned, r.reused, r.val_accuracy_pruned) for r in reports]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="permuted-fashion-mnist")
    parser.add_argument("--model", default="mlp:1000,1000")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tasks = list(get_benchmark(args.benchmark, n_tasks=None, seed=0))[:args.tasks]
    with_cache, without = [], []
    for _ in range(args.repeats):
        a, decided_a = search_seconds(tasks, args.model, args.epochs, cached=True)
        b, decided_b = search_seconds(tasks, args.model, args.epochs, cached=False)
        assert decided_a == decided_b, "the cache changed a decision"
        with_cache.append(sum(a))
        without.append(sum(b))
    cached, full = statistics.median(with_cache), statistics.median(without)
    print(f"{args.benchmark} {args.model}, {args.tasks} tasks: search {cached:.1f} s with the cache, {full:.1f} s "
          f"without (medians of {args.repeats}); ratio {full / cached:.2f}x")


if __name__ == "__main__":
    main()
