"""Hyper-parameter selection on a footing equal for every method (``clnp compare --tune TRIALS``).

Each compared method selects its own settings, with the same budget as every other method, on a
*tuning stream* that is not one of the evaluation streams: the same benchmark built with seed
:data:`TUNING_SEED` (1000), while the evaluation runs use seeds ``0..N-1``. For the split benchmarks
the class groups are fixed (pairs of classes in order); the seed changes the validation split carved
from each task's training data, the network's initialisation and the order of the minibatches, and on
the digits (which have no official test set) also which images are held out for testing. Every trial
is a full run of the tuning stream into ``OUT/tuning/METHOD/trial-K``; with ``tune_tasks=K``
(``--tune-tasks K``) the tuning stream is the first K tasks of that benchmark (Chaudhry et al. 2019
cross-validate on the first 3 tasks).

**Search spaces** (each method's declared ``tuning`` grid, :data:`SPACES`, plus the learning rate
:data:`LR_GRID` for every method) are grids: the trial settings of a method are the first ``TRIALS``
points of its grid in a seeded random order (the order depends only on the method's name, so ``--tune
5`` after ``--tune 3`` reuses the first three trials). A method whose grid has fewer points than
``TRIALS`` (``finetune``: the three learning rates) tries all of them; with ``TRIALS`` at most 3 every
method gets exactly ``TRIALS`` trials. A setting that the comparison fixes (``--lr``, ``--l1``,
``--margin``, an ``--option``, a preset or config file value) is kept as given and not searched.

**Criterion**: the average *validation* accuracy over all tasks of the tuning stream after its last
task (ACC computed on the validation splits instead of the test splits), evaluated here from the
trial's final checkpoint. The runner records test accuracy only; test accuracy would be the wrong
criterion: on MNIST, Fashion-MNIST and CIFAR the tuning stream's test split is the data set's
official test set, the very images the evaluation reports. The validation splits are carved from the
training sets and never enter an evaluation's test accuracy (on the digits, where train and test are
a seeded split of one pool of 1,797 images, a tuning validation image may be an evaluation test image
of another seed: the digits are a smoke test, not a published benchmark). The tuning stream's test
ACC is recorded beside it, for information. Ties go to the earlier trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import RunConfig

TUNING_SEED = 1000
"""The seed of the tuning stream (the evaluation seeds are ``0..seeds-1``, below it)."""

LR_GRID = (3e-4, 1e-3, 3e-3)
"""Learning rates tried for every method: the usual Adam range around its default 1e-3 (Kingma & Ba 2015)."""

class _Spaces(Mapping[str, dict[str, tuple[float, ...]]]):
    """Method -> the grid of its own settings, as its declaration gives it (:attr:`Method.tuning`)."""

    def __getitem__(self, method: str) -> dict[str, tuple[float, ...]]:
        from ..methods import METHODS

        if method not in METHODS:
            raise KeyError(method)
        return dict(METHODS[method].tuning)

    def __iter__(self) -> Iterator[str]:
        from ..methods import names

        return iter(names())

    def __len__(self) -> int:
        from ..methods import names

        return len(names())


SPACES: Mapping[str, dict[str, tuple[float, ...]]] = _Spaces()
"""Per method, the grid of its own settings searched by ``--tune`` (``LR_GRID`` is added for every method),
declared with the method (where each grid's source is cited)."""

CRITERION = ("average validation accuracy over all tasks of the tuning stream after its last task "
             f"(seed {TUNING_SEED}; evaluated from the trial's final checkpoint); on a tuning stream shorter than "
             "the evaluation, trials whose capacity forecast has no room for the remaining tasks rank below "
             "those that fit")
RUN_FIELDS = ("lr", "l1", "margin")
"""Tuned settings that are ``RunConfig`` fields (the others are method options, ``extra``): the learning rate
and every tuned run setting a method declares (CLNP's)."""


def search_space(method: str, fixed: Sequence[str] = ()) -> dict[str, tuple[float, ...]]:
    """The grid searched for ``method``: its own settings and ``lr``, less the names in ``fixed``."""
    space = {**SPACES.get(method, {}), "lr": LR_GRID}
    return {name: values for name, values in space.items() if name not in fixed}


def fixed_settings(method: str, lr: float | None, l1: object, margin: float | None, options: dict) -> list[str]:
    """The searchable settings the comparison gives a value to (kept, not searched)."""
    from ..methods import get

    declared = get(method)
    fixed = [name for name in options if name in declared.tuning]
    if lr is not None:
        fixed.append("lr")
    given = {"l1": l1, "margin": margin}
    fixed += [name for name in declared.run_settings if name in declared.tuning and given.get(name) is not None]
    return fixed


def grid_size(space: dict[str, tuple[float, ...]]) -> int:
    size = 1
    for values in space.values():
        size *= len(values)
    return size if space else 0


def trial_settings(method: str, space: dict[str, tuple[float, ...]], trials: int) -> list[dict[str, float]]:
    """The first ``trials`` points of ``space`` in an order seeded by the method's name alone."""
    if not space:
        return []
    grid = [dict(zip(space, point, strict=True)) for point in itertools.product(*space.values())]
    random.Random(f"clnp-tune-{method}").shuffle(grid)
    return grid[:trials]


def with_settings(config: RunConfig, values: dict[str, float]) -> RunConfig:
    """``config`` with the tuned ``values`` in place (``lr`` or a method's run settings, else method options)."""
    fields: dict[str, Any] = {k: v for k, v in values.items() if k in RUN_FIELDS}  # RunConfig's lr, l1, margin
    extra = {**config.extra, **{k: v for k, v in values.items() if k not in RUN_FIELDS}}
    return dataclasses.replace(config, **fields, extra=extra)


def describe(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in values.items())


def fits_stream(results: dict, n_tasks: int) -> bool | None:
    """Whether a finished trial's network has room for an ``n_tasks`` stream, by its capacity forecast.

    A trial on the first K tasks cannot run out of units on tasks it never saw: CLNP tuned on 3 tasks of
    permuted-fashion-mnist chose its weakest L1, whose evaluation run then stopped at task 9 with a full
    layer (``bench/RESULTS.md``). The forecast (:func:`clnp.core.capacity.forecast`, at the rate the
    trial's tasks kept units) must fit the remaining ``n_tasks - K`` tasks in every layer. It is
    conservative (later tasks reuse more and keep fewer units), so a setting it rejects may still have
    lasted. None where the question does not arise: no forecast (methods other than CLNP), a growing
    network, or no task left.
    """
    forecasts = results.get("capacity_forecast") or []
    remaining = n_tasks - len(results.get("accuracy_matrix") or [])
    if not forecasts or remaining <= 0 or (results.get("config") or {}).get("grow"):
        return None
    room = [row["tasks_that_fit"] for row in forecasts[-1]["layers"] if row["tasks_that_fit"] is not None]
    return all(fit >= remaining for fit in room)


def validation_accuracy(directory: str | Path, streams: dict | None = None) -> float:
    """ACC on the validation splits: the mean over all tasks of the run's validation accuracy after its last
    task, from the final checkpoint of the finished run in ``directory`` (on the CPU, in the run's precision)."""
    from .runner import load_learner

    learner, stream = load_learner(directory, streams)
    return statistics.fmean(learner.accuracy(j, task.val.x, task.val.y) for j, task in enumerate(stream))
