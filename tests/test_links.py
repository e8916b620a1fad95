"""Links inside a run directory never lead clnp to a file outside it (issue 24, item 3).

clnp writes or deletes only files it made. A symbolic link at a name clnp writes in a run directory
(its lock, marker, config, log, results, plots, ``checkpoint/`` and ``export/`` and their files,
the temporary names of its atomic writes) is refused with one line (exit 2 from the CLI); the link
and whatever it points to are left as they were.
"""

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from clnp.cli import main
from clnp.experiments.checkpoint import atomic_write_bytes, save_checkpoint

QUICK = ["--tasks", "2", "--model", "mlp:32", "--epochs", "8", "--finetune-epochs", "0", "--l1", "0", "--no-progress"]


def _snapshot(root: Path) -> dict:
    """Every entry under ``root``: a link's target, a file's SHA-256, or 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p] = ("link", os.readlink(p))
        elif p.is_file():
            out[p] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[p] = "dir"
    return out


def _one_line_error(err: str) -> None:
    assert err.startswith("clnp ") and "error:" in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished two-task run with its report's plots and task 0 exported in two formats."""
    out = tmp_path_factory.mktemp("links") / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert main(["export", str(out), "--task", "0"]) == 0
    assert main(["export", str(out), "--task", "0", "--format", "state_dict"]) == 0
    return out


def _outside(tmp_path: Path) -> tuple[Path, Path]:
    """A user's folder outside the run directory, holding files of clnp's names, and a user's file."""
    folder = tmp_path / "users_folder"
    folder.mkdir()
    for name in ("meta.json", "tensors-0001.safetensors", "tensors-0002.safetensors", "task-0.pt",
                 "task-0.safetensors", "task-0.json"):
        (folder / name).write_bytes(f"the user's own {name}\n".encode())
    users_file = tmp_path / "users_file.txt"
    users_file.write_text("the user's own file, not clnp's\n")
    return folder, users_file


def _plant(run: Path, name: str, folder: Path, users_file: Path) -> Path:
    """Replace ``run/name`` by a link: to the user's folder for a folder name, else to the user's file."""
    where = run / name
    if where.is_dir() and not where.is_symlink():
        shutil.rmtree(where)
    elif where.exists() or where.is_symlink():
        where.unlink()
    where.parent.mkdir(parents=True, exist_ok=True)
    where.symlink_to(folder if name in ("checkpoint", "export") else users_file)
    return where


PID = os.getpid()
NAMES = [".clnp.lock", ".clnp-run", "config.yaml", "log.csv", "results.json", "accuracy_matrix.png",
         "task_accuracy.png", "capacity.png", "training.png", "capacity_forecast.png", "checkpoint",
         "checkpoint/meta.json", "checkpoint/tensors-0001.safetensors", "checkpoint/tensors-0002.safetensors",
         "export", "export/task-0.pt2", "export/task-0.safetensors", "export/task-0.json",
         f".results.json.tmp-{PID}", f".log.csv.tmp-{PID}", f"checkpoint/.meta.json.tmp-{PID}",
         f".capacity.png.tmp-{PID}", f"export/.task-0.pt2.tmp-{PID}", f"export/.task-0.safetensors.tmp-{PID}"]
WRITES = {
    "report": {"accuracy_matrix.png", "task_accuracy.png", "capacity.png", "training.png", "capacity_forecast.png",
               f".capacity.png.tmp-{PID}"},
    "export": {"export", "export/task-0.pt2", f"export/.task-0.pt2.tmp-{PID}"},
    "export_state_dict": {"export", "export/task-0.safetensors", "export/task-0.json",
                          f"export/.task-0.safetensors.tmp-{PID}"},
}
"""What each command other than ``run`` writes (``run``, ``--overwrite`` and ``--resume`` refuse every link)."""
COMMANDS = {
    "run": lambda d: ["run", *QUICK, "--out", str(d)],
    "overwrite": lambda d: ["run", *QUICK, "--out", str(d), "--overwrite"],
    "resume": lambda d: ["run", "--resume", str(d), "--no-progress"],
    "report": lambda d: ["report", str(d)],
    "export": lambda d: ["export", str(d), "--task", "0"],
    "export_state_dict": lambda d: ["export", str(d), "--task", "0", "--format", "state_dict"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", NAMES)
def test_no_file_outside_a_run_directory_changes_whatever_links_it_holds(finished_run, tmp_path, capsys, name,
                                                                        command):
    folder, users_file = _outside(tmp_path)
    run = tmp_path / "run"
    if command == "run":  # a fresh run into a directory that holds only the link
        run.mkdir()
    else:
        shutil.copytree(finished_run, run, symlinks=True)
        if command == "resume":  # every task is in the checkpoint; resuming writes results.json (and log)
            (run / "results.json").unlink()
    link = _plant(run, name, folder, users_file)
    outside = {**_snapshot(folder), users_file: _snapshot(tmp_path)[users_file]}
    capsys.readouterr()

    code = main(COMMANDS[command](run))

    err = capsys.readouterr().err
    assert {**_snapshot(folder), users_file: _snapshot(tmp_path)[users_file]} == outside
    assert link.is_symlink() and link.resolve() == (folder if name in ("checkpoint", "export") else users_file)
    writes = command in ("run", "overwrite", "resume") or name in WRITES[command]
    if writes:
        assert code == 2, err
        _one_line_error(err)
        if command != "run" or name == ".clnp.lock":  # a fresh run refuses any other non-empty directory anyway
            assert "link" in err, err
    else:
        assert code in (0, 2), err


def test_a_lock_file_that_is_a_link_is_refused_and_the_file_it_points_to_is_unchanged(finished_run, tmp_path,
                                                                                      capsys):
    folder, users_file = _outside(tmp_path)
    before = users_file.read_bytes()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".clnp.lock").symlink_to(users_file)
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    (copy / ".clnp.lock").symlink_to(users_file)
    (copy / "results.json").unlink()
    capsys.readouterr()
    for argv in (["run", *QUICK, "--out", str(fresh)], ["run", *QUICK, "--out", str(copy), "--overwrite"],
                 ["run", "--resume", str(copy), "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        _one_line_error(err)
        assert ".clnp.lock" in err and "link" in err
        assert users_file.read_bytes() == before


def test_a_checkpoint_folder_that_is_a_link_is_refused_and_the_users_files_there_are_unchanged(finished_run,
                                                                                              tmp_path, capsys):
    folder, users_file = _outside(tmp_path)
    before = _snapshot(folder)
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    shutil.copytree(copy / "checkpoint", tmp_path / "a_real_checkpoint")
    _plant(copy, "checkpoint", folder, users_file)
    capsys.readouterr()
    assert main(["run", *QUICK, "--out", str(copy), "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "checkpoint" in err and "link" in err
    assert _snapshot(folder) == before

    # A link to a real checkpoint outside is not resumed into either: resuming would write there.
    (copy / "checkpoint").unlink()
    (copy / "checkpoint").symlink_to(tmp_path / "a_real_checkpoint")
    (copy / "results.json").unlink()
    real_before = _snapshot(tmp_path / "a_real_checkpoint")
    assert main(["run", "--resume", str(copy), "--no-progress"]) == 2
    _one_line_error(capsys.readouterr().err)
    assert _snapshot(tmp_path / "a_real_checkpoint") == real_before


@pytest.mark.parametrize("plot", ["accuracy_matrix.png", "task_accuracy.png", "capacity.png", "training.png",
                                  "capacity_forecast.png"])
def test_report_never_writes_a_plot_through_a_link(finished_run, tmp_path, capsys, plot):
    folder, users_file = _outside(tmp_path)
    before = users_file.read_bytes()
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    _plant(copy, plot, folder, users_file)
    plots_dir = tmp_path / "plots"
    plots_dir.mkdir()
    (plots_dir / plot).symlink_to(users_file)
    capsys.readouterr()
    for argv in (["report", str(copy)], ["report", str(copy), "--plots-dir", str(plots_dir)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and plot in err and "link" in err, err
        assert users_file.read_bytes() == before


@pytest.mark.parametrize("name", ["export", "export/task-0.pt", "export/task-0.pt2", "export/task-0.safetensors",
                                  "export/task-0.json"])
def test_export_never_writes_through_an_export_folder_or_file_that_is_a_link(finished_run, tmp_path, capsys, name):
    folder, users_file = _outside(tmp_path)
    before = {**_snapshot(folder), users_file: users_file.read_bytes()}
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    _plant(copy, name, folder, users_file)
    fmt = {".pt": "torchscript", ".pt2": "exported_program"}.get(Path(name).suffix, "state_dict")
    capsys.readouterr()
    assert main(["export", str(copy), "--task", "0", "--format", fmt]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "link" in err
    assert {**_snapshot(folder), users_file: users_file.read_bytes()} == before


def test_an_atomic_write_never_writes_through_a_link_at_its_temporary_or_final_name(tmp_path):
    users_file = tmp_path / "users_file.txt"
    users_file.write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    for name in (f".results.json.tmp-{os.getpid()}", "results.json"):
        (run / name).symlink_to(users_file)
        with pytest.raises(ValueError, match="link"):
            atomic_write_bytes(run / "results.json", b"{}\n")
        assert users_file.read_text() == "mine" and (run / name).is_symlink()
        (run / name).unlink()
    (run / f".results.json.tmp-{os.getpid()}").write_text("left by a killed process of the same pid")
    atomic_write_bytes(run / "results.json", b"{}\n")
    assert (run / "results.json").read_bytes() == b"{}\n" and [p.name for p in run.iterdir()] == ["results.json"]


def test_a_checkpoint_is_never_saved_into_a_folder_that_is_a_link(tmp_path):
    import torch

    folder = tmp_path / "users_folder"
    folder.mkdir()
    (folder / "tensors-0001.safetensors").write_text("mine")
    (tmp_path / "checkpoint").symlink_to(folder)
    with pytest.raises(ValueError, match="link"):
        save_checkpoint(tmp_path / "checkpoint", {"w": torch.zeros(2)}, {}, step=2)
    assert [p.name for p in folder.iterdir()] == ["tensors-0001.safetensors"]
    assert (folder / "tensors-0001.safetensors").read_text() == "mine"


@pytest.mark.parametrize("name", ["comparison.json", "comparison.md", "accuracy_per_task.png", "clnp/s0/results.json",
                                  "clnp/s0/checkpoint"])
def test_compare_never_writes_its_tables_or_runs_through_a_link(tmp_path, capsys, name):
    folder, users_file = _outside(tmp_path)
    before = {**_snapshot(folder), users_file: users_file.read_bytes()}
    out = tmp_path / "cmp"
    (out / name).parent.mkdir(parents=True)
    (out / name).symlink_to(folder if name.endswith("checkpoint") else users_file)
    capsys.readouterr()
    assert main(["compare", "--methods", "clnp", "--seeds", "1", *QUICK[:-1], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "link" in err
    assert {**_snapshot(folder), users_file: users_file.read_bytes()} == before
    assert (out / name).is_symlink()
