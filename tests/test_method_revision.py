"""Results of two versions never mix: a run recorded at another revision of its method's results is not the same
run (``clnp compare`` does not reuse it, ``--resume`` refuses it, saying why)."""

from dataclasses import asdict, replace

import pytest
import yaml

from clnp.cli import main
from clnp.experiments.config import RunConfig
from clnp.experiments.identity import same_run
from clnp.methods import METHODS, register, unregister

from .conftest import interrupt_runs

ARGS = ["--tasks", "2", "--model", "mlp:64,64", "--epochs", "3", "--finetune-epochs", "1", "--no-progress"]


def test_a_run_records_its_methods_revision():
    assert RunConfig(method="clnp").check().method_revision == METHODS["clnp"].revision >= 1
    assert RunConfig(method="ewc").check().method_revision == METHODS["ewc"].revision


def test_a_clnp_run_recorded_before_revisions_existed_is_not_the_same_run_but_an_unchanged_baselines_is():
    for method in ("clnp", "ewc"):
        now = asdict(RunConfig(method=method).check())
        earlier = {k: v for k, v in now.items() if k != "method_revision"}  # as an earlier clnp wrote it
        assert same_run(now, earlier) == (METHODS[method].revision == 0)


@pytest.mark.parametrize("recorded_in_config_yaml", [True, False], ids=["config_yaml", "checkpoint_only"])
def test_resuming_a_run_begun_at_another_revision_is_refused_and_changes_nothing(recorded_in_config_yaml, tmp_path,
                                                                                monkeypatch, capsys):
    out = tmp_path / "run"
    register(replace(METHODS["clnp"], revision=METHODS["clnp"].revision - 1), replace=True)
    try:
        interrupt_runs(monkeypatch, after=lambda row: row["task"] == 1)
        assert main(["run", *ARGS, "--out", str(out)]) == 130
        monkeypatch.undo()
    finally:
        unregister("clnp")
    if not recorded_in_config_yaml:  # as a clnp from before revisions wrote it: only the checkpoint tells
        config = yaml.safe_load((out / "config.yaml").read_text())
        del config["method_revision"]
        (out / "config.yaml").write_text(yaml.safe_dump(config))
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    assert "gives other results than this one's" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_method_revision_given_by_hand_must_be_this_clnps():
    with pytest.raises(ValueError, match="method_revision 0: the run was set up by a clnp whose clnp gives other"):
        RunConfig(method="clnp", method_revision=0).check()
