"""Training throughput (images per second): a plain PyTorch loop, CLNP, and CLNP under DDP.

    python bench/throughput.py [--model mlp:1000,1000] [--batch 256] [--steps 40] [--device auto]
                               [--threads 1] [--ddp 1,2] [--precision 32]

On the device it runs on (printed): ``plain`` is ``nn.Sequential`` of the same shape trained with
cross-entropy and Adam, the usual zero_grad / backward / step loop over batches already on the
device; ``CLNP`` is CLNP's training phase through the one loop (``CLNP._train``) on task 2 of a
network whose tasks 0 and 1 own 15 % of the units each (masks active, L1 on). Both read the same
in-memory 1x28x28 inputs (random values: speed does not depend on them), batch ``--batch``; the
figure is the median of ``--reps`` runs of ``--steps`` batches each, interleaved.

``--ddp 1,2`` then runs CLNP's phase under ``torchrun --nproc-per-node N`` on the CPU with gloo (each
process ``--threads`` threads, the global batch still ``--batch``, shared between the ranks) and
prints the images per second of the whole group. At one process clnp trains as a single process
does (no DDP wrapper). On this 2-core machine two processes of one
thread each use both cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import interleaved, machine, own_units, plain_twin, table  # noqa: E402

import clnp  # noqa: E402
from clnp.data.tasks import Split, Task  # noqa: E402
from clnp.engine import distributed  # noqa: E402
from clnp.engine.devices import resolve_device  # noqa: E402
from clnp.engine.precision import autocast  # noqa: E402

INPUT_SHAPE = (1, 28, 28)


def _setup(args: argparse.Namespace, device: torch.device) -> tuple[clnp.CLNP, int, Task]:
    torch.manual_seed(0)
    net = clnp.build_model(args.model, INPUT_SHAPE)
    own_units(net, [0.15, 0.15])
    learner = clnp.CLNP(net, clnp.CLNPConfig(batch_size=args.batch, lr=1e-3, l1=3e-3, device=str(device),
                                             precision=args.precision))
    task_id = net.add_head(10)
    n = args.steps * args.batch
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, *INPUT_SHAPE, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    task = Task("synthetic", 10, Split(x, y), Split(x[:64], y[:64]), Split(x[:64], y[:64]))
    return learner, task_id, task


def _clnp_phase(learner: clnp.CLNP, task_id: int, task: Task) -> None:
    learner._train(task, task_id, 1, "train", torch.Generator().manual_seed(1), keep=None, l1=True, log=[])


def single(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    learner, task_id, task = _setup(args, device)
    plain = plain_twin(learner.net, 10).to(device)
    xs = task.train.x.to(device).split(args.batch)
    ys = task.train.y.to(device).split(args.batch)

    def run_plain() -> None:
        opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
        for xb, yb in zip(xs, ys, strict=True):
            with autocast(args.precision, device):  # the same precision as CLNP's
                loss = F.cross_entropy(plain(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_clnp() -> None:
        _clnp_phase(learner, task_id, task)
        if device.type == "cuda":
            torch.cuda.synchronize()

    medians = interleaved({"plain": run_plain, "CLNP": run_clnp}, reps=args.reps, warmup=1)
    images = args.steps * args.batch
    rows = [[name, f"{images / seconds:,.0f}", f"{medians['plain'] / seconds:.2f}"]
            for name, seconds in medians.items()]
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else machine()})")
    print(f"model {args.model}, batch {args.batch}, {args.steps} steps per run, precision {args.precision}, "
          f"{args.threads} thread(s), median of {args.reps}\n")
    print(table(["loop", "images/s", "speed vs plain"], rows))


def worker(args: argparse.Namespace) -> None:
    """One rank of ``--ddp N``: time CLNP's phase over the group (rank 0 prints)."""
    device = torch.device("cpu")
    distributed.init_from_env(device)
    learner, task_id, task = _setup(args, device)
    _clnp_phase(learner, task_id, task)  # warm-up
    times = []
    for _ in range(args.reps):
        distributed.barrier()
        started = time.perf_counter()
        _clnp_phase(learner, task_id, task)
        distributed.barrier()
        times.append(time.perf_counter() - started)
    if distributed.is_main():
        seconds = sorted(times)[len(times) // 2]
        print(f"ddp_images_per_second {distributed.world_size()} {args.steps * args.batch / seconds:.0f}", flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp:1000,1000")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ddp", default="", help="process counts to run under torchrun on the CPU, e.g. 1,2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return
    single(args)
    rows = []
    for n in [int(v) for v in args.ddp.split(",") if v]:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), __file__,
               "--worker", "--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps),
               "--reps", str(args.reps), "--threads", str(args.threads), "--precision", args.precision]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        value = next(float(line.split()[2]) for line in out.splitlines() if line.startswith("ddp_images_per_second"))
        what = "DDP, gloo" if n > 1 else "the single-process path: no DDP wrapper at world size 1"
        rows.append([f"CLNP under torchrun, {n} process{'es' if n > 1 else ''} ({what})", f"{value:,.0f}"])
    if rows:
        base = float(rows[0][1].replace(",", ""))
        print()
        print(table(["loop", "images/s", "vs 1 process"], [[r[0], r[1], f"{float(r[1].replace(',', '')) / base:.2f}"]
                                                          for r in rows]))


if __name__ == "__main__":
    main()
