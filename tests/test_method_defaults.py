"""A method's own default of a shared training setting (CLNP's 10 fine-tuning epochs) is declared once, in its
settings dataclass, and every way of starting a run takes it; other methods keep the shared default."""

from __future__ import annotations

import pytest

from clnp.engine.config import TrainConfig
from clnp.experiments.compare import CompareConfig
from clnp.experiments.config import RunConfig, method_defaults
from clnp.methods.clnp import CLNPConfig


def test_clnp_fine_tunes_for_its_own_epochs_and_packnet_for_the_shared_default():
    assert CLNPConfig().finetune_epochs == 10 != TrainConfig().finetune_epochs == 5
    assert method_defaults("clnp") == {"finetune_epochs": 10}
    assert method_defaults("packnet") == {} == method_defaults("ewc")
    assert RunConfig(method="clnp").check().finetune_epochs == 10
    assert RunConfig(method="packnet").check().finetune_epochs == 5


@pytest.mark.parametrize("given", [None, 3])
def test_a_comparison_gives_each_method_its_own_default_unless_told(given):
    grid = CompareConfig(benchmark="split-digits", methods=["clnp", "packnet"], seeds=1, finetune_epochs=given)
    resolved = grid.check()
    expected = {"clnp": 10, "packnet": 5} if given is None else {"clnp": given, "packnet": given}
    assert {m: c.finetune_epochs for m, c in resolved.items()} == expected


def test_a_flag_overrides_clnps_own_default():
    assert RunConfig(method="clnp", finetune_epochs=2).check().finetune_epochs == 2


@pytest.mark.parametrize("command", ["run", "compare"])
def test_the_help_of_finetune_epochs_names_each_methods_default(command, capsys):
    from clnp.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (f"default: {CLNPConfig().finetune_epochs} for clnp, {TrainConfig().finetune_epochs} for packnet"
            in text)
