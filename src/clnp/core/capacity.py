"""Capacity arithmetic: the plan's budget per task and layer, how fast free units are spent, how many more tasks fit.

Counting on owner vectors and the per-task unit counts a learner reports; nothing here touches a network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .partition import FREE


def forecast(owned: Sequence[Sequence[int]], free: Sequence[int], names: Sequence[str]) -> dict:
    """After the tasks of ``owned`` (per task, per layer: the units it kept), with ``free`` units left per layer.

    Per layer: ``free``, ``units_per_task`` (the mean over the tasks so far) and ``tasks_that_fit``
    (``floor(free / units_per_task)``; None when no task kept a unit there, i.e. never fills); and
    ``fills_first``, the layer that fits the fewest further tasks (None when none ever fills).
    """
    n = len(owned)
    layers: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        rate = sum(task[i] for task in owned) / n if n else 0.0
        fit = int(free[i] // rate) if rate > 0 else None
        layers.append({"layer": name, "free": int(free[i]), "units_per_task": rate, "tasks_that_fit": fit})
    filling = [row for row in layers if row["tasks_that_fit"] is not None]
    first = min(filling, key=lambda row: row["tasks_that_fit"])["layer"] if filling else None
    return {"after_task": n - 1, "layers": layers, "fills_first": first}


OPEN_HORIZON = 4
"""With no expected number of tasks, the plan assumes at least this many tasks to come (this one included)."""


RESERVE_SHARE = 0.02
"""With a known number of tasks, the plan keeps this share of each layer's width (at least one unit) out of the
tasks' shares: the last task does not take every free unit (permuted-digits, 10 tasks, before annealing: task 9 took
9 of the last 10 units of layer 1), so a stream that runs longer than announced, or a task over its budget, still
finds room. A few units, not a task's share: one task's share in reserve left a tenth of every layer unused after
ten tasks, and each task a tenth fewer units (bench/RESULTS.md, "The capacity plan", fourth session)."""


def reserve_units(width: int, expected: int | None) -> int:
    """The units of a layer of ``width`` that the plan keeps in reserve: :data:`RESERVE_SHARE` of it (at least one)
    with a known number of tasks; none open-ended, where the doubling rule already leaves most units to come."""
    return 0 if expected is None else max(1, math.ceil(RESERVE_SHARE * width))


def tasks_to_plan_for(expected: int | None, done: int) -> int:
    """How many tasks, the coming one included, share the free units.

    With ``expected`` tasks in the stream: those not yet learned (at least 1, should a stream run past its
    announced length; the reserve is kept apart, :func:`reserve_units`). Open-ended (``expected`` None): as
    many again as have been learned, at least :data:`OPEN_HORIZON` (the doubling rule of online planning: a stream is
    assumed to go on as long as it has gone), so every task leaves most of what is free to those after it and the
    free units never run out at a geometric pace.
    """
    if expected is not None:
        return max(1, expected - done)
    return max(OPEN_HORIZON, done + 1)


SHARES = ("equal", "declining")
"""How the plan may divide the free units among the tasks still to come (:func:`allotments`). ``equal`` is CLNP's
default, by measurement (bench/RESULTS.md, "The capacity plan": ``declining`` gains on split-fashion-mnist, where
later tasks reuse old units, and loses on the permuted streams, where they do not)."""


def allotments(free: int, tasks_left: int, share: str = "equal") -> list[int]:
    """How ``free`` units of a layer would be divided among the ``tasks_left`` tasks still to come, the coming one
    first, if each kept its allotment (the plan recomputes them before every task, so what a task leaves unspent
    passes to the ones after it).

    ``equal``: the same for each, ``free // tasks_left``, the remainder one unit each to the first tasks (so a layer
    of 100 units gives 10 tasks 10 each, not 9 each and 10 unused). ``declining``: falling linearly from the coming
    task to the last (weights ``tasks_left, ..., 1``: about twice the equal share for the coming task, a small one
    for the last), for streams whose later tasks reuse old units and need fewer new ones.
    """
    if tasks_left < 1:
        raise ValueError(f"tasks_left must be >= 1, got {tasks_left}")
    if share not in SHARES:
        raise ValueError(f"share must be one of {', '.join(map(repr, SHARES))}, got {share!r}")
    free = max(0, int(free))
    if share == "equal":
        each, extra = divmod(free, tasks_left)
        return [each + (i < extra) for i in range(tasks_left)]
    weights = list(range(tasks_left, 0, -1))
    total = sum(weights)
    return [free * w // total for w in weights]


def unit_budget(free: Sequence[int], tasks_left: int, share: str = "equal",
                reserve: Sequence[int] | None = None) -> list[int]:
    """Per layer, the most new units the coming task may keep: its allotment (:func:`allotments`) of the free
    units beyond the ``reserve`` (:func:`reserve_units`) among the ``tasks_left`` tasks (the coming one included),
    at least one unit where any is free.

    Old units a task reads cost nothing and are not counted.
    """
    reserve = [0] * len(free) if reserve is None else reserve
    return [max(1, allotments(f - r, tasks_left, share)[0]) if f > 0 else 0
            for f, r in zip(free, reserve, strict=True)]


TRAIN_HEADROOM = 4.0
"""With a plan but no annealing, a task begins training on this many times its budget of free units (the rest stay
silent for later tasks); annealed, it trains on every free unit (:func:`units_to_train`). Measured before annealing
(bench/RESULTS.md, "The capacity plan"): on permuted-fashion-mnist, ``mlp:1000,1000``, task 0 scores
85.4 % at 2, 87.2 % at 4 and 88.4 % on every free unit (where it keeps 275 units of layer 1 for a budget of 90);
on permuted-digits (10 tasks, ``mlp:256,256``) 96.98 % at 2 and 96.65 % at 4 (96.59 % with the final cap), every
task learned either way. Annealed (sixth session, seed 0), the first two tasks of that permuted stream score 87.4
and 87.8 % trained on 4x, 88.0 and 88.2 % on up to half the free units, 88.4 and 88.5 % on every free unit, where
they keep 96-98 units of layer 1 either way; the whole stream 87.85 % against 87.25 %."""
MIN_TRAINED = 8
"""... and on at least this many (where as many are free): a task with a budget of one unit still trains a few."""
LEAVE_SHARE = 0.5
"""... and leaves at least this share of its allotment (at least one unit) free for every later task."""


def units_to_train(owners: Sequence[Tensor], budget: Sequence[int], tasks_left: int,
                   share: str = "equal", annealed: bool = False) -> list[Tensor]:
    """Per layer, boolean per unit: the free units the coming task trains.

    ``annealed`` (the task is pruned to its budget while it trains, CLNP's ``anneal``): every free unit of a layer
    whose budget is at least :data:`MIN_TRAINED` (annealing's floor, so it reaches the budget). The units annealed
    away are free again for the next tasks, and the more a task trains before it is pruned, the better the units
    it keeps (:data:`TRAIN_HEADROOM`'s measurements).

    Otherwise (and in a layer whose budget is under annealing's floor, where the search has the last word), in
    index order: ``TRAIN_HEADROOM`` times its budget (at least :data:`MIN_TRAINED`), but never so
    many that any of the other ``tasks_left - 1`` tasks would find fewer than :data:`LEAVE_SHARE` of its allotment
    (:func:`allotments`; at least one unit each) still free; always at least one.

    A task trained on every free unit spreads over them, and the search cannot bring it back to its budget within
    the margin (permuted-digits, ``mlp:256,256``: task 0 kept 98 and 123 units for a budget of 25, and the stream
    stopped at task 5). Free units are interchangeable (re-initialised before each task), so which ones a task
    trains does not matter; how many does. A task never keeps more units than it trained, so the cap holds even
    where the margin does not let the search meet the budget: every later task finds free units to train, and
    can read every old one. With one unit each, the last tasks of a small network trained for few epochs learned
    nothing (``mlp:64,64``, 3 tasks of split-digits in bf16, 4 epochs: task 2 stayed at chance, 55 % against 60 %
    for the most frequent class); half a budget each leaves them enough.
    """
    chosen = []
    for owner, b in zip(owners, budget, strict=True):
        if annealed and b >= MIN_TRAINED:
            chosen.append(owner == FREE)
            continue
        free = torch.nonzero(owner == FREE).flatten()
        leave = sum(max(1, int(a * LEAVE_SHARE)) for a in allotments(free.numel(), tasks_left, share)[1:])
        n = min(free.numel(), max(MIN_TRAINED, math.ceil(TRAIN_HEADROOM * b)), max(1, free.numel() - leave))
        mask = torch.zeros_like(owner, dtype=torch.bool)
        mask[free[:n]] = True
        chosen.append(mask)
    return chosen


PULL_BINDS = 0.5
"""A layer's L1 pull is relaxed only where no earlier task kept this share of its budget there (:func:`pull_scale`):
the budget did not bind, so the pull was idling units nobody will use. Every stream whose tasks fill their budgets
(the small-network protocol, the wide permuted stream, permuted-digits with 10 and 50 tasks: the tasks keep 74-100 %
of their budgets) keeps the full pull and its exact results."""
SLACK_PULL = 1 / 3
"""The least share of the L1 pull a layer is relaxed to (:func:`pull_scale`), where earlier tasks kept a sixth of
their budgets or less. A third of the pull on split-fashion-mnist's ``mlp:1000,1000`` (whose tasks keep 0-43 of
196-908 units of layer 0) gave 99.35 % against 99.29 % over 5 seeds, but cost the binding permuted-digits stream 0.74
points applied everywhere (bench/RESULTS.md, "The capacity plan", thirteenth and fourteenth sessions)."""


def pull_scale(kept: Sequence[Sequence[int]], budgets: Sequence[Sequence[int] | None], n_layers: int) -> list[float]:
    """Per layer, the share of the L1 pull the coming task trains under, from what the earlier tasks needed there.

    ``kept`` and ``budgets``: per earlier task, per layer, the units it kept and its budget (None: learned without a
    plan, not counted). A layer's need is the largest ``kept / budget`` of any earlier task (budgets of 0 not
    counted); the pull is ``need /`` :data:`PULL_BINDS`, between :data:`SLACK_PULL` and 1. The first task, and any
    layer where some task kept half its budget, get the full pull (exactly 1.0); a layer whose tasks kept a sixth
    of their budgets or less, a third of it. The pull makes a task's units idle so that they can be freed for the
    tasks to come; where the plan's budget leaves most units unused anyway, a weaker pull keeps the task's accuracy.
    """
    scales = []
    for i in range(n_layers):
        ratios = [k[i] / b[i] for k, b in zip(kept, budgets, strict=True) if b is not None and b[i] > 0]
        need = max(ratios) if ratios else PULL_BINDS
        scales.append(min(1.0, max(SLACK_PULL, need / PULL_BINDS)))
    return scales


def width_for(width: int, free: int, units_per_task: float, remaining: int) -> int:
    """The width a layer of ``width`` units (``free`` of them free) needs for ``remaining`` more tasks that
    keep ``units_per_task`` units each."""
    return width + max(0, int(-(-(remaining * units_per_task - free) // 1)))


__all__ = ["LEAVE_SHARE", "MIN_TRAINED", "OPEN_HORIZON", "PULL_BINDS", "RESERVE_SHARE", "SHARES", "SLACK_PULL",
           "TRAIN_HEADROOM", "allotments", "forecast", "pull_scale", "reserve_units", "tasks_to_plan_for",
           "unit_budget", "units_to_train", "width_for"]
