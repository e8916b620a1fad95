"""Whether a comparison's run directory already holds its run: finished (reused) or unfinished (resumed).

"The same run" is :func:`clnp.experiments.identity.same_run`, the rule ``clnp run`` and ``--resume`` use.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..identity import same_run
from ..results import finished_run, recorded_config, unfinished_run
from ..runner import RunConfig


def reusable(directory: Path, config: RunConfig) -> dict | None:
    """The results in ``directory`` if it holds the finished run of ``config``."""
    results = finished_run(directory)
    if results is None or not same_run(asdict(config.resolved()), results.get("config") or {}):
        return None
    return results


def resumable(directory: Path, config: RunConfig) -> bool:
    """Whether ``directory`` holds an unfinished run of ``config`` that can continue from a checkpoint."""
    if not unfinished_run(directory):
        return False
    theirs = recorded_config(directory)
    return theirs is not None and same_run(asdict(config.resolved()), theirs)
