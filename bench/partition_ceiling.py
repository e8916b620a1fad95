"""The ceiling of a unit partition: what a stream scores when each task trains its own whole units and nothing else.

    python bench/partition_ceiling.py --benchmark permuted-fashion-mnist --tasks 10 --widths 100,100 \\
        --epochs 5 --batch-size 10 --lr 1e-3 --seed 0 --variants partition,alone,independent

CLNP gives each task whole units (a share of every hidden layer), freezes them, and lets later tasks read them;
connections from newer units into older ones are cut. This script trains that structure with an *oracle*
partition and none of CLNP's machinery: task ``t`` trains exactly its share of fresh units per layer from the start
(no L1 penalty, no annealing, no pruning search, no margin spent), with plain cross-entropy and Adam, on the same
tasks (``clnp.data.benchmarks.get_benchmark``: same splits, same permutations). What it scores bounds, from above in
all but the old units' quality, what CLNP's search and penalty can reach at that share. Variants:

* ``partition``: each task trains ``share`` fresh units per layer (default: an equal share of the width, no reserve)
  and reads every older unit, as CLNP's tasks do; its head reads every live unit of the last layer.
* ``alone``: the same units, without reading older ones (a network of ``share`` units per layer per task).
* ``independent``: one fresh network of the full width per task (the ceiling the issue compares with).

Test accuracy per task right after it is trained: the partition forgets nothing (older rows are frozen and newer
units never feed older ones), so that is its final accuracy. Figures in bench/RESULTS.md ("The capacity plan").
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from clnp.data.benchmarks import get_benchmark

NEVER = 1 << 30
"""The order of a free unit: after every task."""


def _fresh_rows(weight: Tensor, bias: Tensor, rows: Tensor, generator: torch.Generator) -> None:
    """PyTorch's ``nn.Linear`` initialisation for the given output rows (bound ``1/sqrt(fan_in)`` on weights and
    biases alike, as kaiming-uniform with ``a=sqrt(5)`` gives)."""
    bound = 1.0 / math.sqrt(weight.shape[1])
    with torch.no_grad():
        weight[rows] = (torch.rand(len(rows), weight.shape[1], generator=generator) * 2 - 1) * bound
        bias[rows] = (torch.rand(len(rows), generator=generator) * 2 - 1) * bound


def run_stream(tasks, widths: list[int], shares: list[int], epochs: int, batch_size: int, lr: float, seed: int,
               reuse: bool, log=print) -> list[float]:
    """Train the tasks in turn on a unit partition; return each task's test accuracy (%)."""
    g = torch.Generator().manual_seed(seed)
    n_in = int(math.prod(tasks[0].input_shape))
    dims = [n_in, *widths]
    weights = [torch.zeros(dims[i + 1], dims[i], requires_grad=True) for i in range(len(widths))]
    biases = [torch.zeros(w, requires_grad=True) for w in widths]
    order = [torch.full((w,), NEVER) for w in widths]
    accs = []
    for t, task in enumerate(tasks):
        t0 = time.perf_counter()
        new = []
        for i in range(len(widths)):
            rows = torch.nonzero(order[i] == NEVER).flatten()[:shares[i]]
            if len(rows) == 0:
                raise ValueError(f"layer {i} is full at task {t}")
            order[i][rows] = t
            _fresh_rows(weights[i], biases[i], rows, g)
            new.append(order[i] == t)
        masks = []
        for i in range(len(widths)):
            out = order[i]
            live_out = (out <= t).float()
            if i == 0:
                allowed = live_out[:, None].expand(-1, n_in)
            elif reuse:
                allowed = ((order[i - 1][None, :] <= out[:, None]) & (out[:, None] <= t)).float()
            else:
                allowed = ((order[i - 1][None, :] == out[:, None]) & (out[:, None] <= t)).float()
            masks.append((allowed, live_out))
        head = torch.nn.Linear(widths[-1], task.n_classes)
        _fresh_rows(head.weight, head.bias, torch.arange(task.n_classes), g)  # not the global generator
        head_in = ((order[-1] <= t) if reuse else (order[-1] == t)).float()
        grads = [(w, m.float()[:, None]) for w, m in zip(weights, new, strict=True)]
        grads += [(b, m.float()) for b, m in zip(biases, new, strict=True)]
        params = [*weights, *biases, *head.parameters()]
        opt = torch.optim.Adam(params, lr=lr)

        def forward(x: Tensor, masks=masks, head=head, head_in=head_in) -> Tensor:
            h = x.reshape(x.shape[0], -1)
            for w, b, (allowed, live) in zip(weights, biases, masks, strict=True):
                h = F.relu(F.linear(h, w * allowed, b * live))
            return head(h * head_in)

        x, y = task.train.x, task.train.y
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g)
            for s in range(0, len(y), batch_size):
                idx = perm[s:s + batch_size]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(forward(x[idx]), y[idx]).backward()
                for p, m in grads:  # only the task's own units train; older rows stay as they were
                    assert p.grad is not None
                    p.grad.mul_(m)
                opt.step()
        with torch.no_grad():
            predicted = torch.cat([forward(task.test.x[s:s + 2048]).argmax(1)
                                   for s in range(0, len(task.test.y), 2048)])
        accs.append(100.0 * float((predicted == task.test.y).float().mean()))
        log(f"  task {t}: {accs[-1]:.2f} % test ({int(sum(int(n.sum()) for n in new))} own units, "
            f"{time.perf_counter() - t0:.0f} s)")
    return accs


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--benchmark", default="permuted-fashion-mnist")
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--widths", default="100,100", help="hidden widths, comma-separated")
    p.add_argument("--shares", default=None, help="units per task per layer (default: width // tasks)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="partition,alone,independent")
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    tasks = get_benchmark(a.benchmark, a.tasks, seed=a.seed)
    tasks = [tasks[i] for i in range(len(tasks))]
    widths = [int(w) for w in a.widths.split(",")]
    shares = [w // len(tasks) for w in widths] if a.shares is None else [int(s) for s in a.shares.split(",")]
    print(f"{a.benchmark}, {len(tasks)} tasks, widths {widths}, {a.epochs} epochs, batch {a.batch_size}, "
          f"Adam {a.lr}, seed {a.seed}, torch threads {torch.get_num_threads()}")
    for variant in a.variants.split(","):
        print(f"{variant}: " + {"partition": f"{shares} own units a task, reading every older unit",
                                "alone": f"{shares} own units a task, reading none of the older ones",
                                "independent": f"one network of {widths} per task"}[variant])
        if variant == "independent":
            accs = [run_stream([task], widths, widths, a.epochs, a.batch_size, a.lr, a.seed * 1000 + k, True,
                               log=lambda s, k=k: print(s.replace("task 0", f"task {k}")))[0]
                    for k, task in enumerate(tasks)]
        else:
            accs = run_stream(tasks, widths, shares, a.epochs, a.batch_size, a.lr, a.seed, variant == "partition")
        print(f"{variant}: ACC {statistics.mean(accs):.2f} % (tasks: {', '.join(f'{v:.1f}' for v in accs)})",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
