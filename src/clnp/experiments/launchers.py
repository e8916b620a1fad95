"""Where the runs of a comparison execute: in this process, in a pool of worker processes, or as Slurm jobs.

A launcher takes a function and a list of items and yields ``(index, Outcome)`` as the items finish, in
the order they finish. :func:`clnp.experiments.compare.compare` hands every launcher the same
function (one run into its run directory: :func:`clnp.experiments.compare.execution.execute_run`) and the
same items, gathers the outcomes by index and writes its tables in grid order, so a comparison's numbers do
not depend on the launcher: each run is seeded by its own configuration.

* :class:`InProcess` (``--jobs 1``): the runs one after another in this process. An error that is not
  a run's own failure (which the function returns as a value) stops the comparison, as it always did.
* :class:`ProcessPool` (``--jobs N``): ``N`` worker processes (``spawn``: safe with CUDA and threads).
  Each worker uses ``cpu_count // N`` threads unless ``OMP_NUM_THREADS`` is set, and with
  ``--device cuda`` (or ``auto`` where CUDA is present) worker ``i`` trains on ``cuda:{i % GPUs}``. The
  workers end with the comparison, even one killed by SIGKILL (and multiprocessing's resource tracker with them).
* :class:`Submitit` (``--launcher slurm``): one Slurm job per run through ``submitit``
  (``pip install 'clnp[slurm]'``), waited for here; without ``sbatch`` on the PATH it is refused (submitit would
  run every job at once on this machine instead); ``local-submitit`` is the same code path with
  submitit's ``LocalExecutor`` (processes on this machine instead of ``sbatch``), for tests. A job that
  reaches its time limit is requeued by submitit (the function offers ``checkpoint``) and its run
  resumes from its last finished task. Interrupting the waiting command (Ctrl-C, SIGTERM) cancels the
  jobs still queued or running, as stopping ``--jobs N`` stops its workers.

In the pool and under submitit, an unexpected error of one run (a worker killed, a job cancelled or
out of time too often) is reported as that run's failure and the others go on; running the same
command again continues the grid (finished runs are reused, unfinished ones resumed).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAUNCHERS = ("local", "slurm", "local-submitit")
"""``local``: this machine (``--jobs`` worker processes); ``slurm``: one Slurm job per run (submitit);
``local-submitit``: the Slurm code path with submitit's local executor (for tests)."""
INSTALL_HINT = "pip install 'clnp[slurm]' (or: pip install submitit)"


@dataclass
class Outcome:
    """What became of one item: the function's value, or why it produced none."""

    value: Any = None
    error: str | None = None


class Launcher:
    """Runs ``fn(item)`` for every item; yields ``(index, Outcome)`` as they finish."""

    workers: int = 1
    """How many items run at once (for the estimate of the time left); 0 when a scheduler decides."""

    def describe(self) -> str:
        raise NotImplementedError

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            started: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, Outcome]]:
        """``started(index, where)`` is called when an item is handed over (submitted, or begun here)."""
        raise NotImplementedError


class InProcess(Launcher):
    """One item after another, in this process; exceptions propagate."""

    def describe(self) -> str:
        return "in this process, one after another"

    def map(self, fn, items, started=None):
        for i, item in enumerate(items):
            if started is not None:
                started(i, "here")
            yield i, Outcome(value=fn(item))


# ---------------------------------------------------------------------------------------------- pool
_WORKER: dict[str, int] = {}
"""In a pool worker: its index and the pool's size (empty in any other process)."""


def _init_worker(counter: Any, workers: int, parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _WORKER.update(index=index, workers=workers)
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _die_with_parent(parent: int) -> None:
    """End this worker as soon as ``parent`` (the comparison) is gone, even when it was SIGKILLed and no clean-up
    of its ran: at once on Linux (``PR_SET_PDEATHSIG``), elsewhere within a second (a thread that polls). Once the
    workers are gone, multiprocessing's resource tracker reads the end of its pipe and ends too."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no libc to ask: the thread below still watches
            pass
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="clnp-parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal this process gets when the thread that started it ends."""


def worker_device(device: str) -> str:
    """The device a run asking for ``device`` uses in this process: in a pool worker, ``cuda`` (and ``auto``
    where CUDA is present) becomes the worker's own GPU, ``cuda:{index % GPUs}``; elsewhere it is unchanged."""
    if "index" not in _WORKER or device not in ("cuda", "auto"):
        return device
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return device
    return f"cuda:{_WORKER['index'] % torch.cuda.device_count()}"


class ProcessPool(Launcher):
    """``workers`` spawned processes (``concurrent.futures.ProcessPoolExecutor``)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"--jobs must be >= 1, got {workers}")
        self.workers = workers

    def describe(self) -> str:
        return f"in {self.workers} worker processes"

    def map(self, fn, items, started=None):
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if not items:
            return
        ctx = multiprocessing.get_context("spawn")
        counter = ctx.Value("i", 0)
        workers = min(self.workers, len(items))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(counter, workers, os.getpid()))
        finished = False
        try:
            futures = {}
            for i, item in enumerate(items):
                futures[pool.submit(fn, item)] = i
                if started is not None:
                    started(i, "queued for the pool")
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=futures.__getitem__):
                    try:
                        outcome = Outcome(value=future.result())
                    except Exception as exc:  # noqa: BLE001 - this run's failure; the others go on
                        outcome = Outcome(error=_one_line(exc, "a worker process"))
                    yield futures[future], outcome
            finished = True
        finally:
            if not finished:  # interrupted (Ctrl-C, SIGTERM, the caller stopped): the runs resume next time
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------ submitit
@dataclass
class SlurmSettings:
    """What each run's Slurm job asks for (``None``: submitit's or the cluster's default)."""

    partition: str | None = None
    time_min: int = 60
    gpus_per_run: int | None = None
    cpus_per_run: int | None = None
    log_dir: str | None = None
    extra: dict = field(default_factory=dict)


def require_submitit() -> Any:
    """The ``submitit`` module, or a ``ValueError`` saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--launcher slurm needs the submitit package, which is not installed: {INSTALL_HINT}") \
            from None
    return submitit


class Submitit(Launcher):
    """One job per item through submitit: ``AutoExecutor`` (Slurm, ``sbatch``) or ``LocalExecutor``."""

    workers = 0

    def __init__(self, settings: SlurmSettings, local: bool = False, poll_seconds: float | None = None) -> None:
        self.submitit = require_submitit()
        if not local and shutil.which("sbatch") is None:
            # submitit would fall back to running every job at once on this machine, not queued by a scheduler
            raise ValueError("--launcher slurm: no Slurm on this machine (sbatch is not on PATH), and submitit would "
                             "start every run here at once; run it where sbatch is, or use --launcher local --jobs N "
                             "to run here")
        self.settings = settings
        self.local = local
        self.poll = poll_seconds if poll_seconds is not None else (0.5 if local else 30.0)
        self.folder = Path(settings.log_dir or "slurm-logs")

    def describe(self) -> str:
        kind = "local processes through submitit" if self.local else "Slurm jobs"
        return f"as {kind} (logs in {self.folder})"

    def executor(self) -> Any:
        s = self.settings
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.local:
            ex = self.submitit.LocalExecutor(folder=str(self.folder))
            params: dict[str, Any] = {"timeout_min": s.time_min}
            if s.gpus_per_run:
                params["gpus_per_node"] = s.gpus_per_run
        else:
            ex = self.submitit.AutoExecutor(folder=str(self.folder))
            params = {"timeout_min": s.time_min, "name": "clnp-compare", **s.extra}
            if s.partition:
                params["slurm_partition"] = s.partition
            if s.gpus_per_run:
                params["gpus_per_node"] = s.gpus_per_run
            if s.cpus_per_run:
                params["cpus_per_task"] = s.cpus_per_run
        ex.update_parameters(**params)
        return ex

    def map(self, fn, items, started=None):
        if not items:
            return
        executor = self.executor()
        jobs = []
        for i, item in enumerate(items):
            job = executor.submit(fn, item)
            jobs.append(job)
            if started is not None:
                started(i, f"job {job.job_id}")
        index = {id(job): i for i, job in enumerate(jobs)}
        finished = False
        try:
            for job in self.submitit.helpers.as_completed(jobs, poll_frequency=self.poll):
                try:
                    outcome = Outcome(value=job.result())
                except Exception as exc:  # noqa: BLE001 - a failed, cancelled or timed-out job: that run's failure
                    outcome = Outcome(error=_one_line(exc, f"job {job.job_id}")
                                      + f" (logs: {self.folder}/{job.job_id}_*)")
                yield index[id(job)], outcome
            finished = True
        finally:
            if not finished:  # interrupted: cancel the jobs still queued or running (their runs resume next time)
                for job in jobs:
                    try:
                        if not job.done():
                            job.cancel(check=False)
                    except Exception:  # noqa: BLE001 - best effort: a job may end meanwhile
                        pass


def make_launcher(name: str, jobs: int, slurm: SlurmSettings | None = None) -> Launcher:
    """The launcher called ``name`` (one of :data:`LAUNCHERS`)."""
    if name not in LAUNCHERS:
        raise ValueError(f"unknown launcher {name!r}; expected one of: {', '.join(LAUNCHERS)}")
    if name == "local":
        return InProcess() if jobs == 1 else ProcessPool(jobs)
    return Submitit(slurm or SlurmSettings(), local=name == "local-submitit")


def _one_line(exc: BaseException, where: str) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    # submitit's FailedJobError carries the job's traceback: its last line names the error.
    text = lines[-1].strip() if lines else ""
    return f"{where} failed: {type(exc).__name__}" + (f": {text[:300]}" if text else "")
