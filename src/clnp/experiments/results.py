"""The results of a run, ``OUT/results.json``: built once, written atomically, read back and checked.

:class:`RunResults` holds the JSON object the file holds, key order included, so a file read and written
again is the same bytes, and runs written by earlier versions load as they are. The same builder makes the
results of a finished run (the runner, at its end) and of an unfinished one (from its checkpoint's
metadata, for ``clnp report``): accuracy rows below the diagonal, ACC, BWT, capacity and per-task reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .identity import same_run
from .metrics import average_accuracy, backward_transfer, lower_triangle
from .run_files import CHECKPOINT_DIR, CHECKPOINT_META, CONFIG, RESULTS

_CAPACITY_LISTS = ("owned_by_task", "free_after_task", "reused_by_task")


@dataclass
class RunResults:
    """One run's results; ``data`` is the JSON object of ``results.json`` (see :meth:`build` for its keys)."""

    data: dict
    source: str = RESULTS
    """Where they were read from, for messages."""

    @classmethod
    def build(cls, config: dict, rows: list[list[float]], n_tasks: int, capacity: list, tasks: list[dict],
              train_seconds: float | None, resumed_at: list[int], forecast: list | None = None,
              unfinished: bool = False, source: str = RESULTS, environment: dict | None = None) -> RunResults:
        """The results of a run of ``config`` (its resolved configuration as a dict) that has finished ``rows``
        of its ``n_tasks`` tasks: ``rows[i]`` holds the test accuracies on tasks 0..i after learning task i.
        ``forecast`` None leaves out ``capacity_forecast`` (a checkpoint does not hold it); ``unfinished`` adds
        ``unfinished: {finished_tasks, n_tasks}``; ``environment`` (what the run ran on,
        :func:`~clnp.experiments.environment.describe_environment`) is written after ``config`` where given."""
        matrix = lower_triangle(rows, n_tasks)
        data: dict[str, Any] = {
            "benchmark": config.get("benchmark", "?"), "method": config.get("method", "?"), "n_tasks": n_tasks,
            "seed": config.get("seed"), "model": config.get("model"), "accuracy_matrix": matrix,
            "average_accuracy": average_accuracy(matrix), "backward_transfer": backward_transfer(matrix),
            "capacity": capacity,
        }
        if forecast is not None:
            data["capacity_forecast"] = forecast
        data.update(tasks=tasks, train_seconds=train_seconds, resumed_at_tasks=resumed_at, config=config)
        if environment is not None:
            data["environment"] = environment
        if unfinished:
            data["unfinished"] = {"finished_tasks": len(rows), "n_tasks": n_tasks}
        return cls(data, source)

    @property
    def config(self) -> dict:
        """The resolved configuration the run recorded ({} if none)."""
        config = self.data.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def finished(self) -> bool:
        """Whether these are the results of every task of the run (what a finished run's ``results.json`` holds)."""
        matrix = self.data.get("accuracy_matrix")
        return isinstance(matrix, list) and len(matrix) == self.data.get("n_tasks") and "unfinished" not in self.data

    def to_dict(self) -> dict:
        return self.data

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2) + "\n"

    def check(self) -> RunResults:
        """These results, if they have the shape ``clnp run`` writes; else ``ValueError`` naming the problem."""
        check_results(self.data, self.source)
        return self

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/results.json`` atomically, never through a link."""
        from . import checkpoint  # its atomic write, looked up when called

        path = Path(directory) / RESULTS
        checkpoint.atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def read(cls, path: str | Path) -> RunResults:
        """The checked results in ``path`` (a ``results.json``); ``FileNotFoundError`` or ``ValueError``."""
        return cls(read_object(Path(path)), str(path)).check()

    @classmethod
    def from_checkpoint(cls, directory: str | Path) -> RunResults:
        """The results of the tasks an unfinished run (stopped, killed) in ``directory`` has finished.

        The checkpoint is verified (checksums) but no model is built: the accuracy rows, per-task reports and
        capacity are in its metadata.
        """
        from .checkpoint import CheckpointError, load_checkpoint

        directory = Path(directory)
        for attempt in range(3):  # a run still writing may replace its checkpoint between our two reads
            try:
                _, meta, _ = load_checkpoint(directory / CHECKPOINT_DIR)
                break
            except CheckpointError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        found = meta.get("config")
        config: dict = found if isinstance(found, dict) else {}
        rows = meta.get("accuracy_rows") or []
        if not rows:
            raise ValueError(f"{directory}: the checkpoint holds no finished task")
        n_tasks = int(meta.get("n_tasks") or config.get("tasks") or len(rows))
        results = cls.build(config, rows, n_tasks, meta.get("capacity") or [], meta.get("task_info") or [],
                            meta.get("train_seconds"), meta.get("resumed_at_tasks", []), unfinished=True,
                            source=str(directory / CHECKPOINT_DIR / CHECKPOINT_META),
                            environment=meta["environment"] if isinstance(meta.get("environment"), dict) else None)
        return results.check()

    @classmethod
    def load(cls, run_dir: str | Path) -> tuple[RunResults, Path]:
        """The results in a run directory (or of the ``results.json`` given), finished or, without a
        ``results.json``, from the checkpoint of an unfinished run; and the run directory."""
        path = Path(run_dir)
        if not path.exists():
            raise FileNotFoundError(f"no such run directory: {path}")
        if not path.is_dir():
            return cls.read(path), path.parent
        if (path / RESULTS).is_file():
            return cls.read(path / RESULTS), path
        if (path / CHECKPOINT_DIR / CHECKPOINT_META).exists():
            return cls.from_checkpoint(path), path
        raise FileNotFoundError(
            f"no {RESULTS} in {path}: expected a run directory written by 'clnp run --out {path}'"
            " (a run that stopped before finishing its first task has nothing to report)")


def read_object(path: Path) -> dict:
    """The JSON object in the file ``path``; ``ValueError`` for anything else (one line, naming the file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "was the run interrupted while writing it?") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text file; expected the JSON written by 'clnp run'") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}; expected an object with 'accuracy_matrix'")
    return data


def check_results(results: object, source: str = RESULTS) -> None:
    """Raise ``ValueError`` naming the problem unless ``results`` has the shape ``clnp run`` writes."""
    if not isinstance(results, dict):
        raise ValueError(f"{source} holds a JSON {type(results).__name__}; expected an object with 'accuracy_matrix'")
    for key in ("benchmark", "method", "accuracy_matrix"):
        if key not in results:
            raise ValueError(f"{source} has no '{key}' key; expected the results written by 'clnp run'")
    matrix = results["accuracy_matrix"]
    if not isinstance(matrix, list) or not matrix or not all(isinstance(row, list) for row in matrix):
        raise ValueError(f"{source}: 'accuracy_matrix' must be a non-empty list of rows, got {matrix!r:.80}")
    for i, row in enumerate(matrix):
        if len(row) != len(matrix[0]):
            raise ValueError(f"{source}: accuracy_matrix row {i} has {len(row)} entries, row 0 has {len(matrix[0])}")
        for v in row:
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1):
                raise ValueError(f"{source}: accuracy_matrix row {i} holds {v!r}; expected fractions in [0, 1] or null")
    for row in results.get("capacity") or []:
        missing = [k for k in ("layer", "units", *_CAPACITY_LISTS) if k not in row]
        if missing:
            raise ValueError(f"{source}: a capacity row lacks {', '.join(missing)}")
        if len({len(row[k]) for k in _CAPACITY_LISTS}) != 1:
            raise ValueError(f"{source}: capacity row {row['layer']!r} has lists of different lengths; "
                             "expected one entry per task in owned_by_task, free_after_task, reused_by_task")


# ------------------------------------------------------------------------------- a run directory's state
def finished_run(out: str | Path) -> dict | None:
    """The results of the finished run in ``out`` (its ``results.json`` covers every task), else None."""
    try:
        results = RunResults(read_object(Path(out) / RESULTS))
    except (OSError, ValueError):
        return None
    return results.data if results.finished else None


def unfinished_run(out: str | Path) -> bool:
    """Whether ``out`` holds a run that stopped before its end (a checkpoint but no ``results.json``)."""
    from .checkpoint import has_checkpoint

    out = Path(out)
    return has_checkpoint(out / CHECKPOINT_DIR) and not (out / RESULTS).is_file()


def finished_run_of(out: str | Path, config: Any) -> dict | None:
    """The results in ``out`` if it holds a finished run of the same results as ``config`` (a ``RunConfig``)."""
    done = finished_run(out)
    if done is None or not isinstance(done.get("config"), dict):
        return None
    return done if same_run(asdict(config.check()), done["config"]) else None


def recorded_config(directory: str | Path) -> dict | None:
    """The resolved configuration of the run in ``directory`` (finished or not), or None without one."""
    from .config_sources import read_run_config

    directory = Path(directory)
    try:
        config = RunResults(read_object(directory / RESULTS)).data.get("config")
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict):
        return config
    if (directory / CONFIG).is_file():
        try:
            return asdict(read_run_config(directory / CONFIG).resolved())
        except (OSError, ValueError):
            return None
    return None
