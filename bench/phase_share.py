"""Where a task's wall time goes: training, activity statistics, threshold search, fine-tuning.

    python bench/phase_share.py [--tasks 2] [--train 6000] [--model mlp:2000,2000] [--epochs 3]

Learns ``tasks`` tasks of a permuted-Fashion-MNIST slice with ``CLNP.learn`` and prints, per task,
each phase's share of the task's wall time (``TaskReport.seconds`` against the time ``learn``
took). Training and fine-tuning include the per-epoch validation pass; its share is shown
separately (one validation pass timed after the task, times the number of epochs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import allocator_line, machine, permuted_fashion_slice, steady_allocator, table  # noqa: E402

import clnp  # noqa: E402
from clnp.core.activity import accuracy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--train", type=int, default=6000, help="training images per task (before validation)")
    parser.add_argument("--model", default="mlp:2000,2000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-malloc-env", action="store_true")
    args = parser.parse_args()
    steady_allocator(sys.argv)
    torch.set_num_threads(args.threads)
    tasks, described = permuted_fashion_slice(args.tasks, args.train)
    print(f"machine: {machine()}\n{allocator_line()}")
    cfg = clnp.CLNPConfig(epochs=args.epochs, finetune_epochs=args.finetune_epochs, batch_size=256,
                          optimizer="adam", lr=1e-3, l1=1e-3, margin=1.0)
    print(f"data: {described}; model {args.model}; epochs {cfg.epochs}, fine-tune {cfg.finetune_epochs}, "
          f"batch {cfg.batch_size}, Adam lr {cfg.lr}, L1 {cfg.l1}, margin {cfg.margin}\n")
    torch.manual_seed(0)
    net = clnp.build_model(args.model, tasks[0].train.x.shape[1:])
    learner = clnp.CLNP(net, cfg)
    rows = []
    for t in range(args.tasks):
        task = tasks[t]
        t0 = time.perf_counter()
        report = learner.learn(task)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        accuracy(net, t, task.val.x, task.val.y, batch_size=cfg.eval_batch_size)
        val_pass = time.perf_counter() - t1
        s = report.seconds
        val = val_pass * (cfg.epochs + cfg.finetune_epochs)
        other = wall - sum(s.values())
        rows.append([t, wall, s["train"] / wall, s["activity"] / wall, s["search"] / wall, s["finetune"] / wall,
                     other / wall, val / wall, sum(report.owned)])
    print(table(["task", "wall s", "train", "activity", "search", "fine-tune", "other", "(validation in train+ft)",
                 "units kept"], rows))


if __name__ == "__main__":
    main()
