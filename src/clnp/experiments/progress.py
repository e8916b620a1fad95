"""What a run tells while it runs: each epoch's row into ``log.csv`` and to the caller's ``on_epoch``, and with
progress on, lines on stderr (through tqdm on a terminal, so that a bar being drawn is not broken)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict

from ..methods import get
from .config import RunConfig
from .epoch_log import EpochLog

EpochCallback = Callable[[dict], None]
"""Called with each epoch's row (``task``, ``phase``, ``epoch``, ``loss``, ``val_accuracy``, ``seconds``) once
it is in ``log.csv``; what it raises stops the run there, as an interrupt would."""


class EpochReporter:
    """After every epoch: the row into ``log.csv``, then the caller's ``on_epoch``, and with progress on a line on
    stderr where there is no bar to show it (stderr not a terminal), plus a line when CLNP's threshold search
    starts (it shows no bar)."""

    def __init__(self, log: EpochLog | None, cfg: RunConfig, n_tasks: int, on_epoch: EpochCallback | None) -> None:
        self.log, self.cfg, self.n_tasks, self.on_epoch = log, cfg, n_tasks, on_epoch
        self.plain = cfg.progress and not sys.stderr.isatty()

    def __call__(self, row: dict) -> None:
        if self.log is not None:
            self.log(row)
        if self.on_epoch is not None:
            self.on_epoch(row)
        if not self.cfg.progress:
            return
        task, phase, epoch = int(row["task"]), row["phase"], int(row["epoch"])
        total = self.cfg.epochs if phase == "train" else self.cfg.finetune_epochs
        if self.plain:
            _plain_line(f"task {task + 1}/{self.n_tasks} {phase} epoch {epoch}/{total}: loss {row['loss']:.4f}, "
                        f"validation {100 * row['val_accuracy']:.1f} % ({row['seconds']:.1f} s)")
        note = get(self.cfg.method).after_training
        if note and phase == "train" and epoch == total:
            say(f"task {task + 1}/{self.n_tasks}: {note.format(**asdict(self.cfg))}")


def say(line: str) -> None:
    """A progress line on stderr; on a terminal through tqdm, so that it does not break a bar being drawn."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        _plain_line(line)


def _plain_line(line: str) -> None:
    """``line`` and its newline in one write: ``print`` writes them apart, and a signal handled between the two
    (``clnp run``'s SIGTERM or Ctrl-C message) would land on the progress line instead of its own."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def over_budget_text(info: dict) -> str:
    """For the progress line: where a task kept more units than its budget (the margin allowed no fewer)."""
    over, budget = info.get("over_budget") or [], info.get("budget") or []
    parts = [f"layer {i}: {b + o} units for a budget of {b}"
             for i, (o, b) in enumerate(zip(over, budget, strict=False)) if o > 0]
    return f"; over its unit budget ({', '.join(parts)}): the margin allowed no fewer" if parts else ""


def say_task_learned(i: int, n: int, name: str, info: dict, row: list[float]) -> None:
    """The line after task ``i`` of ``n`` is learned: its test accuracy and the mean over the tasks so far."""
    mean = sum(row) / len(row)
    say(f"task {i + 1}/{n} ({name}) learned in {info['wall_seconds']:.1f} s: test accuracy "
        f"{100 * row[-1]:.1f} %, mean over the {i + 1} task{'s' if i else ''} so far "
        f"{100 * mean:.1f} %{over_budget_text(info)}")
