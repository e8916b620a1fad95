"""The friction a new user meets at once (issue 15): help, messages, progress lines, paths, file modes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clnp.cli import METHOD_NAMES, build_parser, main
from clnp.data.benchmarks import BENCHMARKS
from clnp.methods import METHODS

QUICK = ["--tasks", "2", "--model", "mlp:32", "--epochs", "8", "--finetune-epochs", "0", "--l1", "0", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _help(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "clnp.cli", *argv, "--help"], capture_output=True, text=True,
                          env=ENV, timeout=120, check=True)
    return " ".join(proc.stdout.split())


def test_run_help_lists_the_methods_and_explains_every_flag():
    assert set(METHOD_NAMES) == set(METHODS)
    text = _help("run")
    assert ", ".join(METHOD_NAMES) in text
    assert "--batch-size BATCH_SIZE training minibatch size" in text
    for action in build_parser()._subparsers._group_actions[0].choices["run"]._actions:
        assert action.help, f"{action.option_strings} has no help"


def test_benchmarks_shows_each_benchmarks_defaults(capsys):
    assert main(["benchmarks"]) == 0
    out = capsys.readouterr().out
    for spec in BENCHMARKS.values():
        assert f"--model {spec.defaults['model']}" in out
    assert "defaults: --tasks 5 (at most 5) --model mlp:256,256 --epochs 60 --batch-size 32" in out
    assert "every benchmark" in out and "--l1 0.003" in out and "--margin 1" in out and "--finetune-epochs 5" in out
    assert "clnp takes its own: --finetune-epochs 10" in out


def test_compare_takes_optimizer_weight_decay_preset_and_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tasks: 2\nmodel: mlp:8\nepochs: 1\nweight_decay: 0.001\n")
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--methods", "finetune", "--optimizer", "sgd", "--lr", "0.05",
                 "--out", str(out)]) == 0
    cfg = json.loads((out / "finetune" / "s0" / "results.json").read_text())["config"]
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["model"], cfg["tasks"]) == (
        "sgd", 0.05, 0.001, "mlp:8", 2)
    printed = capsys.readouterr().out
    assert "[1/1 done" in printed and "finetune seed 0" in printed  # progress: runs done of total
    assert "compare" in _help("compare") and "--preset" in _help("compare") and "--weight-decay" in _help("compare")


def test_a_relative_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *QUICK, "--data-dir", "data", "--out", "run"]) == 0
    stored = json.loads((tmp_path / "run" / "results.json").read_text())["config"]["data_dir"]
    assert stored == str(tmp_path / "data")


def test_resume_of_a_finished_run_rewrites_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    stamp = (out / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert "holds a finished run: nothing to resume" in capsys.readouterr().out
    assert (out / "results.json").stat().st_mtime_ns == stamp
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_exported_files_have_mode_0644_and_every_file_is_printed(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    old = os.umask(0o022)
    try:
        for fmt in ("state_dict", "torchscript"):
            capsys.readouterr()
            assert main(["export", str(out), "--task", "1", "--format", fmt]) == 0
            printed = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()
                       if line.startswith("written ")]
            assert printed
            for path in printed:
                assert Path(path).stat().st_mode & 0o777 == 0o644, path
    finally:
        os.umask(old)
    assert {Path(p).suffix for p in printed} == {".pt"}


def test_export_of_a_baseline_run_says_only_clnp_networks_export(tmp_path, capsys):
    out = tmp_path / "ft"
    shared = QUICK[:6] + ["--no-progress"]  # without CLNP's --finetune-epochs and --l1, which finetune refuses
    assert main(["run", "--method", "finetune", *shared, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--task", "0"]) == 2
    assert "is a run of method 'finetune'; only CLNP networks can be exported" in capsys.readouterr().err


def test_onnx_export_prints_the_graph_and_its_weights_file(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    out = tmp_path / "run"
    assert main(["run", *QUICK, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--task", "1", "--format", "onnx"]) == 0
    printed = capsys.readouterr()
    files = [line.split(" ", 1)[1] for line in printed.out.splitlines() if line.startswith("written ")]
    assert all(Path(f).is_file() for f in files)
    assert {p.name for p in (out / "export").iterdir()} == {Path(f).name for f in files}
    assert "Warning" not in printed.err


def _default_sigint() -> None:
    # A suite started in the background by a shell without job control (``cmd &``) inherits SIGINT
    # ignored, and Python then keeps it ignored: Ctrl-C as a terminal sends it needs the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _long_run(out: Path, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clnp.cli", "run", "--tasks", "3", "--epochs", "300",
                             "--finetune-epochs", "0", "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True, preexec_fn=_default_sigint)


def test_sigterm_and_ctrl_c_say_how_to_resume(tmp_path):
    for sig, code, word in ((signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")):
        out = tmp_path / f"run-{code}"
        proc = _long_run(out)
        deadline = time.monotonic() + 120
        while not (out / "checkpoint" / "meta.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.01)
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == code, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"clnp run: {word}") and f"continue with: clnp run --resume {out}" in last
        assert "finished task" in last and "Traceback" not in err
        assert not (out / ".clnp.lock").exists()  # released on the way out


def test_a_progress_line_on_a_pipe_reaches_stderr_with_its_newline_in_one_write(monkeypatch):
    """A signal is handled between two writes, never within one: were a line and its newline written apart, the
    SIGTERM or Ctrl-C message could land on the end of the progress line (seen under load)."""
    from clnp.experiments import progress

    class Pipe:
        def __init__(self) -> None:
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    pipe = Pipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    progress.say("task 1/3 (split-digits:0/1) learned in 7.2 s")
    assert pipe.writes == ["task 1/3 (split-digits:0/1) learned in 7.2 s\n"]


def test_progress_on_a_pipe_is_plain_lines_per_epoch_search_and_finished_task(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "clnp.cli", "run", *QUICK[:-1], "--out", str(out)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    epochs = int(QUICK[QUICK.index("--epochs") + 1])
    per_task = [f"train epoch {e}/{epochs}" for e in range(1, epochs + 1)] + ["choosing the pruning", "learned in"]
    assert len(lines) == 2 * len(per_task), lines
    for i, line in enumerate(lines):
        task = i // len(per_task) + 1
        assert line.startswith(f"task {task}/2") and per_task[i % len(per_task)] in line, line
    assert "test accuracy" in lines[len(per_task) - 1] and "validation" in lines[0]


def test_the_parser_offers_exactly_the_registered_names_and_builds_without_torch():
    from clnp.cli import BENCHMARK_NAMES, EXPORT_FORMATS, PRESET_NAMES
    from clnp.experiments.config import PRESETS
    from clnp.exporting import FORMATS

    assert sorted(BENCHMARK_NAMES) == sorted(BENCHMARKS) and sorted(PRESET_NAMES) == sorted(PRESETS)
    assert tuple(EXPORT_FORMATS) == tuple(FORMATS)
    # The package's __init__ imports the library (torch); the command line itself does not need it.
    src = Path(__file__).resolve().parent.parent / "src" / "clnp"
    code = ("import sys, types\n"
            f"pkg = types.ModuleType('clnp'); pkg.__path__ = [{str(src)!r}]; sys.modules['clnp'] = pkg\n"
            "import clnp.cli\n"
            "for argv in (['run', '--help'], ['compare', '--help'], ['export', '--help'], ['--help']):\n"
            "    try:\n"
            "        clnp.cli.build_parser().parse_args(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "assert 'torch' not in sys.modules, 'the parser imported torch'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_an_interrupted_compare_says_that_running_it_again_continues(tmp_path, monkeypatch, capsys):
    from .conftest import interrupt_runs

    interrupt_runs(monkeypatch, after=lambda row: row["task"] == 1)
    argv = ["compare", "--methods", "ewc", "--tasks", "2", "--epochs", "1", "--model", "mlp:8", "--out",
            str(tmp_path / "cmp")]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("clnp compare: interrupted; run the same 'clnp compare' again to continue") and \
        err.count("\n") == 1
    monkeypatch.undo()
    assert main(argv) == 0
    assert "resuming the unfinished run" in capsys.readouterr().out
