"""Check the reuse figures of finished CLNP runs by ablation: silence the old units not counted as reused.

    clnp run --benchmark split-digits --out runs/sd
    python bench/reuse_check.py runs/sd [RUN_DIR ...]

For every task after the first it prints, per layer, the old units the task is reported to reuse (the
run's ``reused``, recomputed from the network by ``CLNPNet.units_used_by``) out of the old units
there; then it computes the task's validation logits with every old unit *not* counted silenced, and
compares them with the untouched network's. They must be bit-identical (``torch.equal``): the
units left out of the count are ones the task does not read at all. Exit status 1 if any task's
logits differ or a recomputed count differs from the run's.
"""

from __future__ import annotations

import argparse
import sys

import torch

from clnp.core.partition import live_units
from clnp.experiments.runner import load_learner


def check(run_dir: str) -> bool:
    """Print the reuse figures of the run in ``run_dir`` and whether the ablation leaves them exact."""
    learner, stream = load_learner(run_dir)
    net = learner.net
    net.eval()
    ok = True
    print(f"{run_dir}: {stream[0].name.split(':')[0]}, {net.n_tasks} tasks, layers {net.layer_names}")
    for t in range(1, net.n_tasks):
        used = net.units_used_by(t)
        old = [live_units(o, t - 1) for o in net.owners]  # units of the tasks before t
        counted = [int((u & o).sum()) for u, o in zip(used, old, strict=True)]
        reported = learner.reports[t].reused
        keep = [~(o & ~u) for o, u in zip(old, used, strict=True)]  # silence the old units not counted
        x = stream[t].val.x
        with torch.no_grad():
            same = torch.equal(net(x, t, keep), net(x, t))
        fewer = any(c < int(o.sum()) for c, o in zip(counted, old, strict=True))
        ok = ok and same and counted == reported
        figures = ", ".join(f"{c} of {int(o.sum())}" for c, o in zip(counted, old, strict=True))
        print(f"  T{t}: reuses {figures} old units{' (fewer than all)' if fewer else ''}; "
              f"{'as reported' if counted == reported else f'REPORTED {reported}'}; logits with the others "
              f"silenced on {len(x)} validation inputs: {'bit-identical' if same else 'DIFFERENT'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="directories of finished CLNP runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [check(run) for run in args.runs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
