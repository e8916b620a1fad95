"""The retraining after pruning runs at its own learning rate (``finetune_lr``), for CLNP and PackNet alike."""

import json

import pytest
import yaml

from clnp.cli import main
from clnp.engine import loop
from clnp.engine.config import TrainConfig
from clnp.experiments.compare import same_run
from clnp.experiments.config import RunConfig
from clnp.methods import build_method
from clnp.methods.clnp.config import FINETUNE_LR_SCALE

from .conftest import quick_config


@pytest.mark.parametrize("method", ["clnp", "packnet"])
def test_the_finetune_phase_trains_at_finetune_lr_and_training_at_lr(method, digit_tasks, monkeypatch):
    seen: list[float] = []
    original = loop.make_optimizer

    def spy(params, config):
        seen.append(config.lr)
        return original(params, config)

    monkeypatch.setattr(loop, "make_optimizer", spy)
    learner = build_method(method, "mlp:32,32", (1, 8, 8),
                           quick_config(epochs=2, finetune_epochs=1, lr=1e-3, finetune_lr=2.5e-4), {})
    learner.learn(digit_tasks[0])
    assert seen == [1e-3, 2.5e-4]  # the training phase's optimiser, then the fine-tuning's


def test_without_finetune_lr_clnp_fine_tunes_at_a_fraction_of_lr_and_packnet_retrains_at_lr():
    assert quick_config(lr=3e-3).finetuning().lr == 3e-3 * FINETUNE_LR_SCALE
    assert quick_config(lr=3e-3, finetune_lr=3e-3).finetuning().lr == 3e-3
    assert TrainConfig(lr=3e-3).finetuning().lr == 3e-3
    assert quick_config(lr=3e-3, finetune_lr=1e-4).finetuning().lr == 1e-4


@pytest.mark.parametrize("value", ["0", "-1e-3", "nan"])
def test_a_finetune_lr_out_of_range_is_refused_before_any_work(value, tmp_path, capsys):
    assert main(["run", f"--finetune-lr={value}", "--out", str(tmp_path / "run")]) == 2
    assert "finetune_lr must be > 0 and finite" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_baseline_that_does_not_retrain_is_the_same_run_whatever_its_finetune_lr():
    base = RunConfig(method="ewc").resolved()
    other = RunConfig(method="ewc", finetune_lr=1e-4).resolved()
    assert same_run(vars(base), vars(other))
    clnp_base, clnp_other = RunConfig(method="clnp").resolved(), RunConfig(method="clnp", finetune_lr=1e-4).resolved()
    assert not same_run(vars(clnp_base), vars(clnp_other))


def test_a_run_recorded_before_finetune_lr_existed_is_still_the_same_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--tasks", "2", "--epochs", "2", "--finetune-epochs", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    del results["config"]["finetune_lr"]  # as an earlier clnp wrote it
    (out / "results.json").write_text(json.dumps(results))
    config = yaml.safe_load((out / "config.yaml").read_text())
    del config["finetune_lr"]
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(args) == 0
    assert "already holds this run" in capsys.readouterr().out


def test_the_help_texts_quote_the_fine_tuning_rate_clnp_uses(capsys):
    # The parser imports no torch, so its texts spell the scale out; this keeps them true.
    for argv in (["run", "--help"], ["compare", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert f"{FINETUNE_LR_SCALE:g} x --lr for clnp" in " ".join(capsys.readouterr().out.split())
    main(["benchmarks"])
    assert f"own epochs (above) at {FINETUNE_LR_SCALE:g} x lr" in " ".join(capsys.readouterr().out.split())
