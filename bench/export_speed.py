"""Inference time of an exported task vs the full masked network, for tasks using a fraction of the units.

    python bench/export_speed.py [--reps 15] [--batch 256]

For MLP 784-2000-2000 and cnn:32,32,64,64/512 (1x28x28 inputs, 10 classes), task 0 owns a
fraction f of every layer's units (random units; tasks 1.. own the rest, so the full network
computes all units). ``clnp.export(net, 0)`` keeps only task 0's units. Both run a batch in
evaluation mode under ``torch.no_grad``, in turn, ``reps`` times; medians. The table also gives
the exported model's share of the parameters, which the time ratio should follow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import allocator_line, interleaved, machine, own_units, steady_allocator, table  # noqa: E402

import clnp  # noqa: E402
from clnp.exporting import n_parameters  # noqa: E402

NETWORKS = {"mlp": "mlp:2000,2000", "cnn": "cnn:32,32,64,64/512"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--fractions", default="0.1,0.25,0.5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-malloc-env", action="store_true")
    args = parser.parse_args()
    steady_allocator(sys.argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\n{allocator_line()}")
    print(f"batch {args.batch}, evaluation mode, no_grad; {args.reps} interleaved runs each, medians\n")
    rows = []
    for name, spec in NETWORKS.items():
        for f in (float(v) for v in args.fractions.split(",")):
            torch.manual_seed(0)
            net = clnp.build_model(spec, (1, 28, 28))
            own_units(net, [f, 1.0 - f - 0.02])  # task 0: f; task 1: nearly all the rest
            net.eval()
            model = clnp.export(net, 0)
            x = torch.rand(args.batch, 1, 28, 28)
            with torch.no_grad():
                diff = (model(x) - net(x, 0)).abs().max().item()

                med = interleaved({"full": lambda net=net, x=x: net(x, 0), "export": lambda m=model, x=x: m(x)},
                                  reps=args.reps, warmup=2)
            full_params = sum(p.numel() for p in net.blocks.parameters()) + n_parameters(net.heads[0])
            rows.append([name, f, 1e3 * med["full"], 1e3 * med["export"], med["export"] / med["full"],
                         n_parameters(model) / full_params, f"{diff:.1e}"])
    print(table(["net", "units of task 0", "full ms", "export ms", "time export/full", "params export/full",
                 "max |diff|"], rows))


if __name__ == "__main__":
    main()
