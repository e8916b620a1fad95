"""Capacity arithmetic: how fast each layer's free units are spent, and how many more tasks fit.

Pure counting on the per-task unit counts a learner reports; nothing here touches a network.
"""

from __future__ import annotations

from collections.abc import Sequence


def forecast(owned: Sequence[Sequence[int]], free: Sequence[int], names: Sequence[str]) -> dict:
    """After the tasks of ``owned`` (per task, per layer: the units it kept), with ``free`` units left per layer.

    Per layer: ``free``, ``units_per_task`` (the mean over the tasks so far) and ``tasks_that_fit``
    (``floor(free / units_per_task)``; None when no task kept a unit there, i.e. never fills); and
    ``fills_first``, the layer that fits the fewest further tasks (None when none ever fills).
    """
    n = len(owned)
    layers = []
    for i, name in enumerate(names):
        rate = sum(task[i] for task in owned) / n if n else 0.0
        fit = int(free[i] // rate) if rate > 0 else None
        layers.append({"layer": name, "free": int(free[i]), "units_per_task": rate, "tasks_that_fit": fit})
    filling = [row for row in layers if row["tasks_that_fit"] is not None]
    first = min(filling, key=lambda row: row["tasks_that_fit"])["layer"] if filling else None
    return {"after_task": n - 1, "layers": layers, "fills_first": first}


def width_for(width: int, free: int, units_per_task: float, remaining: int) -> int:
    """The width a layer of ``width`` units (``free`` of them free) needs for ``remaining`` more tasks that
    keep ``units_per_task`` units each."""
    return width + max(0, int(-(-(remaining * units_per_task - free) // 1)))


__all__ = ["forecast", "width_for"]
