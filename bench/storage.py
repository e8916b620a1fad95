"""Bytes to keep T tasks: one CLNP network vs T independent networks (and vs T exported models).

    python bench/storage.py [--tasks 10] [--model mlp:256,256] [--epochs 30]

Learns ``tasks`` permuted-digits tasks with CLNP and, after each task T, serialises (safetensors,
the checkpoint format) the CLNP network's state (weights, owner vectors, T heads), T independent
dense networks of the same shape (trunk plus one head each), and the T compact models
``clnp.export`` makes. ``in memory`` adds CLNP's non-persistent mask buffers (the frozen-row
snapshot), which are rebuilt on load and never written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine, plain_twin, table  # noqa: E402

import clnp  # noqa: E402


def nbytes(module: torch.nn.Module) -> int:
    return len(st_save({k: v.contiguous() for k, v in module.state_dict().items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--model", default="mlp:256,256")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    tasks = clnp.permuted_digits(args.tasks, seed=0)
    cfg = clnp.CLNPConfig(epochs=args.epochs, finetune_epochs=5, batch_size=32, l1=1e-2, margin=2.0)
    print(f"data: permuted-digits, {args.tasks} tasks; model {args.model}; epochs {cfg.epochs}, L1 {cfg.l1}, "
          f"margin {cfg.margin}\n")
    torch.manual_seed(0)
    net = clnp.build_model(args.model, tasks[0].train.x.shape[1:])
    learner = clnp.CLNP(net, cfg)
    one = nbytes(plain_twin(net, tasks[0].n_classes))
    exported = 0
    rows = []
    for t, task in enumerate(tasks):
        learner.learn(task)
        net.eval()
        exported += nbytes(clnp.export(net, t))
        clnp_bytes = nbytes(net)
        in_memory = sum(b.numel() * b.element_size() for b in net.buffers()) + sum(
            p.numel() * p.element_size() for p in net.parameters())
        n = t + 1
        rows.append([n, clnp_bytes, in_memory, n * one, exported, clnp_bytes / (n * one), exported / (n * one),
                     sum(net.free_units())])
    print(table(["T", "CLNP bytes", "CLNP in memory", "T independent", "T exported", "CLNP/independent",
                 "exported/independent", "free units left"], rows))


if __name__ == "__main__":
    main()
