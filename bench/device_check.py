"""CLNP's promises on an accelerator: every earlier task's logits bit-identical after later tasks and a reload.

    PYTHONPATH=src python bench/device_check.py --device cuda [--precisions 32,bf16-mixed,16-mixed]

For each precision: learn split-digits' 5 tasks (the benchmark's model and settings, the plan over the 5 tasks,
annealed from every free unit) on ``--device``; after each task record every learned task's logits on its test
inputs; after all of them, and again after a ``state_dict`` round trip into a fresh network on the device, check
each with ``torch.equal``. Prints ACC, backward transfer, the units each task trained and kept, and OK or the first
task that changed; exits 1 if any did. Figures in bench/RESULTS.md when a task is lent an accelerator.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import torch

import clnp
from clnp.data.benchmarks import BENCHMARKS
from clnp.models import build_network


def logits(learner: clnp.CLNP, tasks, upto: int) -> list[torch.Tensor]:
    return [learner.logits(t, tasks[t].test.x) for t in range(upto)]


def check(device: str, precision: str, seed: int) -> bool:
    spec = BENCHMARKS["split-digits"]
    tasks = list(clnp.get_benchmark("split-digits", seed=seed))
    torch.manual_seed(seed)
    model, settings = spec.defaults["model"], {k: v for k, v in spec.defaults.items() if k != "model"}
    net = build_network(model, tasks[0].input_shape)
    config = clnp.CLNPConfig(**settings, device=device, precision=precision, expected_tasks=len(tasks), seed=seed)
    learner = clnp.CLNP(net, config)
    recorded: list[torch.Tensor] = []
    t0 = time.perf_counter()
    ok = True
    for t, task in enumerate(tasks):
        learner.learn(task)
        now_all = logits(learner, tasks, t + 1)
        recorded.append(now_all[t])
        for earlier, now in enumerate(now_all[:t]):
            if not torch.equal(now, recorded[earlier]):
                print(f"  CHANGED: task {earlier} after task {t}")
                ok = False
    buffer = io.BytesIO()
    torch.save(learner.net.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_network(model, tasks[0].input_shape)
    for task in tasks:
        fresh.add_head(task.n_classes)
    fresh.load_state_dict(torch.load(buffer))
    twin = clnp.CLNP(fresh, config)
    for t, now in enumerate(logits(twin, tasks, len(tasks))):
        if not torch.equal(now, recorded[t]):
            print(f"  CHANGED: task {t} after a state_dict round trip")
            ok = False
    acc = [learner.accuracy(t, task.test.x, task.test.y) for t, task in enumerate(tasks)]
    reports = learner.reports
    print(f"{device} {precision}: ACC {100 * sum(acc) / len(acc):.2f} % ({time.perf_counter() - t0:.0f} s); "
          f"logits dtype {recorded[0].dtype}; trained -> kept per task: "
          + "; ".join(f"{r.trained} -> {r.owned}" for r in reports)
          + f"; every earlier task bit-identical after later tasks and a reload: {'OK' if ok else 'NO'}", flush=True)
    return ok


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precisions", default="32,bf16-mixed,16-mixed")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(f"torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'}")
    results = [check(a.device, precision, a.seed) for precision in a.precisions.split(",")]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
