"""Training step time: CLNP at a task > 0 vs a plain PyTorch loop on the same dense network.

    python bench/step_time.py [--reps 7] [--steps 8] [--epochs 2] [--threads 1]

For each network (MLP 784-2000-2000 and cnn:32,32,64,64/512 on 1x28x28 inputs; GEM's reduced ResNet-18
``resnet18:20`` on 3x32x32 inputs; 10 classes, batch 256, Adam lr 1e-3) three variants train on the same
minibatches, in turn, ``reps`` times:

* ``plain``: ``nn.Sequential`` of the same shape, cross-entropy, a fresh Adam, the usual
  zero_grad / backward / step loop;
* ``plain+L1``: the same plus the L1 activity penalty CLNP adds to the loss (the method's
  objective, not masking overhead; stacks only: a traced model's taps have no plain twin);
* ``CLNP``: ``CLNP._train`` itself (the one training loop, per-epoch validation on 32 examples
  included) on task 2 of a network whose tasks 0 and 1 own 15% of the units each, so masks
  are active (frozen rows, cut weights, restored snapshots, old heads present).

Each run is ``epochs`` epochs of ``steps`` minibatches with a fresh optimiser, as a task's
training phase is. The figure is the median time per step; the last lines are
``step_time_ratio NET R`` with R = CLNP / plain.

The script re-runs itself with glibc's ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set
(see ``_util.MALLOC_ENV``; ``--no-malloc-env`` turns that off): page faults on fresh allocations
otherwise fall at random on one variant or the other and move a figure by ~15%.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import allocator_line, interleaved, machine, own_units, plain_twin, steady_allocator, table  # noqa: E402

import clnp  # noqa: E402
from clnp.core.sparsity import l1_activity_penalty  # noqa: E402
from clnp.data.tasks import Split, Task  # noqa: E402
from clnp.engine.loop import shuffled_batches  # noqa: E402
from clnp.models import build  # noqa: E402

NETWORKS = {"mlp": "mlp:2000,2000", "cnn": "cnn:32,32,64,64/512", "resnet": "resnet18:20"}
INPUT_SHAPES = {"mlp": (1, 28, 28), "cnn": (1, 28, 28), "resnet": (3, 32, 32)}
BATCH = 256
L1 = 1e-3


def plain_forward_with_activity(model: nn.Sequential, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits and the output of every ReLU (the activity CLNP's L1 penalty reads)."""
    acts = []
    for m in model:
        x = m(x)
        if isinstance(m, nn.ReLU):
            acts.append(x)
    return x, acts


def plain_run(model: nn.Module, task: Task, epochs: int, l1: bool, seed: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for xb, yb in shuffled_batches((task.train.x, task.train.y), BATCH, gen):
            if l1:
                logits, acts = plain_forward_with_activity(model, xb)
                loss = F.cross_entropy(logits, yb) + l1_activity_penalty(acts, [L1] * len(acts))
            else:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def measure(name: str, spec: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    shape = INPUT_SHAPES[name]
    net = clnp.build_model(spec, shape)
    own_units(net, [0.15, 0.15])
    learner = clnp.CLNP(net, clnp.CLNPConfig(batch_size=BATCH, optimizer="adam", lr=1e-3, l1=L1))
    task_id = net.add_head(10)
    n = args.steps * BATCH
    x = torch.rand(n, *shape)
    y = torch.randint(0, 10, (n,))
    task = Task("synthetic", 10, Split(x, y), Split(x[:32], y[:32]), Split(x[:32], y[:32]))
    graph = name == "resnet"
    plain: nn.Module = (nn.Sequential(build(spec, shape), nn.Linear(net.feature_dim, 10)) if graph
                        else plain_twin(net, 10))
    gen = torch.Generator().manual_seed(1)

    def run_clnp() -> None:
        learner._train(task, task_id, args.epochs, "train", gen, keep=None, l1=True, log=[])

    variants = {"plain": lambda: plain_run(plain, task, args.epochs, False, 1), "CLNP": run_clnp}
    if not graph:
        variants["plain+L1"] = lambda: plain_run(plain, task, args.epochs, True, 1)  # type: ignore[arg-type]
    medians = interleaved(variants, reps=args.reps, warmup=1)
    medians.setdefault("plain+L1", float("nan"))
    steps = args.epochs * args.steps
    owned = sum(int((o != clnp.FREE).sum()) for o in net.owners)
    units = sum(o.numel() for o in net.owners)
    return {"net": name, "spec": spec, "owned": f"{owned}/{units}",
            **{k: 1e3 * v / steps for k, v in medians.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=8, help="minibatches per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run (fresh optimiser each run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--networks", default="mlp,cnn")
    parser.add_argument("--no-malloc-env", action="store_true", help="keep the default glibc allocator settings")
    args = parser.parse_args()
    steady_allocator(sys.argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(allocator_line())
    print(f"batch {BATCH}, Adam lr 1e-3, L1 {L1}; {args.epochs} epochs x {args.steps} steps per run, "
          f"{args.reps} interleaved runs per variant, medians\n")
    rows = [measure(name, NETWORKS[name], args) for name in args.networks.split(",")]
    print(table(
        ["net", "spec", "units owned by tasks 0-1", "plain ms/step", "plain+L1 ms/step", "CLNP ms/step",
         "CLNP/plain", "CLNP/plain+L1"],
        [[r["net"], r["spec"], r["owned"], r["plain"], r["plain+L1"], r["CLNP"], r["CLNP"] / r["plain"],
          r["CLNP"] / r["plain+L1"]] for r in rows]))
    print()
    for r in rows:
        print(f"step_time_ratio {r['net']} {r['CLNP'] / r['plain']:.2f}")


if __name__ == "__main__":
    main()
