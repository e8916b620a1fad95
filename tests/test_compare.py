"""``clnp compare``: every method on the same stream and seeds, tabulated and plotted."""

import dataclasses
import json

import pytest
import torch

from clnp.cli import main
from clnp.experiments.compare import CompareConfig, compare, parse_options


def test_compare_on_split_digits_writes_json_markdown_and_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--benchmark", "split-digits", "--methods", "clnp,finetune", "--seeds", "2",
                 "--tasks", "2", "--epochs", "6", "--lr", "0.01", "--finetune-epochs", "1", "--model", "mlp:16,16",
                 "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "comparison.json").read_text())
    assert list(summary["methods"]) == ["clnp", "finetune"]
    for method, m in summary["methods"].items():
        assert m["average_accuracy"]["n"] == 2
        assert set(m["average_accuracy"]) == {"mean", "std", "n"}
        assert set(m["backward_transfer"]) == {"mean", "std", "n"}
        assert m["train_seconds"]["mean"] > 0
        assert m["parameters"] > 0 and m["storage_bytes"] >= 4 * m["parameters"]
        assert len(m["final_accuracy_per_task"]) == 2
        for seed in (0, 1):
            results = json.loads((out / method / f"s{seed}" / "results.json").read_text())
            assert results["seed"] == seed and results["method"] == method
    assert summary["methods"]["clnp"]["backward_transfer"]["mean"] == 0.0
    table = (out / "comparison.md").read_text()
    assert "| clnp |" in table and "| finetune |" in table
    assert (out / "accuracy_per_task.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "comparison.md" in capsys.readouterr().out


def test_compare_reuses_finished_runs_with_the_same_configuration(tmp_path):
    config = CompareConfig(benchmark="split-digits", methods=["finetune"], seeds=1, tasks=2, epochs=1,
                           model="mlp:8")
    compare(config, tmp_path)
    results = tmp_path / "finetune" / "s0" / "results.json"
    stamp = results.stat().st_mtime_ns
    messages = []
    compare(config, tmp_path, log=messages.append)
    assert results.stat().st_mtime_ns == stamp
    assert any("reusing" in m for m in messages)


def test_compare_passes_method_options_to_that_method_only(tmp_path):
    config = CompareConfig(benchmark="split-digits", methods=["ewc", "finetune"], seeds=1, tasks=2, epochs=1,
                           model="mlp:8", options=parse_options(["ewc.lambda=7"]))
    compare(config, tmp_path)
    ewc = json.loads((tmp_path / "ewc" / "s0" / "results.json").read_text())
    assert ewc["tasks"][-1]["strength"] == 7.0
    assert ewc["config"]["extra"] == {"lambda": 7.0}
    finetune = json.loads((tmp_path / "finetune" / "s0" / "results.json").read_text())
    assert finetune["config"]["extra"] == {}


def test_compare_rejects_unknown_methods_and_bad_options():
    with pytest.raises(ValueError, match="unknown method"):
        CompareConfig(methods=["clnp", "nope"])
    with pytest.raises(ValueError, match="METHOD.NAME=VALUE"):
        parse_options(["lambda=3"])
    with pytest.raises(ValueError, match="not among the compared methods"):
        CompareConfig(methods=["clnp"], options={"ewc": {"lambda": 1.0}})


def test_compare_no_run_tabulates_only_what_finished(tmp_path):
    done = CompareConfig(benchmark="split-digits", methods=["finetune"], seeds=1, tasks=2, epochs=1, model="mlp:8")
    compare(done, tmp_path)
    messages = []
    wider = CompareConfig(benchmark="split-digits", methods=["finetune", "ewc"], seeds=2, tasks=2, epochs=1,
                          model="mlp:8", run_missing=False)
    summary = compare(wider, tmp_path, log=messages.append)
    assert list(summary["methods"]) == ["finetune"]
    assert summary["finished"] == 1 and summary["planned"] == 4
    assert not (tmp_path / "ewc").exists()
    assert sum("left out" in m for m in messages) == 3
    with pytest.raises(FileNotFoundError, match="no finished run"):
        compare(CompareConfig(benchmark="split-digits", methods=["si"], tasks=2, epochs=1, model="mlp:8",
                              run_missing=False), tmp_path)


def test_a_method_that_cannot_finish_is_reported_and_the_others_go_on(tmp_path, monkeypatch):
    from clnp.experiments import runner
    from clnp.methods.clnp import CapacityError

    real_run = runner.run

    def run_or_fail(config, out):
        if config.method == "ewc":
            raise CapacityError("layer 0 has no free unit left for task 1")
        return real_run(config, out)

    monkeypatch.setattr(runner, "run", run_or_fail)
    config = CompareConfig(benchmark="split-digits", methods=["ewc", "finetune"], seeds=1, tasks=2, epochs=1,
                           model="mlp:8")
    summary = compare(config, tmp_path)
    assert list(summary["methods"]) == ["finetune"]
    assert summary["failures"] == {"ewc": [{"seed": 0, "error": "layer 0 has no free unit left for task 1"}]}
    assert "`ewc` seed 0 stopped: layer 0 has no free unit" in (tmp_path / "comparison.md").read_text()


def test_a_baseline_run_is_reused_whatever_the_clnp_only_settings():
    from clnp.experiments.compare import same_run

    base = {"method": "ewc", "epochs": 1, "l1": 1.0, "margin": 1.0, "finetune_epochs": 2, "progress": False}
    assert same_run(base, {**base, "l1": 1e-3, "margin": 2.0, "finetune_epochs": 1, "progress": True})
    assert not same_run(base, {**base, "epochs": 2})
    clnp_run = {**base, "method": "clnp"}
    assert not same_run(clnp_run, {**clnp_run, "l1": 1e-3})
    packnet = {**base, "method": "packnet"}
    assert not same_run(packnet, {**packnet, "finetune_epochs": 1})


def test_every_run_setting_a_comparison_declares_reaches_each_of_its_runs():
    """A setting added to RunConfig is either offered by ``clnp compare`` (declared in CompareConfig with the same
    default, and passed to every run) or named as one a comparison sets per run: never dropped on the way."""
    from dataclasses import fields

    from clnp.experiments.compare.config import RUN_ONLY_FIELDS, shared_with_runs
    from clnp.experiments.config import RunConfig

    shared = shared_with_runs()
    assert {f.name for f in fields(RunConfig)} == set(shared) | set(RUN_ONLY_FIELDS)
    assert not set(shared) & set(RUN_ONLY_FIELDS)
    run_defaults, compare_defaults = RunConfig(), CompareConfig(methods=["clnp"])
    assert {n: getattr(compare_defaults, n) for n in shared} == {n: getattr(run_defaults, n) for n in shared}
    given = dict(benchmark="permuted-digits", tasks=3, model="mlp:8", epochs=2, finetune_epochs=1, batch_size=16,
                 optimizer="sgd", lr=0.05, finetune_lr=0.01, weight_decay=1e-4, l1=[1e-3, 2e-3], margin=0.5,
                 data_dir="/data", device="cpu", precision="bf16-mixed")
    assert set(given) == set(shared)
    run = CompareConfig(methods=["clnp"], options={"clnp": {"share": "declining"}}, **given).run_config("clnp", 2)
    assert {n: getattr(run, n) for n in shared} == given
    assert (run.method, run.seed, run.progress, run.extra) == ("clnp", 2, False, {"share": "declining"})


def test_the_table_says_where_its_runs_ran_and_which_ran_on_another_machine(tmp_path):
    """The same run gives other figures on another processor, and a comparison reuses finished runs, so a table
    continued on another machine would mix the two unseen: ``comparison.md`` names the machine, or each machine's
    runs; a run resumed on another machine is listed under both."""
    config = CompareConfig(benchmark="split-digits", methods=["finetune"], seeds=2, tasks=2, epochs=1, model="mlp:8")
    summary = compare(config, tmp_path)
    [(machine, runs)] = summary["machines"].items()
    assert runs == ["finetune s0", "finetune s1"] and f"torch {torch.__version__}" in machine
    assert f"Every run ran on {machine}." in (tmp_path / "comparison.md").read_text()

    results = tmp_path / "finetune" / "s1" / "results.json"
    moved = json.loads(results.read_text())
    assert [task["machine"] for task in moved["tasks"]] == [machine, machine]
    other = f"Another CPU (AVX2 kernels), torch {torch.__version__}"
    moved["tasks"][1]["machine"] = other  # task 1 learned after a resume on another machine
    results.write_text(json.dumps(moved))
    summary = compare(dataclasses.replace(config, run_missing=False), tmp_path)
    assert summary["machines"] == {machine: ["finetune s0", "finetune s1"], other: ["finetune s1"]}
    table = (tmp_path / "comparison.md").read_text()
    assert "The runs ran on 2 machines" in table and f"- {other}: finetune s1" in table
