"""The main job, as users run it: `clnp run` on the digits benchmarks with the defaults."""

import json

from clnp.cli import main


def test_split_digits_with_defaults_forgets_nothing_and_keeps_free_units(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["benchmark"] == "split-digits" and results["method"] == "clnp"
    assert results["n_tasks"] == 5
    assert results["backward_transfer"] == 0.0
    assert results["average_accuracy"] >= 0.97
    assert all(row["free_after_task"][-1] > 0 for row in results["capacity"])
    matrix = results["accuracy_matrix"]
    assert matrix[0][1] is None and len(matrix) == 5
    out = capsys.readouterr().out
    assert "average accuracy" in out and "units per layer" in out


def test_permuted_digits_five_tasks_forgets_nothing(tmp_path):
    args = ["run", "--benchmark", "permuted-digits", "--tasks", "5", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["n_tasks"] == 5
    assert results["backward_transfer"] == 0.0
    assert results["average_accuracy"] >= 0.90


def test_bad_model_spec_is_a_one_line_error(capsys):
    assert main(["run", "--model", "mlp:abc", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad layer sizes" in err and "Traceback" not in err


def test_split_digits_with_a_batch_norm_cnn_learns_all_five_tasks_at_the_default_margin(tmp_path):
    """The search shares the margin across layers, scarcest first: no conv layer fills up on the way."""
    args = ["run", "--model", "cnn:16,16/64:bn", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["n_tasks"] == 5 and results["config"]["margin"] == 1.0
    assert results["backward_transfer"] == 0.0
    assert results["average_accuracy"] >= 0.97


def test_split_digits_with_defaults_scores_high_and_keeps_free_units_in_every_layer(tmp_path):
    assert main(["run", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["average_accuracy"] >= 0.995
    # the plan keeps a reserve: every layer ends with at least a tenth of its units free
    assert all(row["free_after_task"][-1] >= row["units"] / 10 for row in results["capacity"])
    for row in results["capacity"]:  # and no task took more than its budget needed the margin for
        assert all(b is not None and owned <= b + over for owned, b, over in
                   zip(row["owned_by_task"], row["budget_by_task"], row["over_budget_by_task"], strict=True))
