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
    base = dict(epochs=8, finetune_epochs=2, batch_size=32, l1=1e-2, margin=10.0, seed=0)
    base.update(overrides)
    return clnp.CLNPConfig(**base)
