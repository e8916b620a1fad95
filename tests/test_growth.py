"""Growth: a network that gains free units keeps every earlier task's outputs bit-identical."""

from __future__ import annotations

import pytest
import torch

import clnp
from clnp.data.benchmarks import split_digits
from clnp.exporting import export

MODELS = {"mlp": "mlp:24,24", "cnn": "cnn:6,6/16", "cnn_bn": "cnn:6,6/16:bn"}


def _old_logits(net: clnp.CLNPNet, tasks, n: int) -> list[torch.Tensor]:
    net.eval()
    with torch.no_grad():
        return [net(tasks[t].test.x, t).clone() for t in range(n)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_growing_every_layer_leaves_old_tasks_bit_identical_through_later_tasks_and_a_reload(name):
    torch.manual_seed(0)
    tasks = split_digits(seed=0)[:3]
    net = clnp.build_model(MODELS[name], (1, 8, 8))
    learner = clnp.CLNP(net, clnp.CLNPConfig(epochs=4, finetune_epochs=1, batch_size=32, lr=3e-3, min_gain=0))
    learner.learn(tasks[0])
    before = _old_logits(net, tasks, 1)
    widths = net.widths
    for layer in range(len(net.blocks)):
        net.grow_(layer, 3)
    assert net.widths == [w + 3 for w in widths]
    assert all(torch.equal(a, b) for a, b in zip(before, _old_logits(net, tasks, 1), strict=True))
    learner.learn(tasks[1])
    for layer in range(len(net.blocks)):
        net.grow_(layer, 2 + layer)
    learner.learn(tasks[2])
    after = _old_logits(net, tasks, 3)
    assert torch.equal(before[0], after[0])
    fresh = clnp.build_model(MODELS[name], (1, 8, 8))
    for t in range(3):
        fresh.add_head(tasks[t].n_classes)
    fresh.load_state_dict(net.state_dict())  # the fresh network grows to the loaded shapes
    assert fresh.widths == net.widths
    assert all(torch.equal(a, b) for a, b in zip(after, _old_logits(fresh, tasks, 3), strict=True))
    for t in range(3):
        model = export(net, t)
        with torch.no_grad():
            assert torch.allclose(model(tasks[t].test.x), after[t], atol=1e-4)


def test_growth_cuts_the_new_inputs_of_owned_units_and_frees_the_new_units():
    net = clnp.mlp(64, (8, 8), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, clnp.CLNPConfig(epochs=2, finetune_epochs=0, batch_size=32, min_gain=0))
    learner.learn(split_digits(seed=0)[0])
    owned = net.blocks[1].layer.owner != clnp.FREE
    net.grow_(0, 4)
    assert net.free_units()[0] == learner.reports[0].free_after[0] + 4
    new_columns = net.blocks[1].layer.weight[:, 8:]
    assert torch.equal(new_columns[owned], torch.zeros_like(new_columns[owned]))
    assert net.heads[0].weight.shape[1] == 8


def test_growing_by_nothing_or_an_unknown_layer_is_refused():
    net = clnp.mlp(64, (8,), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="at least one unit"):
        net.grow_(0, 0)
    with pytest.raises(IndexError, match="no prunable layer 3"):
        net.grow_(3, 1)


# ------------------------------------------------------------------ growth in runs, the forecast, the advice
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from clnp.cli import main  # noqa: E402
from clnp.experiments.config import RunConfig  # noqa: E402
from clnp.experiments.runner import resume, run  # noqa: E402

# The greedy search at a 2-point margin, which fills this network and grows it within its cap (the plan fits the
# stream without growth: tests/test_capacity_plan.py).
FULL = ["run", "--benchmark", "permuted-digits", "--tasks", "10", "--model", "mlp:32,32", "--no-progress",
        "--option", "clnp.plan=false", "--margin", "2"]


def test_permuted_digits_on_a_narrow_mlp_stops_with_advice_and_finishes_every_task_with_grow(tmp_path, capsys):
    assert main([*FULL, "--out", str(tmp_path / "plain")]) == 3
    err = capsys.readouterr().err
    assert re.search(r"layer \d:Linear\((64|32)->32\) has no free unit left", err) and "the last tasks kept" in err
    assert "remaining tasks need widths" in err and "--grow" in err
    widths = re.search(r"need widths (\d+),(\d+) \(--model mlp:(\d+),(\d+)\)", err)
    assert widths is not None, err  # the run's own spec, with the widths it needs
    assert widths.group(1, 2) == widths.group(3, 4) and int(widths.group(1)) > 32
    assert main([*FULL, "--grow", "--out", str(tmp_path / "grown")]) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "grown" / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 10 and results["backward_transfer"] == 0.0
    grown = [row["grown_by_task"] for row in results["capacity"]]
    assert all(len(g) == 10 for g in grown) and sum(map(sum, grown)) > 0
    assert [row["units"] for row in results["capacity"]] == [32 + sum(g) for g in grown]
    assert [t["grown"] for t in results["tasks"]] == [list(col) for col in zip(*grown, strict=True)]
    assert "(+" in printed and "capacity forecast after task 9" in printed
    forecast = results["capacity_forecast"]
    assert len(forecast) == 10 and forecast[3]["after_task"] == 3
    assert {"layer", "free", "units_per_task", "tasks_that_fit"} <= set(forecast[3]["layers"][0])


def test_growth_stops_at_its_cap_with_the_old_capacity_error(tmp_path):
    config = RunConfig(benchmark="permuted-digits", tasks=10, model="mlp:32,32", grow=True, progress=False,
                       extra={"max_growth": 1.5, "plan": False})  # the plan fits this stream into 48 units
    from clnp.methods.clnp import CapacityError

    with pytest.raises(CapacityError, match=r"cap of max_growth=1.5 times its initial 32"):
        run(config, tmp_path / "run")


def test_a_grown_run_killed_part_way_resumes_to_the_same_results(tmp_path):
    args = ["--benchmark", "permuted-digits", "--tasks", "6", "--model", "mlp:16,16", "--epochs", "10", "--grow",
            "--no-progress"]
    reference = run(RunConfig(benchmark="permuted-digits", tasks=6, model="mlp:16,16", epochs=10, grow=True,
                              progress=False), tmp_path / "reference")
    assert any(any(row["grown_by_task"][1:]) for row in reference["capacity"])
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "clnp", "run", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = Path(out) / "checkpoint" / "meta.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.is_file() and json.loads(meta.read_text()).get("step", 0) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    resumed = resume(out, progress=False)
    assert resumed["accuracy_matrix"] == reference["accuracy_matrix"]
    assert resumed["capacity"] == reference["capacity"]
    assert resumed["resumed_at_tasks"][0] >= 3


def test_the_forecast_divides_the_free_units_by_the_units_per_task_so_far_and_names_the_layer_that_fills_first():
    from clnp.core.capacity import forecast, width_for

    f = forecast([[10, 30], [20, 10]], [100, 40], ["a", "b"])
    assert [row["units_per_task"] for row in f["layers"]] == [15.0, 20.0]
    assert [row["tasks_that_fit"] for row in f["layers"]] == [6, 2]
    assert f["fills_first"] == "b" and f["after_task"] == 1
    assert forecast([[0, 5]], [8, 3], ["a", "b"])["layers"][0]["tasks_that_fit"] is None  # never fills
    assert width_for(32, 2, 10.5, 3) == 32 + 30  # 31.5 - 2 = 29.5 -> 30 more units
    assert width_for(32, 50, 10.0, 3) == 32


@pytest.mark.parametrize("spec, widths, expected", [
    ("mlp:256,256", [300, 12], "mlp:300,12"),
    ("cnn:16,16/64:bn", [17, 17, 80], "cnn:17,17/80:bn"),
    ("cnn:8,8", [9, 10], "cnn:9,10"),
    ("mlp:100:dropout=0.2", [5], "mlp:5:dropout=0.2"),
])
def test_the_width_advice_names_the_run_model_with_the_widths_it_needs(spec, widths, expected):
    from clnp.core.network import spec_with_widths

    assert spec_with_widths(spec, widths) == expected
    with pytest.raises(ValueError, match="has 2 layers; got 3 widths"):
        spec_with_widths("mlp:4,4", [1, 2, 3])
