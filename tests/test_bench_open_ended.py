"""bench/open_ended.py: a run's stream learned without telling the learner how many tasks will come."""

import json
import subprocess
import sys
from pathlib import Path

from clnp.core.capacity import OPEN_HORIZON

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "open_ended.py"


def test_the_stream_is_planned_open_ended_and_its_acc_is_the_mean_final_test_accuracy():
    done = subprocess.run([sys.executable, str(SCRIPT), "--", "--benchmark", "split-digits", "--tasks", "2",
                           "--epochs", "4", "--seed", "0"], capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Two tasks announced by the run, but the learner is not told: the first task's budget is the open horizon's
    # share of a 256-unit layer, with no reserve (a stream of 2 known tasks would give it 125 of each layer).
    assert out["budget"][0] == [256 // OPEN_HORIZON] * 2 and out["tasks"] == 2
    assert out["acc"] == round(sum(out["test"]) / 2, 2) and len(out["kept"]) == 2


def test_without_the_separator_it_says_how_to_call_it():
    done = subprocess.run([sys.executable, str(SCRIPT), "--benchmark", "split-digits"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "bench/open_ended.py" in done.stderr
