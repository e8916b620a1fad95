"""One owner for a run directory and its results (issue 26, item 3): every file clnp writes is named in
:mod:`clnp.experiments.run_files`, ``results.json`` is built, written and read by :class:`RunResults` alone,
and one rule says whether two runs are the same."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from clnp.cli import main
from clnp.experiments.config import RunConfig
from clnp.experiments.identity import differences, same_run
from clnp.experiments.results import RunResults, finished_run_of
from clnp.experiments.run_files import PLOTS, RESULTS, TOP_FILES, owned
from clnp.experiments.rundir import inspect, remove_own

RUN = ["run", "--benchmark", "split-digits", "--tasks", "2", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory) -> Path:
    """A finished CLNP run, reported (every plot) and one of its tasks exported."""
    out = tmp_path_factory.mktemp("owner") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert main(["export", str(out), "--task", "0", "--format", "state_dict"]) == 0
    assert main(["export", str(out), "--task", "0"]) == 0  # the default format
    return out


def test_every_file_that_run_report_and_export_write_is_one_clnp_owns(reported_run):
    written = [p.relative_to(reported_run) for p in reported_run.rglob("*") if p.is_file()]
    assert [p for p in written if not owned(p)] == []
    plots = set(PLOTS.values()) - {PLOTS["forecast"]}  # a forecast only where the method plans capacity
    assert {p.name for p in written if len(p.parts) == 1} >= {RESULTS, *plots}
    state = inspect(reported_run)
    assert state.is_run and state.finished and state.foreign == []


def test_overwrite_removes_every_file_clnp_wrote_and_nothing_else(reported_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(reported_run, copy)
    (copy / "notes.txt").write_text("mine")
    (copy / "checkpoint" / "mine.txt").write_text("mine too")
    remove_own(inspect(copy))
    left = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    assert left == ["checkpoint", "checkpoint/mine.txt", "notes.txt"]


def test_the_names_clnp_owns_are_the_top_files_and_the_patterns_of_its_folders():
    assert all(owned(name) for name in TOP_FILES)
    for name in ["checkpoint/meta.json", "checkpoint/tensors-0003.safetensors", "export/task-2.onnx.data",
                 ".results.json.tmp-123", "checkpoint/.meta.json.tmp-9", "capacity_forecast.png"]:
        assert owned(name), name
    for name in ["notes.txt", "checkpoint/notes.txt", "export/task-x.pt", "other/meta.json", "checkpoint/a/meta.json",
                 "results.json.bak"]:
        assert not owned(name), name


def test_every_export_format_writes_names_clnp_owns():
    """``run --overwrite`` removes an earlier run's exports in any format (a ``.pt2`` program was once left behind
    as if it were the user's file)."""
    from clnp.exporting.files import SUFFIXES

    for suffix in SUFFIXES.values():
        assert owned(f"export/task-2{suffix}"), suffix
    assert owned("export/task-2.onnx.data") and owned("export/task-2.json")


def test_results_read_back_write_the_same_bytes_and_the_checkpoint_gives_the_same_numbers(reported_run, tmp_path):
    text = (reported_run / RESULTS).read_text()
    results = RunResults.read(reported_run / RESULTS)
    assert results.finished and results.to_json() == text
    results.write(tmp_path)
    assert (tmp_path / RESULTS).read_text() == text

    from_checkpoint = RunResults.from_checkpoint(reported_run).to_dict()
    finished = results.to_dict()
    assert from_checkpoint["unfinished"] == {"finished_tasks": 2, "n_tasks": 2}
    assert not RunResults(from_checkpoint).finished
    for key in ("benchmark", "method", "n_tasks", "seed", "model", "accuracy_matrix", "average_accuracy",
                "backward_transfer", "capacity", "tasks", "resumed_at_tasks", "config"):
        assert from_checkpoint[key] == finished[key], key
    assert list(from_checkpoint) == [k for k in finished if k != "capacity_forecast"] + ["unfinished"]


def test_built_results_have_the_keys_of_results_json_in_order():
    config = asdict(RunConfig(method="ewc", tasks=2).resolved())
    built = RunResults.build(config, [[1.0], [0.5, 0.75]], 2, [], [{}, {}], 1.5, [], forecast=[])
    assert list(built.to_dict()) == ["benchmark", "method", "n_tasks", "seed", "model", "accuracy_matrix",
                                     "average_accuracy", "backward_transfer", "capacity", "capacity_forecast", "tasks",
                                     "train_seconds", "resumed_at_tasks", "config"]
    assert built.to_dict()["accuracy_matrix"] == [[1.0, None], [0.5, 0.75]] and built.finished
    assert built.to_dict()["backward_transfer"] == -0.5
    assert json.loads(built.to_json()) == built.to_dict()
    with pytest.raises(ValueError, match="fractions in"):
        RunResults.build(config, [[2.0]], 1, [], [{}], None, []).check()


def test_the_same_run_ignores_where_it_ran_and_the_settings_its_method_does_not_read():
    ewc = {"method": "ewc", "epochs": 1, "l1": 1.0, "margin": 1.0, "grow": False, "finetune_epochs": 2,
           "finetune_lr": None, "progress": False, "device": "cpu", "data_dir": None}
    assert same_run(ewc, {**ewc, "l1": 1e-3, "margin": 2.0, "grow": True, "finetune_epochs": 1, "progress": True,
                          "device": "cuda", "data_dir": "/data"})
    assert not same_run(ewc, {**ewc, "epochs": 2})
    assert differences(ewc, {**ewc, "epochs": 2, "seed": 3}) == "epochs 2 there, 1 here, seed 3 there, None here"
    clnp = {**ewc, "method": "clnp"}
    assert not same_run(clnp, {**clnp, "l1": 1e-3}) and not same_run(clnp, {**clnp, "grow": True})
    packnet = {**ewc, "method": "packnet"}
    assert not same_run(packnet, {**packnet, "finetune_epochs": 1})
    old = {k: v for k, v in clnp.items() if k != "finetune_lr"}  # recorded before finetune_lr existed
    assert same_run(clnp, old) and not same_run({**clnp, "finetune_lr": 0.1}, old)


def test_clnp_run_and_compare_decide_the_same_run_alike(tmp_path):
    """``clnp run`` of a finished run's settings (device and progress aside) finds it, as ``compare`` reuses it."""
    from clnp.experiments.compare.reuse import reusable

    out = tmp_path / "run"
    assert main([*RUN, "--method", "finetune", "--out", str(out)]) == 0
    config = RunConfig(benchmark="split-digits", method="finetune", tasks=2, epochs=1,
                       device="cpu", progress=True)
    assert finished_run_of(out, config) is not None and reusable(out, config) is not None
    other = RunConfig(**{**asdict(config), "epochs": 2})
    assert finished_run_of(out, other) is None and reusable(out, other) is None
