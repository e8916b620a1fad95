"""A stopped run is not a dead end (issue 15, item 9): the message says how to go on, ``clnp report``
shows the finished tasks, and ``--overwrite`` starts it again with other settings."""

import json

import pytest

from clnp.cli import main
from clnp.report import load_results

# Four units, no margin and the greedy search: every task keeps all of them, so the second task finds the layer full.
FULL = ["--benchmark", "permuted-digits", "--tasks", "3", "--model", "mlp:4", "--epochs", "20", "--finetune-epochs",
        "0", "--margin", "0", "--l1", "0", "--no-progress", "--option", "clnp.plan=false"]


@pytest.fixture
def stopped(tmp_path, capsys):
    out = tmp_path / "full"
    assert main(["run", *FULL, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    return out, err


def test_a_run_stopped_for_capacity_says_how_to_go_on(stopped):
    out, err = stopped
    finished = json.loads((out / "checkpoint" / "meta.json").read_text())["step"]
    assert 1 <= finished < 3
    assert err.startswith("clnp run: stopped: layer 0:Linear(64->4) has no free unit left") and err.count("\n") == 1
    assert f"finished task{'s are' if finished > 1 else ' is'} kept in {out / 'checkpoint'}" in err
    assert f"'clnp report {out}'" in err and "--overwrite" in err and "wider model" in err


def test_report_shows_the_finished_tasks_of_an_unfinished_run(stopped, capsys, tmp_path):
    out, _ = stopped
    finished = json.loads((out / "checkpoint" / "meta.json").read_text())["step"]
    assert main(["report", str(out), "--plots-dir", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert f"UNFINISHED run: {finished} of 3 tasks finished" in printed
    assert "average accuracy" in printed and "units per layer" in printed
    assert (tmp_path / "plots" / "accuracy_matrix.png").is_file()
    results, _ = load_results(out)
    assert len(results["accuracy_matrix"]) == finished and results["unfinished"]["n_tasks"] == 3
    assert len(results["capacity"][0]["owned_by_task"]) == finished


def test_a_stopped_run_can_be_started_again_with_a_wider_model(stopped, capsys):
    out, _ = stopped
    wider = [a if a != "mlp:4" else "mlp:64" for a in FULL]
    assert main(["run", *wider, "--margin", "5", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", *wider, "--margin", "5", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["model"] == "mlp:64"
