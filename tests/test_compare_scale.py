"""Comparisons at scale and on a fair footing (issue 13): ``clnp compare --jobs N``, the submitit launcher
(``--launcher slurm``, tested through ``local-submitit``: real processes, the same code path but sbatch),
and ``--tune TRIALS``."""

import json
import sys
from pathlib import Path

import pytest

from clnp.cli import main
from clnp.experiments.compare import CompareConfig, compare

GRID = dict(benchmark="split-digits", methods=["clnp", "finetune", "ewc"], seeds=2, tasks=3, epochs=4,
            finetune_epochs=1, model="mlp:32")
BASELINES_GRID = {k: v for k, v in GRID.items() if k != "finetune_epochs"}
"""The grid without the fine-tuning setting, which finetune and EWC do not read (a comparison of them refuses it)."""


def _matrices(summary: dict) -> dict:
    """Per (method, seed): the accuracy matrix of the run the comparison tabulates."""
    out = {}
    for method, dirs in summary["runs"].items():
        for d in dirs:
            results = json.loads((Path(d) / "results.json").read_text())
            out[(method, results["seed"])] = results["accuracy_matrix"]
    return out


def _numbers(summary: dict) -> dict:
    """What the table says of each method, timings aside (they differ from run to run)."""
    return {m: {k: v for k, v in info.items() if k != "train_seconds"} for m, info in summary["methods"].items()}


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The grid run one run after another in this process (--jobs 1): what the other launchers must equal."""
    out = tmp_path_factory.mktemp("serial")
    return compare(CompareConfig(**GRID), out), out


def test_jobs_2_gives_the_same_comparison_as_jobs_1(serial, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread per run, as in this process: the same floats
    reference, _ = serial
    messages = []
    summary = compare(CompareConfig(**GRID, jobs=2), tmp_path, log=messages.append)
    assert _matrices(summary) == _matrices(reference) and len(_matrices(summary)) == 6
    assert _numbers(summary) == _numbers(reference)
    assert list(summary["methods"]) == GRID["methods"] and summary["failures"] == {}
    assert summary["config"] == reference["config"] and "jobs" not in summary["config"]
    written = json.loads((tmp_path / "comparison.json").read_text())
    assert written["runs"] == {m: [str(tmp_path / m / f"s{s}") for s in (0, 1)] for m in GRID["methods"]}
    assert "6 runs to do, in 2 worker processes" in messages
    assert messages[-1].startswith("[6/6 done")


def test_the_submitit_launcher_equals_the_local_path_and_continues_an_interrupted_grid(serial, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from clnp.experiments import runner

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    reference, _ = serial
    config = CompareConfig(**{**BASELINES_GRID, "methods": ["finetune", "ewc"]}, launcher="local-submitit",
                           slurm_time=10)
    summary = compare(config, tmp_path)
    want = {k: v for k, v in _matrices(reference).items() if k[0] != "clnp"}
    assert _matrices(summary) == want
    assert _numbers(summary) == {m: v for m, v in _numbers(reference).items() if m != "clnp"}
    assert list((tmp_path / "slurm-logs").glob("*_submitted.pkl"))

    # Cut the grid off half-way: one run directory gone, one run stopped after its second task.
    import shutil

    shutil.rmtree(tmp_path / "finetune" / "s1")
    shutil.rmtree(tmp_path / "ewc" / "s1")
    def interrupt(row):
        if row["task"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(config.run_config("ewc", 1), tmp_path / "ewc" / "s1", on_epoch=interrupt)
    assert runner.unfinished_run(tmp_path / "ewc" / "s1")

    messages = []
    again = compare(config, tmp_path, log=messages.append)  # the same command again
    assert sum("reusing" in m for m in messages) == 2
    assert any(f"(resuming the unfinished run in {tmp_path / 'ewc' / 's1'})" in m for m in messages)
    assert any(f"(running into {tmp_path / 'finetune' / 's1'})" in m for m in messages)
    assert _matrices(again) == want
    assert json.loads((tmp_path / "ewc" / "s1" / "results.json").read_text())["resumed_at_tasks"] == [2]


def test_tuning_selects_each_methods_settings_on_the_tuning_stream_with_the_same_trials_for_all(tmp_path):
    from clnp.experiments.tuning import LR_GRID, SPACES, TUNING_SEED

    config = CompareConfig(**{**GRID, "seeds": 1}, tune=2)
    messages = []
    summary = compare(config, tmp_path, log=messages.append)
    record = summary["tuning"]
    assert set(record) == set(GRID["methods"])
    assert {m: r["trials"] for m, r in record.items()} == {m: 2 for m in GRID["methods"]}
    for method, r in record.items():
        assert r["seed"] == TUNING_SEED and r["space"] == {**{k: list(v) for k, v in SPACES[method].items()},
                                                           "lr": list(LR_GRID)}
        assert len(r["results"]) == 2
        for k, row in enumerate(r["results"]):
            trial = json.loads((tmp_path / "tuning" / method / f"trial-{k}" / "results.json").read_text()) \
                if "error" not in row else None
            if trial is not None:
                assert trial["seed"] == TUNING_SEED and trial["config"]["lr"] == row["values"]["lr"]
                assert 0 <= row["validation_accuracy"] <= 1 and row["test_accuracy"] == trial["average_accuracy"]
    for method in ("finetune", "ewc"):  # the baselines learn this stream whatever their settings
        r = record[method]
        assert r["tuned"] is True
        best = max(r["results"], key=lambda row: row["validation_accuracy"])
        assert r["chosen"] == best["values"]
        evaluated = json.loads((tmp_path / method / "s0" / "results.json").read_text())["config"]
        assert evaluated["lr"] == r["chosen"]["lr"] and evaluated["seed"] == 0
    ewc = json.loads((tmp_path / "ewc" / "s0" / "results.json").read_text())
    assert ewc["config"]["extra"] == {"lambda": record["ewc"]["chosen"]["lambda"]}
    if record["clnp"]["tuned"]:  # CLNP's l1 and margin are run settings, not options
        clnp = json.loads((tmp_path / "clnp" / "s0" / "results.json").read_text())["config"]
        assert (clnp["l1"], clnp["margin"]) == (record["clnp"]["chosen"]["l1"], record["clnp"]["chosen"]["margin"])
    table = (tmp_path / "comparison.md").read_text()
    assert f"tuned with --tune 2 on a tuning stream (the benchmark at seed {TUNING_SEED}" in table
    assert "- `ewc`: tuned, 2 of the 15 settings of lambda {1, 10, 100, 1000, 10000} x lr {0.0003, 0.001, 0.003}: " \
        f"chose lambda={record['ewc']['chosen']['lambda']:g}" in table
    assert "- `finetune`: tuned, 2 of the 3 settings of lr" in table
    assert json.loads((tmp_path / "comparison.json").read_text())["tuning"] == record

    messages.clear()  # the same command again: every trial and run is reused (a failed trial is tried again)
    compare(config, tmp_path, log=messages.append)
    failed = sum("error" in row for r in record.values() for row in r["results"])
    assert sum("reusing" in m for m in messages) == 6 - failed + 3


def test_tuning_on_the_first_tasks_of_the_tuning_stream_runs_shorter_trials_and_says_so(tmp_path):
    config = CompareConfig(**{**BASELINES_GRID, "seeds": 1, "methods": ["finetune", "ewc"]}, tune=1, tune_tasks=2)
    summary = compare(config, tmp_path)
    for method in ("finetune", "ewc"):
        assert summary["tuning"][method]["tasks"] == 2
        trial = json.loads((tmp_path / "tuning" / method / "trial-0" / "results.json").read_text())
        assert len(trial["accuracy_matrix"]) == 2
        evaluated = json.loads((tmp_path / method / "s0" / "results.json").read_text())
        assert len(evaluated["accuracy_matrix"]) == 3
    assert "(the benchmark at seed 1000, its first 2 tasks, not an evaluation seed)" in \
        (tmp_path / "comparison.md").read_text()


def test_a_failed_run_under_jobs_2_is_recorded_and_the_others_finish(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cmp"
    # A strength of 1e300 is infinite in float32: EWC's loss is NaN from the second task on.
    code = main(["compare", "--methods", "finetune,ewc", "--seeds", "2", "--tasks", "2", "--epochs", "2",
                 "--model", "mlp:16", "--option", "ewc.lambda=1e300", "--jobs", "2", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "comparison.json").read_text())
    assert list(summary["methods"]) == ["finetune"] and summary["methods"]["finetune"]["seeds"] == [0, 1]
    assert [f["seed"] for f in summary["failures"]["ewc"]] == [0, 1]
    assert all("the loss became nan" in f["error"] for f in summary["failures"]["ewc"])
    assert summary["finished"] == 2 and summary["planned"] == 4
    assert "`ewc` seed 1 stopped: ewc: task 1" in (out / "comparison.md").read_text()
    assert "[4/4 done" in capsys.readouterr().out


def test_the_slurm_launcher_without_submitit_is_a_usage_error_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "finetune", "--tasks", "2", "--epochs", "1", "--model", "mlp:8",
                 "--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "30", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clnp compare: error: --launcher slurm needs the submitit package") and \
        "pip install 'clnp[slurm]'" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("settings, expected", [
    ({"jobs": 0}, "--jobs must be an integer >= 1"),
    ({"launcher": "slurm", "jobs": 2}, "drop --jobs"),
    ({"slurm_partition": "gpu"}, "only apply with --launcher slurm"),
    ({"launcher": "pbs"}, "unknown launcher"),
    ({"tune": -1}, "--tune must be an integer >= 0"),
    ({"tune": 2, "seeds": 1001}, "at most 1000 seeds"),
    ({"tune_tasks": 2}, "needs --tune TRIALS"),
    ({"tune": 1, "tune_tasks": 0}, "--tune-tasks must be an integer >= 1"),
    ({"tune": 1, "tune_tasks": 4, "tasks": 3}, "use at most 3"),
])
def test_execution_and_tuning_settings_that_do_not_fit_are_refused(settings, expected):
    with pytest.raises(ValueError, match=expected):
        CompareConfig(**settings)


def test_a_pool_worker_takes_its_own_gpu_round_robin_and_its_share_of_the_threads(monkeypatch):
    import torch

    from clnp.experiments import launchers

    monkeypatch.setattr(launchers, "_WORKER", {})
    assert launchers.worker_device("cuda") == "cuda"  # not in a pool: unchanged
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launchers.os, "cpu_count", lambda: 16)

    class Counter:
        value = 3

        def get_lock(self):
            import contextlib

            return contextlib.nullcontext()

    launchers._init_worker(Counter(), 4)
    assert threads == [4]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert launchers.worker_device("cuda") == "cuda:1" and launchers.worker_device("auto") == "cuda:1"
    assert launchers.worker_device("cuda:0") == "cuda:0" and launchers.worker_device("cpu") == "cpu"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launchers._init_worker(Counter(), 4)
    assert threads == [4]  # OMP_NUM_THREADS set: the thread count is left alone


def test_a_trial_whose_capacity_forecast_cannot_last_the_evaluation_stream_does_not_fit():
    from clnp.experiments.tuning import fits_stream

    layers = [{"layer": "0", "free": 134, "units_per_task": 288.7, "tasks_that_fit": 0},
              {"layer": "1", "free": 600, "units_per_task": 100.0, "tasks_that_fit": 6}]
    trial = {"accuracy_matrix": [[0.9]] * 3, "capacity_forecast": [{"after_task": 2, "layers": layers}],
             "config": {"grow": False}}
    assert fits_stream(trial, 10) is False  # layer 0 has room for no more task, 7 remain
    layers[0]["tasks_that_fit"] = 7
    assert fits_stream(trial, 10) is False  # layer 1: 6 of 7
    layers[1]["tasks_that_fit"] = None  # a layer no task used never fills
    assert fits_stream(trial, 10) is True
    assert fits_stream(trial, 3) is None  # no task left to fit
    assert fits_stream({**trial, "config": {"grow": True}}, 10) is None  # a growing network makes room
    assert fits_stream({"accuracy_matrix": [[0.9]]}, 10) is None  # a method without a forecast


def test_the_table_says_which_trials_ranked_last_for_capacity():
    from clnp.experiments.compare import settings_lines

    record = {"tuned": True, "space": {"l1": [1e-3, 1e-2]}, "space_size": 2, "trials": 2, "trials_asked": 2,
              "seed": 1000, "tasks": 3, "criterion": "c", "chosen": {"l1": 1e-2}, "chosen_validation_accuracy": 0.85,
              "results": [{"trial": 0, "fits_evaluation": False}, {"trial": 1, "fits_evaluation": True}]}
    text = "\n".join(settings_lines({"tuning": {"clnp": record}, "n_tasks": 10}))
    assert "its first 3 tasks" in text
    assert "- `clnp`: tuned, 2 of the 2 settings of l1 {0.001, 0.01}: chose l1=0.01 (validation ACC 85.00 %); " \
           "trial 0 ranked last: its capacity forecast does not last the 10 tasks" in text


def test_tune_tasks_on_the_command_line_reaches_the_comparison(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "finetune", "--tasks", "2", "--tune-tasks", "2", "--out", str(out)]) == 2
    assert "--tune-tasks sets the tuning stream's length: it needs --tune TRIALS" in capsys.readouterr().err
    assert not out.exists()
    # Beyond the benchmark's own number of tasks (split-digits has 5), before anything runs.
    assert main(["compare", "--methods", "finetune", "--tune", "1", "--tune-tasks", "6", "--out", str(out)]) == 2
    assert "--tune-tasks 6 is more than the 5 tasks evaluated on split-digits: use at most 5" in capsys.readouterr().err
    assert not out.exists()
