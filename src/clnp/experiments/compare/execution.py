"""One run of a comparison, in whichever process a launcher runs it: reuse, resume or run it in its directory.

Every launcher (:mod:`clnp.experiments.launchers`) calls :func:`execute_run` on a :class:`RunJob`, in this
process, a pool worker or a Slurm job, so the runs compute the same numbers wherever they execute.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ...engine.learner import CapacityError
from .. import runner
from ..checkpoint import CheckpointError
from ..launchers import worker_device
from ..results import recorded_config
from ..runner import RunConfig
from .reuse import resumable, reusable


@dataclass
class RunJob:
    """One run as a launcher hands it to :func:`execute_run`: its configuration and run directory, and
    whether a run of other settings there may be replaced."""

    config: RunConfig
    directory: str
    overwrite: bool = False


def execute_run(job: RunJob) -> dict:
    """Reuse, resume or run one run in its directory; what every launcher calls, in whichever process.

    What to do is decided from the directory each time it is called (a requeued Slurm job resumes):
    a finished run of the same configuration is reused, an unfinished one resumed, otherwise the run
    starts (replacing a run of other settings only with ``job.overwrite``). Returns ``{"results",
    "error", "did", "notes", "seconds"}``; a run the method cannot finish (``CapacityError``, a diverged
    loss) comes back as ``error``, not as an exception, so that the others go on.
    """
    began = time.perf_counter()
    directory = Path(job.directory)
    rc = job.config
    device = worker_device(rc.device)  # in a pool worker: the worker's own GPU
    if device != rc.device:
        rc = dataclasses.replace(rc, device=device)
    notes: list[str] = []
    did = "ran"
    try:
        results = reusable(directory, rc)
        if results is not None:
            did = "reused"
        elif resumable(directory, rc):
            did = "resumed"
            try:
                results = runner.resume(directory, progress=False, device=rc.device)
            except (CheckpointError, ValueError) as exc:
                notes.append(f"cannot resume ({exc}); running it again")
                did = "ran"
                results = runner.run(rc, directory, overwrite=True)
        else:
            replace = job.overwrite and recorded_config(directory) is not None
            results = runner.run(rc, directory, overwrite=True) if replace else runner.run(rc, directory)
    except (CapacityError, FloatingPointError) as exc:  # the method cannot finish this stream
        return {"results": None, "error": str(exc), "did": did, "notes": notes,
                "seconds": time.perf_counter() - began}
    return {"results": results, "error": None, "did": did, "notes": notes, "seconds": time.perf_counter() - began}


class ExecuteRun:
    """:func:`execute_run` as an object that submitit can requeue: when a Slurm job reaches its time limit,
    submitit calls ``checkpoint`` and submits the same job again, which resumes the run from its last
    finished task (the run directory's checkpoint)."""

    def __call__(self, job: RunJob) -> dict:
        return execute_run(job)

    def checkpoint(self, job: RunJob) -> object:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, job)
