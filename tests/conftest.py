import functools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import clnp


@pytest.fixture(autouse=True)
def _threads():
    # Tiny networks train fastest on one thread, and the shared 2-core machine stays responsive.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digit_tasks():
    """Three small split-digits tasks (2 classes each)."""
    return clnp.split_digits(seed=0)[:3]


def quick_config(**overrides) -> clnp.CLNPConfig:
    # min_gain=0: many tests learn tiny or random tasks; the chance check has its own tests.
    base = dict(epochs=8, finetune_epochs=2, batch_size=32, l1=3e-4, margin=10.0, seed=0, min_gain=0.0)
    base.update(overrides)
    return clnp.CLNPConfig(**base)


DETERMINISTIC_TASK_KEYS = ("task", "name", "val_accuracy_dense", "val_accuracy_pruned", "val_accuracy_final",
                           "pruned", "owned", "free_after", "reused", "thresholds")
"""Per-task report keys that a resumed run must reproduce exactly (timings excluded)."""


def read_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def reference_run(tmp_path_factory, args: list[str]) -> Path:
    """`clnp run ARGS` left alone, on one thread, into a fresh directory: what resumed runs must equal."""
    from clnp.cli import main

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference")
    assert main(["run", *args, "--out", str(out)]) == 0
    return out


def interrupt_runs(monkeypatch, after: Callable[[dict], bool]) -> None:
    """Interrupt (``KeyboardInterrupt``, as Ctrl-C does) every run started from now on, by ``clnp run``, ``clnp
    compare`` or the library, after the first epoch whose ``log.csv`` row ``after`` picks: the runner's public
    ``on_epoch`` callback, handed to every call of ``runner.run`` (``monkeypatch.undo()`` ends it)."""
    from clnp.experiments import runner

    def interrupt(row: dict) -> None:
        if after(row):
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(runner, "run", functools.partial(runner.run, on_epoch=interrupt))
