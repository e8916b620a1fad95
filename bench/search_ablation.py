"""Ablations of CLNP's pruning search: without the reuse pruning, or with another confidence slack.

    python bench/search_ablation.py --case digits --model cnn:16,16/64:bn --seeds 0,1,2 --slack 3,4,5,7
    python bench/search_ablation.py --case sfm-1000 --seeds 0,1,2 --variant noreuse
    python bench/search_ablation.py --case pfm-1000 --seeds 0 --variant noreuse

Variants (``--variant``): ``base`` is CLNP as shipped; ``noreuse`` skips the search's rounds over old
units (no connection from an old unit into the task is cut; ``reused`` then counts every old unit the
task's units read). ``--slack`` sets :data:`clnp.core.pruning.CONFIDENCE_SLACK`, which only small
validation splits (under 1000 inputs, as in the digits streams) use. Both reach into the search's
module on purpose, for the ablation: neither is a setting users are meant to turn.

Cases: ``digits`` is split-digits with its defaults (``--model`` to change the network);
``sfm-1000`` is split-fashion-mnist at ``mlp:1000,1000``, 5 epochs, batch 256, Adam 1e-3, 10
fine-tuning epochs at 3e-4, L1 1e-3, margin 0.1; ``pfm-1000`` is permuted-fashion-mnist, 10 tasks,
the same network and training, L1 1.5e-3 / 5e-3 (first / second layer), margin 0.25. One torch
thread per process (float sums in a fixed order, so a figure is reproduced exactly).
"""

from __future__ import annotations

import argparse
import time

import torch

import clnp.core.pruning as pruning
from clnp.experiments.config import RunConfig
from clnp.experiments.runner import run
from clnp.methods.clnp import CapacityError

CASES = {
    "digits": dict(benchmark="split-digits"),
    "sfm-1000": dict(benchmark="split-fashion-mnist", model="mlp:1000,1000", epochs=5, batch_size=256, lr=1e-3,
                     finetune_epochs=10, finetune_lr=3e-4, l1=1e-3, margin=0.1),
    "pfm-1000": dict(benchmark="permuted-fashion-mnist", tasks=10, model="mlp:1000,1000", epochs=5, batch_size=256,
                     lr=1e-3, finetune_epochs=10, finetune_lr=3e-4, l1=[1.5e-3, 5e-3], margin=0.25),
}


def _without_reuse_rounds() -> None:
    """Make the search skip its rounds over old units (the reuse pruning)."""
    rounds = pruning._rounds

    def units_only(axes, masks, value, passes, current, history, label):
        return current if label == "reuse" else rounds(axes, masks, value, passes, current, history, label)

    pruning._rounds = units_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="digits")
    parser.add_argument("--model", default=None, help="override the case's network")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variant", choices=("base", "noreuse"), default="base")
    parser.add_argument("--slack", default=str(pruning.CONFIDENCE_SLACK), help="comma-separated confidence slacks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.variant == "noreuse":
        _without_reuse_rounds()
    case = dict(CASES[args.case])
    if args.model:
        case["model"] = args.model
    for slack in (float(s) for s in args.slack.split(",")):
        pruning.CONFIDENCE_SLACK = slack
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            head = f"case {args.case} model {case.get('model', 'default')} {args.variant} slack {slack:g} seed {seed}"
            try:
                results = run(RunConfig(**case, seed=seed, progress=False))
            except CapacityError as error:  # the stream did not fit
                print(f"{head}: stopped: {type(error).__name__}: {str(error).split(': every')[0]}", flush=True)
                continue
            final = results["accuracy_matrix"][-1]
            print(f"{head}: ACC {100 * results['average_accuracy']:.2f} BWT {results['backward_transfer']:+.4f} "
                  f"({time.perf_counter() - started:.0f} s)")
            for t, info in enumerate(results["tasks"]):
                print(f"  T{t}: val dense {100 * info['val_accuracy_dense']:.2f}  final test {100 * final[t]:.1f}"
                      f"  kept {info['owned']}  reused {info['reused']}")
            print(f"  free after: {[row['free_after_task'][-1] for row in results['capacity']]}", flush=True)


if __name__ == "__main__":
    main()
