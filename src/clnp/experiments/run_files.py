"""Every file name of a run directory, in one place: what ``clnp run``, ``clnp report`` and ``clnp export`` write.

::

    OUT/
      .clnp-run          MARKER          this directory holds a clnp run
      .clnp.lock         LOCK            held while a run writes the directory (:mod:`.run_lock`)
      config.yaml        CONFIG          the resolved configuration
      log.csv            LOG             one row per training epoch (:mod:`.epoch_log`)
      results.json       RESULTS         the results, at the end (:class:`~.results.RunResults`)
      *.png              PLOTS           ``clnp report``'s plots
      checkpoint/        CHECKPOINT_DIR  meta.json and tensors-NNNN.safetensors (:mod:`.checkpoint`)
      export/            EXPORT_DIR      task-N.pt2 / .pt / .onnx / .onnx.data / .safetensors / .json (``clnp export``)
      .NAME.tmp-PID                      an atomic write in progress (at the top or in either folder)

:func:`owned` is the one test of whether clnp wrote a file: ``--overwrite`` removes exactly these files,
:func:`~.rundir.inspect` calls every other one foreign, and a symbolic link at one of these names is refused.
"""

from __future__ import annotations

import re
from pathlib import PurePath

MARKER = ".clnp-run"
LOCK = ".clnp.lock"
CONFIG = "config.yaml"
LOG = "log.csv"
RESULTS = "results.json"
PLOTS = {"accuracy_matrix": "accuracy_matrix.png", "task_accuracy": "task_accuracy.png",
         "capacity": "capacity.png", "training": "training.png", "forecast": "capacity_forecast.png"}
"""``clnp report``'s plots, by what they show."""
CHECKPOINT_DIR = "checkpoint"
EXPORT_DIR = "export"
CHECKPOINT_META = "meta.json"
"""The checkpoint's metadata: its commit point, written last."""

TOP_FILES = frozenset({MARKER, LOCK, CONFIG, LOG, RESULTS, *PLOTS.values()})
"""File names clnp writes at the top of a run directory."""
CHECKPOINT_FILES = re.compile(r"^(meta\.json|tensors-\d+\.safetensors)$")
EXPORT_FILES = re.compile(r"^task-\d+\.(pt|pt2|onnx|onnx\.data|safetensors|json)$")
FOLDERS = {CHECKPOINT_DIR: CHECKPOINT_FILES, EXPORT_DIR: EXPORT_FILES}
"""The folders clnp writes in a run directory, and the names of the files it writes in each."""
TEMPORARY = re.compile(r"^\..+\.tmp-\d+$")
"""A temporary file of an atomic write (``.results.json.tmp-PID``)."""


class RunDirError(ValueError):
    """A run directory clnp must not write: it holds another run, files clnp did not write, or is locked."""


def checkpoint_tensor_name(step: int) -> str:
    """The checkpoint's tensor file after ``step`` finished tasks."""
    return f"tensors-{step:04d}.safetensors"


def owned(relative: str | PurePath) -> bool:
    """Whether clnp writes a file at ``relative`` (a path inside a run directory; the folders themselves aside)."""
    parts = PurePath(relative).parts
    if len(parts) == 1:
        return parts[0] in TOP_FILES or bool(TEMPORARY.match(parts[0]))
    if len(parts) == 2 and parts[0] in FOLDERS:
        return bool(FOLDERS[parts[0]].match(parts[1]) or TEMPORARY.match(parts[1]))
    return False
