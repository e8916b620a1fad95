"""Checkpoints verified end to end (issue 15, items 5 and 6).

The metadata is covered by a checksum (kept in the tensor file's header), and loading checks that
owners, heads and shapes are consistent with the configuration and with each other. Every mismatch,
even one whose checksums were re-sealed, is a ``CheckpointError``: on the command line one line, exit
code 2, and the run directory left as it was.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from clnp.cli import main
from clnp.experiments import checkpoint as ck
from clnp.experiments.checkpoint import CheckpointError, load_checkpoint
from clnp.experiments.config import RunConfig
from clnp.experiments.runner import resume, run

CFG = dict(tasks=3, model="mlp:32,32", epochs=15, finetune_epochs=1, l1=0.0, margin=1.0, progress=False)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run directory whose run was interrupted in its third task (a template copied by each test)."""
    out = tmp_path_factory.mktemp("stopped") / "run"

    def interrupt(row):
        if row["task"] == 2:
            raise KeyboardInterrupt("stopped")

    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(**CFG), out, on_epoch=interrupt)
    assert load_checkpoint(out / "checkpoint")[1]["step"] == 2
    return out


@pytest.fixture
def run_dir(stopped, tmp_path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(stopped, out)
    return out


def _files(out: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _forge(out: Path, tensors_edit=None, meta_edit=None) -> None:
    """Edit the checkpoint and re-seal both checksums, as a careful forger (or a buggy writer) would."""
    directory = out / "checkpoint"
    meta = json.loads((directory / "meta.json").read_text())
    path = directory / meta["tensor_file"]
    data = path.read_bytes()
    tensors = dict(st_load(data))
    if tensors_edit:
        tensors_edit(tensors)
    if meta_edit:
        meta_edit(meta)
    new = st_save(tensors, metadata={ck.META_HASH_KEY: ck.meta_digest(meta)})
    path.write_bytes(new)
    meta["tensor_bytes"], meta["tensor_sha256"] = len(new), hashlib.sha256(new).hexdigest()
    (directory / "meta.json").write_text(json.dumps(meta))


def _refused(out: Path, capsys, *expected: str) -> None:
    before = _files(out)
    with pytest.raises(CheckpointError):
        resume(out)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clnp run: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "checkpoint" in err
    for text in expected:
        assert text in err, err
    assert _files(out) == before
    assert not (out / "results.json").exists()


def test_an_edited_meta_json_is_refused_by_the_metadata_checksum(run_dir, capsys):
    meta_path = run_dir / "checkpoint" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["accuracy_rows"][0][0] = 0.5
    meta_path.write_text(json.dumps(meta, indent=1))
    _refused(run_dir, capsys, "meta.json: the metadata does not match its SHA-256 checksum")


def test_the_untouched_stopped_run_resumes(run_dir):
    results = resume(run_dir)
    assert len(results["accuracy_matrix"]) == 3 and results["backward_transfer"] == 0.0


def _owner(tensors, value_fn):
    key = "blocks.0.layer.owner"
    tensors[key] = value_fn(tensors[key])


@pytest.mark.parametrize("edit, message", [
    (lambda t: _owner(t, lambda o: torch.full_like(o, 7)), "blocks.0.layer.owner holds task ids 7..7"),
    (lambda t: _owner(t, lambda o: torch.full_like(o, -1)), "layer 0 has 0 units owned by task 0; its report says"),
    (lambda t: _owner(t, lambda o: o.flip(0)), "non-zero weights where the owner vectors say they are cut"),
    (lambda t: t.__setitem__("blocks.1.layer.weight", torch.zeros(32, 31)), "tensor blocks.1.layer.weight is (32, 31)"),
    (lambda t: t.pop("heads.1.bias"), "missing heads.1.bias"),
    (lambda t: t.__setitem__("extra.weight", torch.zeros(2)), "unexpected extra.weight"),
    (lambda t: t.__setitem__(ck.RNG_KEY, torch.zeros(10, dtype=torch.uint8)), "RNG state"),
], ids=["owners_7", "owners_all_free", "owners_reversed", "wrong_shape", "missing_tensor", "extra_tensor",
        "bad_rng_state"])
def test_a_resealed_checkpoint_whose_tensors_do_not_fit_is_a_checkpoint_error(run_dir, capsys, edit, message):
    _forge(run_dir, tensors_edit=edit)
    _refused(run_dir, capsys, message)


def _drop_reports(meta):
    del meta["learner"]["reports"]


def _extra_head(meta):
    meta["learner"]["heads"].append(2)


@pytest.mark.parametrize("edit, message", [
    (_drop_reports, "'learner.reports' must hold one report per finished task"),
    (_extra_head, "the learner has heads [2, 2, 2]"),
    (lambda m: m["accuracy_rows"][0].append(0.9), "'accuracy_rows' must hold 2 rows"),
    (lambda m: m["config"].__setitem__("margin", 7.0), "margin 7.0 in the checkpoint, 1.0 in config.yaml"),
], ids=["missing_reports", "changed_head_count", "bad_rows", "other_config"])
def test_resealed_metadata_that_does_not_fit_is_a_checkpoint_error(run_dir, capsys, edit, message):
    _forge(run_dir, meta_edit=edit)
    _refused(run_dir, capsys, message)


def test_a_checkpoint_that_is_a_file_or_a_meta_json_that_is_a_folder_is_refused(run_dir, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    shutil.rmtree(run_dir / "checkpoint")
    (run_dir / "checkpoint").write_text("not a checkpoint")
    _refused(run_dir, capsys, "found a file")
    meta = other / "checkpoint" / "meta.json"
    meta.unlink()
    meta.mkdir()
    _refused(other, capsys, "found a directory")
