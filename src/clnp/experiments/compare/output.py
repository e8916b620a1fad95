"""A comparison's own files in ``OUT``: the table as JSON and Markdown, and the plot; written together, atomically."""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import atomic_write_text

JSON_NAME = "comparison.json"
MARKDOWN_NAME = "comparison.md"
PLOT_NAME = "accuracy_per_task.png"
OUTPUT_NAMES = (JSON_NAME, MARKDOWN_NAME, PLOT_NAME)


def write_outputs(summary: dict, out: Path) -> None:
    """Write ``comparison.json``, ``comparison.md`` and ``accuracy_per_task.png`` of ``summary`` into ``out``."""
    from .plot import plot
    from .tables import markdown_table

    atomic_write_text(out / JSON_NAME, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / MARKDOWN_NAME, markdown_table(summary))
    plot(summary, out / PLOT_NAME)


def tabulated(out: Path) -> set[tuple[str, int]]:
    """(method, seed) of every run in the comparison table already in ``out``."""
    path = out / JSON_NAME
    if not path.is_file():
        return set()
    try:
        summary = json.loads(path.read_text())
        return {(m, int(s)) for m, info in summary.get("methods", {}).items() for s in info.get("seeds", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()
