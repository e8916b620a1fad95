"""Forged checkpoints (issue 24, item 4): a checkpoint re-sealed after an edit passes both checksums, so
what it holds must be checked against itself. A task's widths must be those its owners and reports
give, and no frozen value may be NaN or infinite; otherwise loading is a ``CheckpointError``."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import clnp
from clnp.cli import main
from clnp.experiments import checkpoint as ck
from clnp.experiments.checkpoint import CheckpointError
from clnp.experiments.config import RunConfig
from clnp.experiments.runner import resume, run

# The greedy search (no plan) fills the first task's layers, so the second one grows them.
GROWN = RunConfig(benchmark="permuted-digits", tasks=2, model="mlp:16,16", epochs=3, finetune_epochs=0, grow=True,
                  progress=False, device="cpu", extra={"plan": False})


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> Path:
    """A finished run whose layers grew before its second task (task_widths rows differ)."""
    out = tmp_path_factory.mktemp("grown") / "run"
    results = run(GROWN, out)
    assert any(results["tasks"][1]["grown"]), "the second task did not grow the network"
    return out


@pytest.fixture
def run_dir(grown, tmp_path) -> Path:
    """A copy of the grown run without results.json: a resume loads (and checks) its whole checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(grown, out)
    (out / "results.json").unlink()
    return out


def _tensors(out: Path) -> dict[str, torch.Tensor]:
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    return dict(st_load((out / "checkpoint" / meta["tensor_file"]).read_bytes()))


def _forge(out: Path, edit) -> None:
    """Edit the tensors and re-seal both checksums, as a careful forger would."""
    directory = out / "checkpoint"
    meta = json.loads((directory / "meta.json").read_text())
    path = directory / meta["tensor_file"]
    tensors = dict(st_load(path.read_bytes()))
    edit(tensors)
    new = st_save(tensors, metadata={ck.META_HASH_KEY: ck.meta_digest(meta)})
    path.write_bytes(new)
    meta["tensor_bytes"], meta["tensor_sha256"] = len(new), hashlib.sha256(new).hexdigest()
    (directory / "meta.json").write_text(json.dumps(meta))


def _refused(out: Path, capsys, expected: str) -> None:
    with pytest.raises(CheckpointError, match=expected):
        resume(out)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clnp run: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert not (out / "results.json").exists()


def _narrow_last_row(tensors) -> None:
    tensors["task_widths"][-1] = tensors["task_widths"][0]  # the second task computes at the first one's widths


def _widen_first_row(tensors) -> None:
    tensors["task_widths"][0, 0] += 1  # still within the grown layer, and below the second task's row


@pytest.mark.parametrize("edit, expected", [
    (_narrow_last_row, "task 1 owns unit"),
    (_widen_first_row, "task_widths row 0 says layer 0 had 17 units"),
], ids=["narrowed_last_row", "widened_first_row"])
def test_a_resealed_checkpoint_whose_task_widths_do_not_fit_its_owners_and_reports_is_refused(
        run_dir, capsys, edit, expected):
    _forge(run_dir, edit)
    _refused(run_dir, capsys, expected)


def test_a_network_refuses_a_state_dict_whose_task_widths_cut_off_units_a_task_owns(grown):
    state = {k: v for k, v in _tensors(grown).items() if k != ck.RNG_KEY}
    _narrow_last_row(state)
    net = clnp.build_model(GROWN.model, (1, 8, 8))
    for _ in range(2):
        net.add_head(10)
    with pytest.raises(ValueError, match="task 1 owns unit"):
        net.load_state_dict(state)


def _frozen_row(tensors, layer: int) -> int:
    return int((tensors[f"blocks.{layer}.layer.owner"] == 0).nonzero()[0])


def _nan_in_a_frozen_weight(tensors) -> None:
    tensors["blocks.0.layer.weight"][_frozen_row(tensors, 0), 0] = math.nan


def _inf_in_a_frozen_bias(tensors) -> None:
    tensors["blocks.1.layer.bias"][_frozen_row(tensors, 1)] = math.inf


def _inf_in_a_head(tensors) -> None:
    tensors["heads.0.bias"][0] = -math.inf


@pytest.mark.parametrize("edit, expected", [
    (_nan_in_a_frozen_weight, "blocks.0.layer.weight holds NaN or infinite values in frozen units"),
    (_inf_in_a_frozen_bias, "blocks.1.layer.bias holds NaN or infinite values in frozen units"),
    (_inf_in_a_head, "heads.0.bias holds NaN or infinite values"),
], ids=["nan_frozen_weight", "inf_frozen_bias", "inf_head_bias"])
def test_a_resealed_checkpoint_with_a_non_finite_frozen_value_is_refused(run_dir, capsys, edit, expected):
    _forge(run_dir, edit)
    _refused(run_dir, capsys, expected)


def test_the_untouched_grown_checkpoint_loads(run_dir):
    results = resume(run_dir)
    assert results["backward_transfer"] == 0.0


BASELINES = sorted(m for m in clnp.methods.METHODS if m != "clnp")


@pytest.mark.parametrize("method", BASELINES)
def test_a_resealed_baseline_checkpoint_with_a_nan_is_refused(method, tmp_path, capsys):
    out = tmp_path / "run"
    run(RunConfig(benchmark="split-digits", method=method, tasks=2, model="mlp:12,10", epochs=1, progress=False,
                  device="cpu"), out)
    (out / "results.json").unlink()
    name = min(k for k, t in _tensors(out).items() if t.is_floating_point())

    def poison(tensors) -> None:
        tensors[name].view(-1)[0] = math.nan

    _forge(out, poison)
    _refused(out, capsys, f"{name} holds NaN or infinite values")
