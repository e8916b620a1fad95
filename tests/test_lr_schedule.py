"""The rate within a phase: constant by default, falling to 0 along a cosine where the settings say so (CLNP's
fine-tuning)."""

import math

import pytest

from clnp.engine import loop
from clnp.engine.config import TrainConfig, scheduled_lr
from clnp.methods import build_method
from clnp.methods.clnp.config import FINETUNE_LR_SCALE, CLNPConfig

from .conftest import quick_config


def _rates_per_phase(monkeypatch) -> list[list[float]]:
    """The rate of every optimiser step, one list per phase."""
    phases: list[list[float]] = []
    original = loop.make_optimizer

    def spy(params, config):
        optimizer = original(params, config)
        rates: list[float] = []
        phases.append(rates)
        inner = optimizer.step

        def step(*args, **kwargs):
            rates.append(optimizer.param_groups[0]["lr"])
            return inner(*args, **kwargs)

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(loop, "make_optimizer", spy)
    return phases


def test_clnp_fine_tunes_at_a_rate_falling_along_a_cosine_and_trains_at_a_constant_one(digit_tasks, monkeypatch):
    phases = _rates_per_phase(monkeypatch)
    learner = build_method("clnp", "mlp:32,32", (1, 8, 8), quick_config(epochs=2, finetune_epochs=2, lr=1e-3), {})
    learner.learn(digit_tasks[0])
    train, finetune = phases
    assert train and set(train) == {1e-3}
    start = 1e-3 * FINETUNE_LR_SCALE
    assert finetune[0] == start
    assert all(b < a for a, b in zip(finetune, finetune[1:], strict=False))  # falls at every step
    n = len(finetune)
    assert finetune[-1] == pytest.approx(0.5 * start * (1 + math.cos(math.pi * (n - 1) / n)))
    assert finetune[n // 2] == pytest.approx(0.5 * start * (1 + math.cos(math.pi * (n // 2) / n)))


@pytest.mark.parametrize("settings", [TrainConfig, CLNPConfig])
def test_packnet_retrains_at_a_constant_rate_unless_told_otherwise(settings, digit_tasks, monkeypatch):
    # Handed CLNP's settings, PackNet still retrains as PackNet: at lr, constant (not 0.3 x lr along a cosine).
    phases = _rates_per_phase(monkeypatch)
    config = settings(epochs=1, finetune_epochs=1, batch_size=32, lr=1e-3)
    learner = build_method("packnet", "mlp:32,32", (1, 8, 8), config, {})
    learner.learn(digit_tasks[0])
    assert [set(rates) for rates in phases] == [{1e-3}, {1e-3}]


def test_a_cosine_schedule_starts_at_lr_halves_midway_and_reaches_zero():
    config = TrainConfig(lr=0.2, lr_schedule="cosine")
    assert scheduled_lr(config, 0, 10) == 0.2
    assert scheduled_lr(config, 5, 10) == pytest.approx(0.1)
    assert scheduled_lr(config, 10, 10) == pytest.approx(0.0)
    assert scheduled_lr(TrainConfig(lr=0.2), 7, 10) == 0.2


def test_an_unknown_lr_schedule_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="lr_schedule must be one of 'constant', 'cosine', got 'step'"):
        TrainConfig(lr_schedule="step")


def test_clnp_fine_tunes_at_a_constant_rate_when_told_to_as_packnet_retrains(digit_tasks, monkeypatch):
    phases = _rates_per_phase(monkeypatch)
    options = {"finetune_schedule": "constant"}  # what --option clnp.finetune_schedule=constant passes
    learner = build_method("clnp", "mlp:32,32", (1, 8, 8), quick_config(epochs=2, finetune_epochs=2, lr=1e-3), options)
    learner.learn(digit_tasks[0])
    train, finetune = phases
    assert set(train) == {1e-3} and set(finetune) == {1e-3 * FINETUNE_LR_SCALE}


def test_an_unknown_fine_tuning_schedule_is_refused_naming_the_known_ones():
    assert CLNPConfig().finetune_schedule == "cosine"
    with pytest.raises(ValueError, match="finetune_schedule must be one of 'constant', 'cosine', got 'step'"):
        CLNPConfig(finetune_schedule="step")
