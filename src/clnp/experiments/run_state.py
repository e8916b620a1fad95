"""A run's checkpoint as the runner writes and reads it: :func:`save_run` after every task (the learner's
state, the accuracy rows and reports so far, the seconds spent), :func:`restore_run` on resume (every entry
checked against the run, then loaded), and :func:`load_checked`, the one way a learner state is loaded (after
the consistency checks its method declares). The file format itself is :mod:`clnp.experiments.checkpoint`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..engine import distributed
from ..engine.learner import StateError, check_finite_state
from ..methods import get
from .checkpoint import CheckpointError, save_checkpoint
from .config import RunConfig
from .identity import differences, result_settings, same_run


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def load_checked(learner: Any, tensors: dict, learner_meta: Any, method: str, model: str,
                 input_shape: Sequence[int], n_classes: Sequence[int], source: str,
                 tasks: Sequence | None = None) -> None:
    """Load a checkpoint's learner state into ``learner``, freshly built for the run, after the consistency
    checks the method declares (:attr:`~clnp.engine.method.Method.check_state`; CLNP's integrity checks), or,
    where it declares none, that no floating tensor holds NaN or infinity
    (:func:`~clnp.engine.learner.check_finite_state`).

    ``n_classes``: per finished task; ``tasks``: the finished tasks themselves, for a learner that reads
    their data again (joint training). Whatever does not fit, in the checks or in the learner's own
    loading, is a :class:`CheckpointError` naming ``source``; ``learner_meta`` is the checkpoint's
    ``learner`` entry, as read.
    """
    if not isinstance(learner_meta, dict):
        raise CheckpointError(f"{source}: 'learner' is missing or not an object")
    check_state = get(method).check_state
    try:
        if check_state is not None:
            check_state(tensors, learner_meta, model, input_shape, n_classes, source)
        else:
            check_finite_state(tensors, source)
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        learner.load_learner_state(tensors, learner_meta)
        if tasks is not None:
            learner.restore_tasks(list(tasks))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the learner found, it is this checkpoint's fault
        raise CheckpointError(f"{source}: the learner's state does not fit this run ({one_line(exc)})") from None


def restore_run(learner: Any, checkpoint: tuple, cfg: RunConfig, stream: Sequence, input_shape: tuple,
             ckpt_file: Path | str) -> tuple[list, list, list, float, int]:
    """Check the checkpoint against the run and load it into ``learner``; every mismatch is a CheckpointError."""
    tensors, meta, rng_state = checkpoint
    theirs = meta.get("config")
    revision = result_settings(theirs).get("method_revision") if isinstance(theirs, dict) else cfg.method_revision
    if revision != cfg.method_revision:  # same_run would refuse it too, but as an edited config.yaml
        raise CheckpointError(
            f"{ckpt_file}: the checkpoint was written by a clnp whose {cfg.method} gives other results than this "
            f"one's (revision {revision!r}, this clnp's {cfg.method_revision!r}): finish the run with the clnp that "
            "began it, or start it anew in another directory")
    if not isinstance(theirs, dict) or not same_run(asdict(cfg), theirs):
        diff = differences(asdict(cfg), theirs, here="in config.yaml", there="in the checkpoint", most=4, sep="; ") \
            if isinstance(theirs, dict) else "no configuration recorded"
        raise CheckpointError(
            f"{ckpt_file}: the checkpoint was written with another configuration than config.yaml holds "
            f"({diff}; was config.yaml edited?)")
    world, now = meta.get("world_size"), distributed.world_size()  # None: written before it was recorded
    if world is not None and world != now:
        raise CheckpointError(
            f"{ckpt_file}: the run was trained by {world!r} processes (torchrun world size) and is resumed by {now}; "
            "each process's share of every batch, and so the results, would differ: resume it with "
            f"{world!r} processes in all (e.g. torchrun --nproc-per-node {world!r} -m clnp run --resume ...)")
    done = meta.get("tasks")
    if not isinstance(done, list) or len(done) != meta.get("step"):
        raise CheckpointError(f"{ckpt_file}: 'tasks' must list the {meta.get('step')} finished tasks")
    for i, info in enumerate(done):
        if (not isinstance(info, dict) or i >= len(stream) or info.get("name") != stream[i].name
                or info.get("n_classes") != stream[i].n_classes):
            raise CheckpointError(
                f"{ckpt_file}: finished task {i} ({info}) does not match the benchmark's task stream")
    n = len(done)
    rows, task_info = meta.get("accuracy_rows"), meta.get("task_info")
    if not isinstance(rows, list) or len(rows) != n or any(
            not isinstance(row, list) or len(row) != i + 1
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in row)
            for i, row in enumerate(rows)):
        raise CheckpointError(f"{ckpt_file}: 'accuracy_rows' must hold {n} rows of 1..{n} accuracies in [0, 1]")
    if not isinstance(task_info, list) or len(task_info) != n or not all(isinstance(t, dict) for t in task_info):
        raise CheckpointError(f"{ckpt_file}: 'task_info' must hold one report per finished task ({n})")
    assert cfg.model is not None, "restore_run takes a checked RunConfig (check() fills in the model)"
    load_checked(learner, tensors, meta.get("learner"), cfg.method, cfg.model, input_shape,
                 [t.n_classes for t in stream[:n]], str(ckpt_file), tasks=stream[:n])
    try:
        torch.set_rng_state(rng_state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{ckpt_file}: the random-number state cannot be restored ({one_line(exc)})") from None
    resumed_at = meta.get("resumed_at_tasks", [])
    if not isinstance(resumed_at, list) or not all(isinstance(t, int) for t in resumed_at):
        raise CheckpointError(f"{ckpt_file}: 'resumed_at_tasks' must be a list of task counts")
    seconds = meta.get("train_seconds", 0.0)
    if not isinstance(seconds, (int, float)):
        raise CheckpointError(f"{ckpt_file}: 'train_seconds' must be a number")
    return rows, task_info, list(resumed_at), float(seconds), n


def save_run(learner: Any, directory: Path, cfg: RunConfig, stream: Sequence, rows: list, task_info: list,
             resumed_at: list[int], train_seconds: float, input_shape: tuple, environment: dict | None = None) -> None:
    """Checkpoint the run after its ``len(rows)``-th task: the learner's state, the finished tasks' rows and reports,
    and ``environment`` (what the writing process runs on), so an unfinished run's results say where it ran."""
    tensors, learner_meta = learner.learner_state()
    tensors = {k: v.cpu() for k, v in tensors.items()}  # loads onto any device (load_state_dict copies)
    n = len(rows)
    meta = {
        "config": asdict(cfg),
        "tasks": [{"name": t.name, "n_classes": t.n_classes} for t in stream[:n]],
        "n_tasks": len(stream),
        "input_shape": list(input_shape),
        "learner": learner_meta,
        "accuracy_rows": rows,
        "task_info": task_info,
        "capacity": learner.capacity(),
        "resumed_at_tasks": resumed_at,
        "train_seconds": train_seconds,
        "world_size": distributed.world_size(),
    }
    if environment is not None:
        meta["environment"] = environment
    save_checkpoint(directory, tensors, meta, step=n)
