"""One L1 coefficient for every width, data set and batch size? CLNP at several per-unit coefficients.

    python bench/l1_sweep.py --l1 1e-4,3e-4,1e-3 --case digits    # split-digits, mlp:256,256, defaults
    python bench/l1_sweep.py --l1 1e-4,1e-3 --case pfm-1000  # permuted-fashion-mnist: 2 tasks, 2x1000, 5 ep, batch 256
    python bench/l1_sweep.py --l1 1e-4,1e-3 --case pfm-100   # permuted-fashion-mnist: 1 task, 2x100, 2 ep, batch 10
    python bench/l1_sweep.py --l1 3e-3/1e-2 --case pfm-1000 --tasks 10 --finetune-epochs 5 --margin 0.5
    python bench/l1_sweep.py --l1 2e-3/5e-3 --case pfm-1000 --tasks 10 --finetune-epochs 5 --finetune-lr 3e-4

A coefficient written ``a/b`` is one per layer (``a`` for the first hidden layer, ``b`` for the second).
``--tasks``, ``--finetune-epochs`` and ``--finetune-lr`` override the case's.

For each coefficient it prints, per task: validation accuracy of the dense network, test accuracy
at the end, and the units the task kept per layer; then the average accuracy and the free units
left. The penalty is a sum over units of their mean activity (``clnp.core.sparsity``), so the
coefficient is the pull every unit feels, at any width and fill.
"""

from __future__ import annotations

import argparse
import time

import torch

from clnp.experiments.config import RunConfig
from clnp.experiments.runner import run

CASES = {
    "digits": dict(benchmark="split-digits"),
    "pfm-1000": dict(benchmark="permuted-fashion-mnist", tasks=2, model="mlp:1000,1000", epochs=5, batch_size=256,
                     lr=1e-3, finetune_epochs=3),
    "pfm-100": dict(benchmark="permuted-fashion-mnist", tasks=1, model="mlp:100,100", epochs=2, batch_size=10,
                    finetune_epochs=1),
    "sfm-1000": dict(benchmark="split-fashion-mnist", model="mlp:1000,1000", epochs=5, batch_size=256, lr=1e-3,
                     finetune_epochs=3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--l1", default="1e-4,3e-4,1e-3")
    parser.add_argument("--case", choices=sorted(CASES), default="digits")
    parser.add_argument("--margin", type=float, default=None)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument("--finetune-lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="a CLNP option")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    case = dict(CASES[args.case])
    for key in ("tasks", "finetune_epochs", "finetune_lr"):
        if getattr(args, key) is not None:
            case[key] = getattr(args, key)
    for spec in args.l1.split(","):
        values = tuple(float(v) for v in spec.split("/"))
        l1 = values[0] if len(values) == 1 else list(values)
        started = time.perf_counter()
        extra = dict(item.split("=", 1) for item in args.option)
        cfg = RunConfig(**case, l1=l1, margin=args.margin, seed=args.seed, progress=False, extra=extra)
        results = run(cfg)
        final = results["accuracy_matrix"][-1]
        used = results["config"]
        print(f"case {args.case} l1 {spec} margin {used['margin']} "
              f"finetune {used['finetune_epochs']} epochs, lr {used.get('finetune_lr') or 'as lr'} "
              f"{extra or ''}: "
              f"ACC {100 * results['average_accuracy']:.2f} BWT {results['backward_transfer']:+.4f}"
              f"  ({time.perf_counter() - started:.0f} s)")
        for t, info in enumerate(results["tasks"]):
            print(f"  T{t}: val dense {100 * info['val_accuracy_dense']:.1f}"
                  f"  pruned {100 * info['val_accuracy_pruned']:.1f}  final test {100 * final[t]:.1f}"
                  f"  kept {info['owned']}  reused {info['reused']}")
        print(f"  free after: {[row['free_after_task'][-1] for row in results['capacity']]} of "
              f"{[row['units'] for row in results['capacity']]}", flush=True)


if __name__ == "__main__":
    main()
