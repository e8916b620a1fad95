"""Time and memory per task as the number of tasks grows from 1 to 20: they must stay flat.

    python bench/scaling.py [--tasks 20] [--train 2000] [--model mlp:2000,2000] [--epochs 2]

Learns ``tasks`` tasks of a permuted-Fashion-MNIST slice on one network and prints, per task, the
wall time of ``CLNP.learn``, its training time per step, the process's resident memory after the
task and the bytes of the network's tensors (parameters and buffers). Masks cost the same whatever
the number of earlier tasks (one owner vector per layer, a frozen-row snapshot no larger than
the weights); only the heads grow, by one small layer per task. The last lines give task 20
(the last) over task 2 for time per step, task time and memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import allocator_line, machine, permuted_fashion_slice, steady_allocator, table  # noqa: E402

import clnp  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--train", type=int, default=2000, help="training images per task (before validation)")
    parser.add_argument("--model", default="mlp:2000,2000")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-malloc-env", action="store_true")
    args = parser.parse_args()
    steady_allocator(sys.argv)
    torch.set_num_threads(args.threads)
    tasks, described = permuted_fashion_slice(args.tasks, args.train)
    cfg = clnp.CLNPConfig(epochs=args.epochs, finetune_epochs=1, batch_size=256, optimizer="adam", lr=1e-3,
                          l1=1e-3, margin=2.0)
    print(f"machine: {machine()}\n{allocator_line()}")
    print(f"data: {described}; model {args.model}; epochs {cfg.epochs}, fine-tune {cfg.finetune_epochs}, "
          f"batch {cfg.batch_size}, Adam lr {cfg.lr}, L1 {cfg.l1}, margin {cfg.margin}\n")
    torch.manual_seed(0)
    net = clnp.build_model(args.model, tasks[0].train.x.shape[1:])
    learner = clnp.CLNP(net, cfg)
    rows = []
    for t in range(args.tasks):
        task = tasks[t]
        t0 = time.perf_counter()
        try:
            report = learner.learn(task)
        except clnp.CapacityError as exc:
            print(f"stopped at task {t}: {exc}")
            break
        wall = time.perf_counter() - t0
        steps = cfg.epochs * -(-len(task.train) // cfg.batch_size)
        tensor_mb = sum(b.numel() * b.element_size() for b in (*net.parameters(), *net.buffers())) / 2**20
        rows.append([t + 1, wall, 1e3 * report.seconds["train"] / steps, report.seconds["search"], rss_mb(),
                     tensor_mb, sum(net.free_units()), report.val_accuracy_final])
        print(f"task {t + 1}: {wall:.1f} s", file=sys.stderr, flush=True)
    print(table(["task", "task s", "train ms/step", "search s", "RSS MB", "tensors MB", "free units", "val acc"],
                rows))
    if len(rows) >= 2:
        last, second = rows[-1], rows[1]
        print(f"\ntask {last[0]} / task 2: time per step {last[2] / second[2]:.2f}, "
              f"task time {last[1] / second[1]:.2f}, RSS {last[4] / second[4]:.2f}, tensors {last[5] / second[5]:.2f}")


if __name__ == "__main__":
    main()
