"""Runs: a benchmark stream, a model and a method, evaluated after every task; a run directory on disk.

``run(config, out)`` learns every task and writes into the run directory ``out``:

* ``config.yaml``: the resolved configuration (benchmark defaults filled in);
* ``log.csv``: one row per training epoch (task, phase, epoch, loss, val_accuracy, seconds);
* ``checkpoint/``: the learner after the last finished task (see :mod:`clnp.experiments.checkpoint`),
  replaced atomically after each task;
* ``results.json``: the accuracy matrix, ACC/BWT, capacity and per-task details, at the end
  (:class:`~clnp.experiments.results.RunResults`).

Every file name of a run directory is in :mod:`clnp.experiments.run_files`; what the checkpoint holds, and
how it is checked and loaded back, in :mod:`clnp.experiments.run_state`. ``on_epoch``, a callable given to
``run`` or ``resume``, receives each epoch's row of ``log.csv`` as it is written
(:mod:`clnp.experiments.progress` writes it and the progress lines).

``resume(out)`` continues a killed run from its last finished task and ends with the same
``results.json`` numbers as the run left alone: the network is restored bit for bit, and so are the
learner's reports, the accuracy rows so far and the global random-number generator state.

Under ``torchrun`` every rank runs this same code on the whole stream (see
:mod:`clnp.engine.distributed`); only rank 0 touches the run directory (marker, lock, config,
log, checkpoints, results), the others read the checkpoint to resume. After every task the ranks'
learned states are compared (a digest) and a difference stops the run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..data.benchmarks import get_benchmark
from ..engine import distributed
from ..engine.devices import resolve_device
from ..engine.learner import CapacityError
from ..methods import build_method, get
from .checkpoint import CheckpointError, Resumable, atomic_write_text, has_checkpoint, load_checkpoint
from .config import RunConfig
from .config_sources import dump_config, read_run_config
from .environment import describe_environment, machine_label
from .epoch_log import LOG_COLUMNS, EpochLog
from .links import refuse_links
from .progress import EpochCallback, EpochReporter, say_task_learned
from .results import RunResults, finished_run, finished_run_of, unfinished_run
from .run_files import CHECKPOINT_DIR, CONFIG, MARKER, TEMPORARY, RunDirError
from .run_lock import RunLock, check_lock
from .run_state import load_checked, one_line, restore_run, save_run
from .rundir import check_fresh, check_out_path, inspect, refuse_fresh_run, remove_own, write_marker

__all__ = ["LOG_COLUMNS", "EpochCallback", "RunConfig", "RunDirError", "finished_run", "finished_run_of",
           "load_checked", "load_learner", "resume", "run", "unfinished_run"]


def run(config: RunConfig, out: str | Path | None = None, overwrite: bool = False,
        on_epoch: EpochCallback | None = None) -> dict:
    """Learn every task of the benchmark in order; return (and write into run directory ``out``) the results.

    Every setting is checked first (:meth:`RunConfig.check`), then ``out``: a directory holding a
    finished or unfinished run, or files clnp did not write, is refused (:class:`RunDirError`) unless
    ``overwrite``, which removes exactly the files clnp wrote there (see :mod:`clnp.experiments.rundir`).
    ``on_epoch`` is called after every training epoch (:data:`EpochCallback`).
    """
    cfg = config.check()
    _start_distributed(cfg)
    out_path = None if out is None else Path(out)
    if out_path is not None:
        check_fresh(out_path, overwrite)  # read-only: refused before any data is read
        distributed.barrier()  # every rank has looked before rank 0 writes
    return _execute(cfg, out_path, checkpoint=None, overwrite=overwrite, on_epoch=on_epoch)


def _start_distributed(cfg: RunConfig) -> None:
    """Under torchrun: check the device and join the process group (a no-op for a single process)."""
    if distributed.launched_by_torchrun():
        distributed.init_from_env(resolve_device(cfg.device, distributed.local_rank()))


def load_learner(out: str | Path, streams: dict | None = None) -> tuple[Any, Sequence]:
    """The learner of the finished run in ``out``, rebuilt from its final checkpoint on the CPU, and the run's
    task stream, for looking at what it learned (accuracies, units, reuse). It evaluates in the run's precision
    (autocast runs on the CPU too), so its accuracies are the run's and a ``--tune`` trial is scored as it ran.

    ``streams`` caches streams by (benchmark, tasks, seed, data dir) across calls. Raises
    :class:`~clnp.experiments.checkpoint.CheckpointError` if the checkpoint does not hold every task of the stream.
    """
    out = Path(out)
    cfg = read_run_config(out / CONFIG).check()
    key = (cfg.benchmark, cfg.tasks, cfg.seed, cfg.data_dir)
    streams = {} if streams is None else streams
    if key not in streams:
        streams[key] = get_benchmark(cfg.benchmark, n_tasks=cfg.tasks, seed=cfg.seed, data_dir=cfg.data_dir)
    stream = streams[key]
    tensors, meta, _ = load_checkpoint(out / CHECKPOINT_DIR)
    if meta.get("step") != len(stream):
        raise CheckpointError(f"{out / CHECKPOINT_DIR}: holds {meta.get('step')} of {len(stream)} tasks; "
                              "the run has not finished")
    train = dataclasses.replace(cfg.train_config(), progress=False, device="cpu")
    assert cfg.model is not None, "check() fills in the model"
    learner = build_method(cfg.method, cfg.model, stream[0].input_shape, train, cfg.method_options())
    load_checked(learner, tensors, meta.get("learner"), cfg.method, cfg.model, stream[0].input_shape,
                 [t.n_classes for t in stream], str(out / CHECKPOINT_DIR), tasks=stream)
    return learner, stream


def resume(out: str | Path, progress: bool | None = None, data_dir: str | None = None,
           device: str | None = None, on_epoch: EpochCallback | None = None) -> dict:
    """Continue the run in directory ``out`` from its last finished task (or from the start if none finished).

    The configuration is read from ``out/config.yaml``; ``progress``, ``data_dir`` and ``device`` may be
    changed (the checkpoint loads onto any device).
    A run that has finished is left as it is (its ``results.json`` is returned, not rewritten).
    Raises :class:`~clnp.experiments.checkpoint.CheckpointError` for a damaged checkpoint or one that does not
    match the configuration, ``ValueError`` for a method whose learner cannot be checkpointed.
    """
    out_path = Path(out)
    refuse_links(out_path)  # read-only, on every rank, before anything is read through a link it would write
    config_path = out_path / CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {out_path} a run directory written by 'clnp run'?")
    cfg = read_run_config(config_path)
    if progress is not None:
        cfg.progress = progress
    if data_dir is not None:
        cfg.data_dir = str(Path(data_dir).expanduser().absolute())
    if device is not None:
        cfg.device = device
    cfg = cfg.check()
    _start_distributed(cfg)
    if distributed.is_main():
        check_lock(out_path)
    distributed.barrier()
    ckpt = out_path / CHECKPOINT_DIR
    state = load_checkpoint(ckpt) if has_checkpoint(ckpt) else None
    return _execute(cfg, out_path, checkpoint=state, resuming=True, on_epoch=on_epoch)


def _execute(cfg: RunConfig, out: Path | None, checkpoint: tuple | None, resuming: bool = False,
             overwrite: bool = False, on_epoch: EpochCallback | None = None) -> dict:
    device = resolve_device(cfg.device, distributed.local_rank())
    torch.manual_seed(cfg.seed)
    stream = get_benchmark(cfg.benchmark, n_tasks=cfg.tasks, seed=cfg.seed, data_dir=cfg.data_dir)
    assert cfg.model is not None
    input_shape = stream[0].input_shape
    # Bars over epochs on a terminal; on a pipe or a file plain lines, one per finished task.
    bars = cfg.progress and sys.stderr.isatty()
    # Methods that plan capacity (CLNP's unit budget) plan over the whole stream.
    train = dataclasses.replace(cfg.train_config(), progress=bars, device=str(device), expected_tasks=len(stream))
    learner = build_method(cfg.method, cfg.model, input_shape, train, cfg.method_options())
    resumable = isinstance(learner, Resumable)
    if resuming and not resumable:
        raise ValueError(
            f"method {cfg.method!r} cannot be resumed: its learner does not offer learner_state() / "
            "load_learner_state(); run it again from the start without --resume")
    if resuming and out is not None:
        done = finished_run(out)
        if done is not None:  # nothing to do: results.json stays as it is
            return done
    # Bad data is refused here, before anything in the run directory changes, not tasks later.
    for task in stream:
        task.validate(input_shape)

    lock = None
    failure: BaseException | None = None
    if out is not None and distributed.is_main():
        try:
            check_out_path(out)
            out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out)
            lock.acquire()
        except Exception as exc:  # noqa: BLE001 - raised below, on every rank
            failure = exc
    said = distributed.agree(None if failure is None else one_line(failure))
    if failure is not None:
        raise failure
    if said is not None:
        raise RunDirError(f"rank 0 could not take the run directory {out}: {said}")
    try:
        return _execute_locked(cfg, out, checkpoint, resuming, overwrite, stream, input_shape, learner, resumable,
                               on_epoch, device)
    finally:
        if lock is not None:
            lock.release()


def _execute_locked(cfg: RunConfig, out: Path | None, checkpoint: tuple | None, resuming: bool, overwrite: bool,
                    stream: Sequence, input_shape: tuple, learner: Any, resumable: bool,
                    on_epoch: EpochCallback | None, device: torch.device) -> dict:
    rows: list[list[float]] = []
    task_info: list[dict] = []
    resumed_at: list[int] = []
    seconds_before = 0.0
    start = 0
    reader = out  # every rank reads the checkpoint; only rank 0 writes
    if not distributed.is_main():
        out = None
    if out is not None and not resuming:
        state = inspect(out)  # again, now that the directory is locked
        refuse_fresh_run(state, overwrite)
        remove_own(state)
        write_marker(out)
        atomic_write_text(out / CONFIG, dump_config(cfg))
    if out is not None and resuming:
        refuse_links(out)  # again, now that the directory is locked
        for leftover in out.iterdir():  # a write killed half-way (results.json, log.csv)
            if TEMPORARY.match(leftover.name) and leftover.is_file() and not leftover.is_symlink():
                leftover.unlink(missing_ok=True)
        if not (out / MARKER).exists():
            write_marker(out)
    distributed.barrier()  # rank 0 has prepared the directory
    if checkpoint is not None:
        ckpt_file = reader / CHECKPOINT_DIR if reader is not None else "checkpoint"
        rows, task_info, resumed_at, seconds_before, start = restore_run(learner, checkpoint, cfg, stream, input_shape,
                                                                         ckpt_file)
    if resuming:
        resumed_at.append(start)

    here = describe_environment(device, distributed.world_size())  # a plug-in learner need not say its device
    log = EpochLog(out, keep_before_task=start) if out is not None else None
    n = len(stream)
    if log is not None or cfg.progress or on_epoch is not None:
        learner.on_epoch = EpochReporter(log, cfg, n, on_epoch)
    started = time.perf_counter()
    try:
        for i in range(start, n):
            task = stream[i]
            t0 = time.perf_counter()
            try:
                report = learner.learn(task)
            except CapacityError as exc:
                advice = learner.width_advice(n - i, cfg.model) if get(cfg.method).capacity else ""
                raise CapacityError(f"{exc} {advice} {_how_to_go_on(out, i)}".replace("  ", " ")) from None
            rows.append([learner.accuracy(j, stream[j].test.x, stream[j].test.y) for j in range(i + 1)])
            if distributed.is_distributed() and resumable:
                distributed.check_in_step(learner.learner_state()[0], f"after task {i} ({task.name})")
            info = dict(report) if isinstance(report, dict) else report.to_dict()
            info.pop("epoch_log", None)
            info["wall_seconds"] = time.perf_counter() - t0
            info["machine"] = machine_label(here)  # a run resumed elsewhere learns its later tasks there
            task_info.append(info)
            if out is not None and resumable:
                save_run(learner, out / CHECKPOINT_DIR, cfg, stream, rows, task_info, resumed_at,
                         seconds_before + time.perf_counter() - started, input_shape, here)
            if cfg.progress and distributed.is_main():
                say_task_learned(i, n, task.name, info, rows[-1])
    finally:
        if log is not None:
            log.close()

    results = RunResults.build(
        asdict(cfg), rows, n, learner.capacity(), task_info, seconds_before + time.perf_counter() - started,
        resumed_at, forecast=learner.capacity_forecast() if get(cfg.method).capacity else [],
        environment=here)
    if out is not None:
        results.write(out)
    return results.to_dict()


def _how_to_go_on(out: Path | None, finished: int) -> str:
    if out is None:
        return ""
    kept = f"The {finished} finished task{'s are' if finished != 1 else ' is'} kept in {out / CHECKPOINT_DIR}"
    return (f"{kept} ('clnp report {out}' shows {'them' if finished != 1 else 'it'}). A resume would stop here "
            "again (it continues with the same network and settings): to go on, run again with a wider model or "
            f"a larger margin, with --overwrite (replaces this run) or another --out.")
