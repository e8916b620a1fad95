"""`clnp report RUN_DIR`: the tables of a finished run, and its plots as PNG files."""

import json
import shutil

import pytest
import torch

import clnp
from clnp.cli import main
from clnp.report import capacity_segments, load_results, summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("accuracy_matrix.png", "task_accuracy.png", "capacity.png")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A real (tiny) run directory: three split-digits tasks, five epochs each."""
    out = tmp_path_factory.mktemp("run")
    args = ["run", "--benchmark", "split-digits", "--tasks", "3", "--epochs", "5", "--out", str(out), "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: one thread is fastest, and far faster on a busy machine
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the run's results.json, so that each test's plots are its own."""
    shutil.copy(finished_run / "results.json", tmp_path / "results.json")
    return tmp_path


def _is_png(path):
    return path.is_file() and path.stat().st_size > 5000 and path.read_bytes()[:8] == PNG_MAGIC


def test_report_prints_the_tables_and_writes_three_plots(run_copy, capsys):
    assert main(["report", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert "clnp on split-digits (3 tasks" in out
    assert "after \\ on" in out and "average accuracy" in out and "backward transfer" in out
    assert "units per layer" in out and "0:Linear(64->256)" in out
    assert "val dense" in out  # the per-task table
    for name in PLOTS:
        assert _is_png(run_copy / name), name
        assert f"wrote {run_copy / name}" in out


def test_the_plan_table_says_what_share_of_the_l1_pull_each_task_trained_under(finished_run, run_copy, capsys):
    tasks = json.loads((finished_run / "results.json").read_text())["tasks"]
    assert main(["report", str(run_copy), "--no-plots"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("T0 ", "T1 ", "T2 ")) and "pts" in line]
    assert "L1 pull" in out and len(rows) == 3
    assert all(row.endswith(" ".join(f"{p:.2f}" for p in task["l1_pull"])) for row, task in zip(rows, tasks,
                                                                                                 strict=True))
    assert tasks[0]["l1_pull"] == [1.0, 1.0]  # the first task: an empty network, the full pull


def test_report_accepts_the_results_file_and_a_separate_plots_dir(run_copy, tmp_path_factory, capsys):
    plots = tmp_path_factory.mktemp("plots") / "sub"
    assert main(["report", str(run_copy / "results.json"), "--plots-dir", str(plots)]) == 0
    assert all(_is_png(plots / name) for name in PLOTS)
    assert not any((run_copy / name).exists() for name in PLOTS)


def test_no_plots_prints_the_tables_only(run_copy, capsys):
    assert main(["report", str(run_copy), "--no-plots"]) == 0
    assert "units per layer" in capsys.readouterr().out
    assert not any((run_copy / name).exists() for name in PLOTS)


def test_results_without_capacity_skip_the_capacity_plot_with_a_note(run_copy, capsys):
    results = json.loads((run_copy / "results.json").read_text())
    results.update(method="finetune", capacity=None)
    (run_copy / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert _is_png(run_copy / "accuracy_matrix.png") and _is_png(run_copy / "task_accuracy.png")
    assert not (run_copy / "capacity.png").exists()
    assert "note: capacity.png: skipped" in out and "no capacity diagnostics" in out


def test_summary_shows_exact_zero_forgetting_per_task(finished_run):
    results, _ = load_results(finished_run)
    text = summary(results)
    assert results["backward_transfer"] == 0.0
    change = next(line for line in text.splitlines() if line.startswith("change"))
    assert change.split()[1:] == ["0", "0"]
    assert "(exactly 0)" in text


def test_capacity_bars_add_up_to_each_layers_units(finished_run):
    results, _ = load_results(finished_run)
    for row in results["capacity"]:
        segments = capacity_segments(row)
        assert len(segments) == 3
        assert all(sum(seg) == row["units"] and min(seg) >= 0 for seg in segments)
        assert [seg[2] for seg in segments] == row["owned_by_task"]
        assert [seg[3] for seg in segments] == row["free_after_task"]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_missing_run_directory_is_a_one_line_error_with_exit_code_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    _one_line_error(capsys, "no such run directory", "nope")


def test_directory_without_results_is_a_one_line_error_with_exit_code_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    _one_line_error(capsys, "no results.json", "clnp run --out")


def test_truncated_results_is_a_one_line_error_with_exit_code_2(run_copy, capsys):
    text = (run_copy / "results.json").read_text()
    (run_copy / "results.json").write_text(text[: len(text) // 2])
    assert main(["report", str(run_copy)]) == 2
    _one_line_error(capsys, "not valid JSON", "results.json")
    assert not (run_copy / "accuracy_matrix.png").exists()


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "expected an object"),
    ('{"benchmark": "x", "method": "clnp"}', "no 'accuracy_matrix'"),
    ('{"benchmark": "x", "method": "clnp", "accuracy_matrix": [[1.0, null], [0.5]]}', "row 1 has 1 entries"),
    ('{"benchmark": "x", "method": "clnp", "accuracy_matrix": [[97.0]]}', "fractions in [0, 1]"),
])
def test_results_of_the_wrong_shape_are_refused_with_exit_code_2(tmp_path, capsys, content, needle):
    (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    _one_line_error(capsys, needle)


def test_training_curves_are_plotted_from_the_epoch_log(run_copy, capsys):
    lines = ["task,phase,epoch,loss,val_accuracy,seconds"]
    for task in range(3):
        lines += [f"{task},train,{e},{1.0 / e:.3f},{0.8 + 0.05 * e:.2f},0.1" for e in (1, 2, 3)]
        lines += [f"{task},finetune,{e},{0.2 / e:.3f},0.97,0.1" for e in (1, 2)]
    lines.append("2,finetune,3,0.0")  # a row cut short when the run was killed: skipped
    (run_copy / "log.csv").write_text("\n".join(lines))
    assert main(["report", str(run_copy)]) == 0
    assert _is_png(run_copy / "training.png")
    assert f"wrote {run_copy / 'training.png'}" in capsys.readouterr().out


def test_without_an_epoch_log_there_is_no_training_plot(run_copy, capsys):
    assert main(["report", str(run_copy)]) == 0
    assert not (run_copy / "training.png").exists()
    assert "training.png" not in capsys.readouterr().out


def test_an_epoch_log_without_rows_gives_a_note_instead_of_a_plot(run_copy, capsys):
    (run_copy / "log.csv").write_text("task,phase,epoch,loss,val_accuracy,seconds\n")
    assert main(["report", str(run_copy)]) == 0
    assert not (run_copy / "training.png").exists()
    assert "note: training.png: skipped" in capsys.readouterr().out


def test_baseline_task_table_leaves_out_the_pruning_columns(run_copy, capsys):
    results = json.loads((run_copy / "results.json").read_text())
    for info in results["tasks"]:
        info.pop("val_accuracy_dense"), info.pop("val_accuracy_pruned")
    results.update(method="finetune", capacity=[])
    (run_copy / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run_copy), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "val final" in out and "val dense" not in out and "val pruned" not in out


def test_a_run_records_what_it_ran_on_and_the_report_says_so(finished_run, run_copy, capsys):
    """Results differ between processors at the bit level, so a run records its versions, processor, torch's CPU
    kernels, threads and device; ``clnp report`` prints them on its second line."""
    environment = load_results(finished_run)[0]["environment"]
    assert environment["torch"] == torch.__version__ and environment["clnp"] == clnp.__version__
    assert environment["device"] == "cpu" and environment["threads"] == 1 and environment["world_size"] == 1
    assert environment["processor"] and environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert main(["report", str(run_copy), "--no-plots"]) == 0
    second = capsys.readouterr().out.splitlines()[1]
    assert second.startswith(f"ran on {environment['processor']} ({environment['cpu_capability']} kernels)")
    assert f", torch {torch.__version__}, device cpu, 1 thread, clnp " in second


def test_results_written_before_runs_recorded_their_environment_report_without_the_line(run_copy, capsys):
    results = json.loads((run_copy / "results.json").read_text())
    del results["environment"]
    (run_copy / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run_copy), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "ran on" not in out and "average accuracy" in out


def test_a_run_resumed_on_another_machine_says_which_tasks_were_learned_where(run_copy, capsys):
    results = json.loads((run_copy / "results.json").read_text())
    here = results["tasks"][0]["machine"]
    assert [task["machine"] for task in results["tasks"]] == [here] * 3
    results["tasks"][2]["machine"] = "Another CPU (AVX2 kernels), torch 2.2.0"
    (run_copy / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run_copy), "--no-plots"]) == 0
    assert (f"tasks learned on 2 machines (results differ between processors): T0-T1 on {here}; "
            "T2 on Another CPU (AVX2 kernels), torch 2.2.0") in capsys.readouterr().out
