"""A run's epoch log, ``OUT/log.csv``: one row per training epoch, written as the run goes, read by the report."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from .run_files import LOG

LOG_COLUMNS = ("task", "phase", "epoch", "loss", "val_accuracy", "seconds")


class EpochLog:
    """``log.csv`` of a run directory, one flushed row per epoch (``log(row)``; ``log.close()`` at the end).

    A resumed run keeps the rows of the tasks before ``keep_before_task`` and drops the rest (the task
    it was killed in is learned again).
    """

    def __init__(self, directory: Path, keep_before_task: int) -> None:
        from .checkpoint import atomic_write_text

        self.path = directory / LOG
        kept: list[dict] = []
        if keep_before_task > 0 and self.path.is_file():
            with open(self.path, newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row.get("task") or 0) < keep_before_task]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)  # the file just written, never a link
        self._fh = open(fd, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._fh, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")

    def __call__(self, row: dict) -> None:
        self._writer.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_log(run_dir: str | Path) -> list[dict] | None:
    """The per-epoch rows of ``log.csv`` (task, phase, epoch, loss, val_accuracy); ``None`` without one.

    Rows with a missing or non-numeric task, epoch or loss are skipped: a log cut short by a killed
    run still plots up to its last complete row.
    """
    path = Path(run_dir) / LOG
    if not path.is_file():
        return None
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            try:
                row = {"task": int(raw["task"]), "phase": str(raw.get("phase") or "train"),
                       "epoch": int(raw["epoch"]), "loss": float(raw["loss"])}
                val = raw.get("val_accuracy")
                row["val_accuracy"] = float(val) if val not in (None, "") else math.nan
            except (KeyError, TypeError, ValueError):
                continue
            rows.append(row)
    return rows
