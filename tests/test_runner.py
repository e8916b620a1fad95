"""The run directory, YAML configs equivalent to the flags, presets, and the order they combine in."""

import csv
import json

import pytest
import yaml

from clnp.cli import build_parser, main
from clnp.experiments.checkpoint import CheckpointError, load_checkpoint
from clnp.experiments.config import PRESETS, ConfigError, RunConfig, from_namespace, load_config_file, read_run_config
from clnp.experiments.runner import LOG_COLUMNS, load_learner, run


def _config(argv: list[str]) -> tuple[RunConfig, str | None]:
    return from_namespace(build_parser().parse_args(["run", *argv]))


def test_run_directory_holds_results_config_epoch_log_and_checkpoint(tmp_path):
    cfg = RunConfig(tasks=2, epochs=2, finetune_epochs=1, progress=False)
    results = run(cfg, tmp_path)

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["accuracy_matrix"] == results["accuracy_matrix"]
    for key in ("benchmark", "method", "n_tasks", "seed", "accuracy_matrix", "average_accuracy",
                "backward_transfer", "capacity", "tasks", "train_seconds", "config"):
        assert key in on_disk
    for info in on_disk["tasks"]:
        expected = {"val_accuracy_dense", "val_accuracy_pruned", "val_accuracy_final", "seconds", "wall_seconds"}
        assert expected <= set(info)

    assert read_run_config(tmp_path / "config.yaml") == cfg.resolved()

    with open(tmp_path / "log.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == LOG_COLUMNS
    assert [(r["task"], r["phase"], r["epoch"]) for r in rows] == [
        (str(t), phase, str(e)) for t in range(2) for phase, n in (("train", 2), ("finetune", 1))
        for e in range(1, n + 1)]
    assert all(float(r["seconds"]) >= 0 and 0 <= float(r["val_accuracy"]) <= 1 for r in rows)

    _, meta, _ = load_checkpoint(tmp_path / "checkpoint")
    assert meta["step"] == 2 and [t["n_classes"] for t in meta["tasks"]] == [2, 2]
    assert meta["accuracy_rows"] == [[v for v in row if v is not None] for row in results["accuracy_matrix"]]


def test_yaml_config_is_equivalent_to_the_same_flags(tmp_path):
    flags = ["--benchmark", "permuted-digits", "--tasks", "3", "--model", "mlp:64,32", "--epochs", "4",
             "--finetune-epochs", "0", "--batch-size", "16", "--optimizer", "sgd", "--lr", "0.05",
             "--weight-decay", "0.0001", "--l1", "0.001", "--margin", "2.5", "--seed", "7", "--data-dir", "d",
             "--out", "o", "--no-progress"]
    path = tmp_path / "c.yaml"
    path.write_text(
        "benchmark: permuted-digits\ntasks: 3\nmodel: mlp:64,32\nepochs: 4\nfinetune_epochs: 0\nbatch_size: 16\n"
        "optimizer: sgd\nlr: 5e-2\nweight_decay: 1e-4\nl1: 1.0e-3\nmargin: 2.5\nseed: 7\ndata_dir: d\nout: o\n"
        "progress: false\n")
    assert _config(["--config", str(path)]) == _config(flags)


def test_flags_override_config_file_which_overrides_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nbatch_size: 64\nmodel: mlp:100\n")
    cfg, _ = _config(["--preset", "paper-pmnist", "--config", str(path), "--batch-size", "8"])
    assert cfg.benchmark == "permuted-mnist" and cfg.tasks == 10 and cfg.optimizer == "adam"  # preset
    assert cfg.epochs == 3 and cfg.model == "mlp:100"  # file over preset
    assert cfg.batch_size == 8  # flag over file
    default, out = _config([])
    assert default == RunConfig() and out is None


def test_presets_hold_the_published_settings():
    cfg, _ = _config(["--preset", "paper-pmnist"])
    assert (cfg.benchmark, cfg.tasks, cfg.model, cfg.optimizer, cfg.batch_size) == (
        "permuted-mnist", 10, "mlp:2000,2000", "adam", 256)
    cfg, _ = _config(["--preset", "split-cifar"])
    assert (cfg.benchmark, cfg.model, cfg.optimizer) == ("split-cifar10-100", "cnn:32,32,64,64/512", "adam")
    from clnp.data.benchmarks import BENCHMARKS

    for values in PRESETS.values():
        assert values["benchmark"] in BENCHMARKS


@pytest.mark.parametrize("text, expected", [
    ("epoch: 3\n", "unknown key 'epoch' (did you mean 'epochs'?)"),
    ("batch-size: 3\n", "did you mean 'batch_size'"),
    ("epochs: three\n", "epochs must be an integer or null"),
    ("epochs: 2.5\n", "epochs must be an integer"),
    ("lr: fast\n", "lr must be a number"),
    ("progress: 1\n", "progress must be true or false"),
    ("- epochs\n", "must hold a mapping"),
    ("epochs: [1\n", "not valid YAML"),
])
def test_bad_config_file_is_one_clear_line_with_exit_code_2(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_config_file(path)
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_config_file_is_exit_code_2(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_run_with_config_writes_the_resolved_config(tmp_path):
    path = tmp_path / "c.yaml"
    out = tmp_path / "run"
    path.write_text(f"tasks: 2\nepochs: 2\nfinetune_epochs: 1\nmargin: 5\nout: {out}\nprogress: false\n")
    assert main(["run", "--config", str(path), "--seed", "3"]) == 0
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["seed"] == 3 and written["margin"] == 5.0 and written["epochs"] == 2
    assert written["model"] == "mlp:256,256"  # the benchmark default, resolved
    assert json.loads((out / "results.json").read_text())["seed"] == 3


def test_a_finished_run_loads_back_as_its_learner_with_the_test_accuracies_it_reported(tmp_path):
    results = run(RunConfig(tasks=2, epochs=2, finetune_epochs=1, progress=False), tmp_path)
    learner, stream = load_learner(tmp_path)
    assert len(stream) == 2 and learner.net.n_tasks == 2
    assert [r.reused for r in learner.reports] == [info["reused"] for info in results["tasks"]]
    assert [learner.accuracy(j, task.test.x, task.test.y) for j, task in enumerate(stream)] == \
        results["accuracy_matrix"][-1]


def test_loading_the_learner_of_an_unfinished_run_says_it_has_not_finished(tmp_path):
    run(RunConfig(tasks=2, epochs=2, finetune_epochs=1, progress=False), tmp_path)
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace("tasks: 2", "tasks: 3"))
    with pytest.raises(CheckpointError, match="holds 2 of 3 tasks; the run has not finished"):
        load_learner(tmp_path)


def test_loading_the_learner_of_a_finished_run_checks_its_checkpoint_as_a_resume_does(tmp_path):
    from .test_integrity import _forge

    run(RunConfig(tasks=2, epochs=2, finetune_epochs=1, progress=False), tmp_path)
    _forge(tmp_path, tensors_edit=lambda t: t.__setitem__("blocks.0.layer.owner",
                                                          t["blocks.0.layer.owner"].flip(0)))
    with pytest.raises(CheckpointError, match="non-zero weights where the owner vectors say they are cut"):
        load_learner(tmp_path)
