"""Data-parallel training under torchrun (2 processes, gloo on the CPU): one run, identical ranks, zero forgetting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clnp.experiments.config import RunConfig
from clnp.experiments.runner import run

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not Path("/proc/self/task").is_dir(),
                                reason="torch.distributed, or Linux's /proc (to find torchrun's ranks), is missing")

ARGS = ["--benchmark", "split-digits", "--epochs", "10", "--device", "cpu", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = _torchrun("-m", "clnp", "run", *ARGS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_a_two_process_ddp_run_ends_with_zero_forgetting_in_one_run_directory_like_a_single_process_run(
        ddp_run, tmp_path):
    results = json.loads((ddp_run / "results.json").read_text())
    assert results["backward_transfer"] == 0.0
    matrix = results["accuracy_matrix"]
    for j in range(len(matrix)):
        assert len({row[j] for row in matrix[j:]}) == 1  # every old task exactly as it was
    assert results["average_accuracy"] > 0.9
    single = run(RunConfig(benchmark="split-digits", epochs=10, device="cpu", progress=False), tmp_path / "single")
    assert set(results) == set(single)
    assert sorted(p.name for p in ddp_run.iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())


def test_a_ddp_run_killed_after_its_first_task_resumes_under_torchrun_to_the_same_results(ddp_run, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "clnp", "run", *ARGS, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    meta = out / "checkpoint" / "meta.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.is_file() and json.loads(meta.read_text()).get("step", 0) >= 1:
            break
        time.sleep(0.02)
    # torchrun starts each rank in a session of its own: kill the ranks, then the launcher.
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 2, children
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists(), "the run finished before it could be killed"
    resumed = _torchrun("-m", "clnp", "run", "--resume", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = json.loads((out / "results.json").read_text())
    want = json.loads((ddp_run / "results.json").read_text())
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    assert got["capacity"] == want["capacity"]
    assert got["resumed_at_tasks"] and got["resumed_at_tasks"][0] >= 1


SCRIPT = """
import sys
import torch
import clnp
from clnp.engine import distributed

distributed.init_from_env(torch.device("cpu"))
tasks = clnp.split_digits(seed=0)[:3]
learner = clnp.CLNP(clnp.build_model("mlp:64,64:bn", (1, 8, 8)),
                    clnp.CLNPConfig(epochs=6, finetune_epochs=1, batch_size=16, lr=3e-3, expected_tasks=3))
learner.learn(tasks[0])
learner.net.eval()
with torch.no_grad():
    before = learner.net(tasks[0].test.x, 0).clone()
for task in tasks[1:]:
    learner.learn(task)
with torch.no_grad():
    after = learner.net(tasks[0].test.x, 0).clone()
torch.save({"state": learner.net.state_dict(), "before": before, "after": after,
            "plan": [(r.budget, r.trained, r.over_budget, r.owned, r.given_up) for r in learner.reports],
            "acc": [learner.accuracy(t, task.test.x, task.test.y) for t, task in enumerate(tasks)]},
           f"{sys.argv[1]}/rank{distributed.rank()}.pt")
"""


def test_ddp_in_the_library_keeps_every_rank_bit_identical_batch_norm_statistics_and_the_plan_included(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = _torchrun(str(script), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["state"].keys() == r1["state"].keys()
    for name in r0["state"]:
        assert torch.equal(r0["state"][name], r1["state"][name]), name
    assert any("running_mean" in name for name in r0["state"])
    assert r0["plan"] == r1["plan"] and all(budget is not None for budget, *_ in r0["plan"])  # the ranks plan alike
    # annealed (batch 8 a rank: about 16 steps an epoch, past ANNEAL_AFTER_STEPS from the third epoch)
    assert all(max(owned) <= max(budget) < max(trained) for budget, trained, _, owned, _ in r0["plan"])
    for r in (r0, r1):
        assert torch.equal(r["before"], r["after"])  # zero forgetting on each rank
    assert min(r0["acc"]) > 0.85


@pytest.mark.parametrize("method", ["si", "hat", "packnet"])
def test_baselines_train_under_ddp_with_every_rank_identical_after_every_task(method, tmp_path):
    """SI adds its penalty's gradient without a second backward pass, HAT trains embeddings outside the
    network, PackNet masks weights: under DDP the runner's digest check after every task passes."""
    out = tmp_path / "run"
    proc = _torchrun("-m", "clnp", "run", "--method", method, "--benchmark", "split-digits", "--tasks", "3",
                     "--epochs", "3", "--device", "cpu", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 3


@pytest.mark.parametrize("method", ["clnp", "packnet"])
def test_a_traced_resnet_trains_under_ddp_with_every_rank_identical_and_clnp_forgets_nothing(method, tmp_path):
    """A graph model (taps, column cuts, GraphBatchNorm) under DDP: the runner's digest check after every task
    passes, and CLNP's backward transfer is exactly 0."""
    out = tmp_path / "run"
    proc = _torchrun("-m", "clnp", "run", "--method", method, "--benchmark", "split-digits", "--model", "resnet18:4",
                     "--tasks", "2", "--epochs", "6", "--device", "cpu", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 2
    if method == "clnp":
        assert results["backward_transfer"] == 0.0


SHARD_SCRIPT = """
import json, sys
import torch
import clnp
from clnp.core.activity import predict_with_loss
from clnp.engine import distributed
from clnp.methods.clnp import search as method

distributed.init_from_env(torch.device("cpu"))
task = clnp.split_digits(seed=0)[0]
torch.manual_seed(0)
net = clnp.build_model("mlp:64,64", (1, 8, 8))
learner = clnp.CLNP(net, clnp.CLNPConfig(device="cpu"))
net.add_head(task.n_classes)
probe = learner._search_inputs(task, learner.config.margin)  # 37 validation inputs and training inputs: odd shards
reference = predict_with_loss(net, 0, probe)[0]
keep = [torch.arange(64) % 3 != 0, torch.arange(64) % 2 == 0]
rows = []  # inputs this rank predicts for the search's evaluation
real = method.predict_with_loss
method.predict_with_loss = lambda net, t, x, *args, **kw: (rows.append(len(x)), real(net, t, x, *args, **kw))[1]
shared = learner._score(task, 0, keep, None, probe, reference)
method.predict_with_loss = real
predicted, _, confidence = predict_with_loss(net, 0, probe[:len(task.val)], task.val.y, keep)
whole = predict_with_loss(net, 0, probe, None, keep)[0]
json.dump({"shared": list(shared), "accuracy": float((predicted == task.val.y).sum()) / len(task.val),
           "agreement": float((whole == reference).sum()) / len(probe), "confidence": confidence,
           "rows": sum(rows), "inputs": len(probe)},
          open(f"{sys.argv[1]}/rank{distributed.rank()}.json", "w"))
distributed.shutdown(clean=True)
"""


def test_the_search_shares_each_evaluation_out_and_every_rank_judges_it_alike(tmp_path):
    script = tmp_path / "score.py"
    script.write_text(SHARD_SCRIPT)
    proc = _torchrun(str(script), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["shared"] == r1["shared"]  # bit-identical on both ranks: the same path through the search
    accuracy, agreement, confidence = r0["shared"]
    assert (accuracy, agreement) == (r0["accuracy"], r0["agreement"])  # what one rank finds on everything
    assert 0 < agreement < 1 and abs(confidence - r0["confidence"]) < 1e-9
    assert r0["rows"] + r1["rows"] == r0["inputs"] and abs(r0["rows"] - r1["rows"]) <= 1  # half each


def test_a_ddp_run_resumed_without_torchrun_is_refused_with_one_line_naming_its_world_size(ddp_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(ddp_run, out)
    (out / "results.json").unlink()  # every task is in the checkpoint: a resume would only write the results
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["world_size"] == 2
    proc = subprocess.run([sys.executable, "-m", "clnp", "run", "--resume", str(out), "--no-progress"], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("clnp run: error:") and proc.stderr.count("\n") == 1, proc.stderr
    assert "2 processes" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "results.json").exists()
