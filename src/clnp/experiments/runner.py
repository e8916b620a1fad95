"""Runs: a benchmark stream, a model and a method, evaluated after every task; a run directory on disk.

``run(config, out)`` learns every task and writes into the run directory ``out``:

* ``config.yaml``: the resolved configuration (benchmark defaults filled in);
* ``log.csv``: one row per training epoch (task, phase, epoch, loss, val_accuracy, seconds);
* ``checkpoint/``: the learner after the last finished task (see :mod:`clnp.checkpoint`), replaced
  atomically after each task;
* ``results.json``: the accuracy matrix, ACC/BWT, capacity and per-task details, at the end.

``resume(out)`` continues a killed run from its last finished task and ends with the same
``results.json`` numbers as the run left alone: the network is restored bit for bit, and so are the
learner's reports, the accuracy rows so far and the global random-number generator state.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..data.benchmarks import get_benchmark
from ..methods import build_method
from .checkpoint import (
    META_NAME,
    CheckpointError,
    Resumable,
    atomic_write_text,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .config import RunConfig, dump_config, read_run_config
from .metrics import average_accuracy, backward_transfer, lower_triangle

__all__ = ["LOG_COLUMNS", "RunConfig", "resume", "run", "unfinished_run"]

LOG_COLUMNS = ("task", "phase", "epoch", "loss", "val_accuracy", "seconds")
CHECKPOINT_DIR = "checkpoint"
_IGNORED_ON_RESUME = ("progress", "data_dir")
"""Config fields that may differ between a run and its resumption (they do not change results)."""


def run(config: RunConfig, out: str | Path | None = None) -> dict:
    """Learn every task of the benchmark in order; return (and write into run directory ``out``) the results."""
    cfg = config.resolved()
    return _execute(cfg, None if out is None else Path(out), checkpoint=None)


def _start_fresh(out: Path, cfg: RunConfig) -> None:
    """Make ``out`` the directory of a new run: what an earlier run left must not pass for this run's state."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT_DIR
    if ckpt.is_dir():
        (ckpt / META_NAME).unlink(missing_ok=True)  # the commit point first
        for leftover in ckpt.iterdir():
            leftover.unlink()
    (out / "results.json").unlink(missing_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))


def unfinished_run(out: str | Path) -> bool:
    """Whether ``out`` holds a run that stopped before its end (a checkpoint but no ``results.json``)."""
    out = Path(out)
    return has_checkpoint(out / CHECKPOINT_DIR) and not (out / "results.json").is_file()


def resume(out: str | Path, progress: bool | None = None, data_dir: str | None = None) -> dict:
    """Continue the run in directory ``out`` from its last finished task (or from the start if none finished).

    The configuration is read from ``out/config.yaml``; ``progress`` and ``data_dir`` may be changed.
    Raises :class:`~clnp.checkpoint.CheckpointError` for a damaged checkpoint or one that does not
    match the configuration, ``ValueError`` for a method whose learner cannot be checkpointed.
    """
    out_path = Path(out)
    config_path = out_path / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {out_path} a run directory written by 'clnp run'?")
    cfg = read_run_config(config_path)
    if progress is not None:
        cfg.progress = progress
    if data_dir is not None:
        cfg.data_dir = data_dir
    cfg = cfg.resolved()
    for leftover in out_path.glob(".*.tmp-*"):  # a write killed half-way (results.json, log.csv)
        leftover.unlink(missing_ok=True)
    ckpt = out_path / CHECKPOINT_DIR
    state = load_checkpoint(ckpt) if has_checkpoint(ckpt) else None
    return _execute(cfg, out_path, checkpoint=state, resuming=True)


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _IGNORED_ON_RESUME}


class _EpochLog:
    """``log.csv`` of a run directory, one flushed row per epoch."""

    def __init__(self, path: Path, keep_before_task: int) -> None:
        self.path = path
        kept: list[dict] = []
        if keep_before_task > 0 and path.is_file():
            with open(path, newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row.get("task") or 0) < keep_before_task]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(path, buffer.getvalue())
        self._fh = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._fh, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")

    def __call__(self, row: dict) -> None:
        self._writer.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _execute(cfg: RunConfig, out: Path | None, checkpoint: tuple | None, resuming: bool = False) -> dict:
    torch.manual_seed(cfg.seed)
    stream = get_benchmark(cfg.benchmark, n_tasks=cfg.tasks, seed=cfg.seed, data_dir=cfg.data_dir)
    assert cfg.model is not None
    input_shape = tuple(stream[0].train.x.shape[1:])
    learner = build_method(cfg.method, cfg.model, input_shape, cfg.train_config(), cfg.method_options())
    resumable = isinstance(learner, Resumable)
    if resuming and not resumable:
        raise ValueError(
            f"method {cfg.method!r} cannot be resumed: its learner does not offer learner_state() / "
            "load_learner_state(); run it again from the start without --resume")
    # Bad data is refused here, before anything in the run directory changes, not tasks later.
    for task in stream:
        task.validate(input_shape)

    rows: list[list[float]] = []
    task_info: list[dict] = []
    resumed_at: list[int] = []
    seconds_before = 0.0
    start = 0
    if checkpoint is not None:
        tensors, meta, rng_state = checkpoint
        ckpt_file = out / CHECKPOINT_DIR if out is not None else "checkpoint"
        if _comparable(meta.get("config", {})) != _comparable(asdict(cfg)):
            raise CheckpointError(
                f"{ckpt_file}: the checkpoint was written with another configuration than config.yaml holds "
                "(was config.yaml edited?)")
        done = meta.get("tasks", [])
        for i, info in enumerate(done):
            if i >= len(stream) or info.get("name") != stream[i].name or info.get("n_classes") != stream[i].n_classes:
                raise CheckpointError(
                    f"{ckpt_file}: finished task {i} ({info}) does not match the benchmark's task stream")
        learner.load_learner_state(tensors, meta["learner"])  # type: ignore[union-attr]
        rows = meta["accuracy_rows"]
        task_info = meta["task_info"]
        resumed_at = list(meta.get("resumed_at_tasks", []))
        seconds_before = float(meta.get("train_seconds", 0.0))
        start = len(done)
        torch.set_rng_state(rng_state)
    if out is not None and not resuming:
        _start_fresh(out, cfg)
    if resuming:
        resumed_at.append(start)

    log = _EpochLog(out / "log.csv", keep_before_task=start) if out is not None else None
    if log is not None and hasattr(learner, "on_epoch"):
        learner.on_epoch = log  # type: ignore[attr-defined]
    started = time.perf_counter()
    try:
        for i in range(start, len(stream)):
            task = stream[i]
            t0 = time.perf_counter()
            report = learner.learn(task)
            rows.append([learner.accuracy(j, stream[j].test.x, stream[j].test.y) for j in range(i + 1)])
            info = dict(report) if isinstance(report, dict) else report.to_dict()
            info.pop("epoch_log", None)
            info["wall_seconds"] = time.perf_counter() - t0
            task_info.append(info)
            if out is not None and resumable:
                _save(learner, out / CHECKPOINT_DIR, cfg, stream, rows, task_info, resumed_at,
                      seconds_before + time.perf_counter() - started)
    finally:
        if log is not None:
            log.close()

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
        "train_seconds": seconds_before + time.perf_counter() - started,
        "resumed_at_tasks": resumed_at,
        "config": asdict(cfg),
    }
    if out is not None:
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def _save(learner: Any, directory: Path, cfg: RunConfig, stream: list, rows: list, task_info: list,
          resumed_at: list[int], train_seconds: float) -> None:
    tensors, learner_meta = learner.learner_state()
    n = len(rows)
    meta = {
        "config": asdict(cfg),
        "tasks": [{"name": t.name, "n_classes": t.n_classes} for t in stream[:n]],
        "learner": learner_meta,
        "accuracy_rows": rows,
        "task_info": task_info,
        "resumed_at_tasks": resumed_at,
        "train_seconds": train_seconds,
    }
    save_checkpoint(directory, tensors, meta, step=n)
