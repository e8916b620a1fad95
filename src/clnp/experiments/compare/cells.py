"""The runs of a comparison as cells (method and seed, or a tuning trial), and running them: each reused where it
finished, else handed to the launcher, with a progress line per run (done of total, time left)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import tuning as tuning_
from ..launchers import InProcess, Launcher
from ..results import recorded_config
from ..run_files import RESULTS
from ..runner import RunConfig
from .config import CompareConfig
from .execution import ExecuteRun, RunJob, execute_run
from .reuse import resumable, reusable


@dataclass
class Cell:
    """One run of the grid or of the tuning: its key, a name for the progress lines, config and directory."""

    key: tuple
    name: str
    config: RunConfig
    directory: Path


class Progress:
    def __init__(self, total: int, workers: int) -> None:
        self.total, self.workers, self.done = total, workers, 0
        self.began = time.perf_counter()
        self.seconds: list[float] = []

    def __str__(self) -> str:
        elapsed = time.perf_counter() - self.began
        left = self.total - self.done
        eta = ""
        if self.seconds and left and self.workers:
            per_run = sum(self.seconds) / len(self.seconds)
            eta = f", about {clock(per_run * -(-left // min(self.workers, left)))} left"
        return f"[{self.done}/{self.total} done, {clock(elapsed)} elapsed{eta}]"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def intent(cell: Cell, overwrite: bool) -> str:
    if resumable(cell.directory, cell.config):
        return f"resuming the unfinished run in {cell.directory}"
    replace = overwrite and recorded_config(cell.directory) is not None
    return f"running into {cell.directory}" + (" (replacing the run of other settings there)" if replace else "")


def run_cells(cells: Sequence[Cell], launcher: Launcher, config: CompareConfig, log: Callable[[str], None],
               what: str = "") -> Iterator[tuple[Cell, dict | None, str | None]]:
    """Every cell's results: reused where finished, else (unless ``--no-run``) run through the launcher.

    Yields ``(cell, results, None)`` for a finished run, ``(cell, None, error)`` for one that could not
    finish, as they come (reused ones first); cells left out under ``--no-run`` are not yielded.
    """
    progress = Progress(len(cells), launcher.workers)
    todo = []
    for cell in cells:
        results = reusable(cell.directory, cell.config)
        if results is not None:
            progress.done += 1
            log(f"{what}{progress} {cell.name}: reusing {cell.directory / RESULTS}")
            yield cell, results, None
        elif not config.run_missing:
            progress.done += 1
            log(f"{what}{progress} {cell.name}: no finished run in {cell.directory}, left out")
        else:
            todo.append(cell)
    if not todo:
        return
    serial = isinstance(launcher, InProcess)
    if not serial:
        log(f"{what}{len(todo)} run{'s' if len(todo) != 1 else ''} to do, {launcher.describe()}")

    def started(i: int, where: str) -> None:
        if serial:
            log(f"{what}{progress} {todo[i].name}: {intent(todo[i], config.overwrite)}")
        elif where.startswith("job"):
            log(f"{what}{todo[i].name}: {where} ({intent(todo[i], config.overwrite)})")

    jobs = [RunJob(cell.config, str(cell.directory), config.overwrite) for cell in todo]
    for i, outcome in launcher.map(execute_run if serial else ExecuteRun(), jobs, started):
        cell = todo[i]
        progress.done += 1
        value: dict[str, Any] = outcome.value if outcome.error is None else {"error": outcome.error, "notes": []}
        for note in value["notes"]:
            log(f"{what}{cell.name}: {note}")
        if "seconds" in value:
            progress.seconds.append(value["seconds"])
        if value["error"] is not None:
            log(f"{what}{progress} {cell.name}: stopped: {value['error']}")
            yield cell, None, value["error"]
            continue
        results = value["results"]
        log(f"{what}{progress} {cell.name}: ACC {100 * results['average_accuracy']:.2f}%, "
            f"BWT {100 * results['backward_transfer']:+.2f} ({value['seconds']:.0f} s)")
        yield cell, results, None


def grid_cells(config: CompareConfig, out: Path, methods: Sequence[str], chosen: dict[str, dict]) -> list[Cell]:
    """The evaluation runs of ``methods``, seed-major (a cut-off comparison still has every method's first seeds)."""
    cells = []
    for seed in range(config.seeds):
        for method in config.methods:
            if method in methods:
                rc = tuning_.with_settings(config.run_config(method, seed), chosen.get(method, {}))
                cells.append(Cell((method, seed), f"{method} seed {seed}", rc, out / method / f"s{seed}"))
    return cells
