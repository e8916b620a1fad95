"""Runs: a benchmark stream, a model and a method, evaluated after every task; results on disk."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from .benchmarks import get_benchmark
from .methods import build_method
from .metrics import average_accuracy, backward_transfer, lower_triangle
from .trainer import CLNPConfig


@dataclass
class RunConfig:
    """Everything a run depends on; ``None`` fields take the benchmark's defaults."""

    benchmark: str = "split-digits"
    method: str = "clnp"
    tasks: int | None = None
    model: str | None = None
    epochs: int | None = None
    finetune_epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    l1: float | None = None
    margin: float | None = None
    seed: int = 0
    data_dir: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def resolved(self) -> RunConfig:
        """A copy with every ``None`` replaced by the benchmark's default."""
        from .benchmarks import BENCHMARKS

        spec = BENCHMARKS[self.benchmark]
        values = asdict(self)
        for key, default in spec.defaults.items():
            if values.get(key) is None:
                values[key] = default
        return RunConfig(**values)

    def clnp_config(self) -> CLNPConfig:
        r = self.resolved()
        names = {f.name for f in fields(CLNPConfig)}
        kwargs = {k: v for k, v in asdict(r).items() if k in names and v is not None}
        return CLNPConfig(**kwargs)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run(config: RunConfig, out: str | Path | None = None) -> dict:
    """Learn every task of the benchmark in order; return (and write to ``out``) the results."""
    cfg = config.resolved()
    torch.manual_seed(cfg.seed)
    stream = get_benchmark(cfg.benchmark, n_tasks=cfg.tasks, seed=cfg.seed, data_dir=cfg.data_dir)
    assert cfg.model is not None
    learner = build_method(cfg.method, cfg.model, tuple(stream[0].train.x.shape[1:]), cfg.clnp_config(), cfg.extra)
    rows: list[list[float]] = []
    task_info = []
    started = time.perf_counter()
    for i, task in enumerate(stream):
        t0 = time.perf_counter()
        report = learner.learn(task)
        rows.append([learner.accuracy(j, stream[j].test.x, stream[j].test.y) for j in range(i + 1)])
        info = report if isinstance(report, dict) else report.to_dict()
        info.pop("epoch_log", None)
        info["wall_seconds"] = time.perf_counter() - t0
        task_info.append(info)
    matrix = lower_triangle(rows, len(stream))
    results = {
        "benchmark": cfg.benchmark,
        "method": cfg.method,
        "n_tasks": len(stream),
        "seed": cfg.seed,
        "model": cfg.model,
        "accuracy_matrix": matrix,
        "average_accuracy": average_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "capacity": learner.capacity(),
        "tasks": task_info,
        "train_seconds": time.perf_counter() - started,
        "config": asdict(cfg),
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results
