"""bench/stage_accuracy.py: one line per task and stage of CLNP's cycle, and the run's results untouched."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "stage_accuracy.py"
ARGS = ["run", "--benchmark", "split-digits", "--tasks", "2", "--epochs", "6", "--seed", "0", "--no-progress"]


def test_the_stage_report_prints_every_stage_of_every_task_and_leaves_the_results_as_a_plain_run(tmp_path):
    wrapped = subprocess.run([sys.executable, str(SCRIPT), *ARGS, "--out", str(tmp_path / "wrapped")],
                             capture_output=True, text=True, timeout=300, check=True)
    plain = subprocess.run([sys.executable, "-m", "clnp", *ARGS, "--out", str(tmp_path / "plain")],
                           capture_output=True, text=True, timeout=300, check=True)
    lines = [line.split() for line in wrapped.stdout.splitlines() if line.startswith("stage task")]
    assert [(words[2], words[3]) for words in lines] == [
        (str(t), stage) for t in range(2) for stage in ("dense", "pruned", "finetuned")]
    assert all(0 <= float(words[5]) <= 100 for words in lines)  # test accuracy, percent
    assert "stage task" not in plain.stdout

    def matrix(name):
        return json.loads((tmp_path / name / "results.json").read_text())["accuracy_matrix"]

    assert matrix("wrapped") == matrix("plain")
