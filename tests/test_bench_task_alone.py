"""bench/task_alone.py: one task of a stream learned alone, with a run's settings."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "task_alone.py"
RUN = ["--benchmark", "split-digits", "--tasks", "3", "--epochs", "6", "--seed", "1"]


def test_the_first_task_learned_alone_scores_what_a_run_s_first_task_scores(tmp_path):
    alone = subprocess.run([sys.executable, str(SCRIPT), "--task", "0", "--", *RUN], capture_output=True, text=True,
                           timeout=300, check=True)
    subprocess.run([sys.executable, "-m", "clnp", "run", *RUN, "--no-progress", "--out", str(tmp_path)],
                   capture_output=True, text=True, timeout=300, check=True)
    first = json.loads((tmp_path / "results.json").read_text())["accuracy_matrix"][0][0]
    assert f"alone, seed 1: test {100 * first:.2f} %" in alone.stdout


def test_a_task_the_stream_does_not_have_is_refused():
    done = subprocess.run([sys.executable, str(SCRIPT), "--task", "3", "--", *RUN], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "one of the stream's 3 tasks (0..2), got 3" in done.stderr


def test_without_the_separator_it_says_how_to_call_it():
    done = subprocess.run([sys.executable, str(SCRIPT), "--task", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("python bench/task_alone.py --task 1")
