"""Bad input is refused at the door: one clear message, and nothing learned or written is damaged."""

import dataclasses
import subprocess
import sys

import pytest
import torch

import clnp
from clnp.cli import main
from clnp.data.benchmarks import BENCHMARKS
from clnp.methods.clnp import ConfigTypeError

from .conftest import quick_config


def _task(n=40, n_classes=2, shape=(1, 8, 8), seed=0, name="t") -> clnp.Task:
    g = torch.Generator().manual_seed(seed)

    def split(k):
        y = torch.arange(k) % n_classes
        return clnp.Split(torch.rand(k, *shape, generator=g), y)

    return clnp.Task(name, n_classes, split(n), split(n // 2), split(n // 2))


def _spoil(task: clnp.Task, part: str, **changes) -> clnp.Task:
    return dataclasses.replace(task, **{part: dataclasses.replace(getattr(task, part), **changes)})


def _nan_inputs(t):
    x = t.train.x.clone()
    x[3, 0, 2, 2] = float("nan")
    return _spoil(t, "train", x=x)


def _inf_inputs(t):
    x = t.val.x.clone()
    x[0, 0, 0, 0] = float("inf")
    return _spoil(t, "val", x=x)


def _negative_label(t):
    y = t.test.y.clone()
    y[1] = -1
    return _spoil(t, "test", y=y)


def _label_too_large(t):
    y = t.train.y.clone()
    y[0] = 2
    return _spoil(t, "train", y=y)


def _wrong_image_shape(t):
    return _spoil(t, "train", x=torch.rand(len(t.train), 1, 9, 9))


def _empty_split(t):
    return _spoil(t, "val", x=t.val.x[:0], y=t.val.y[:0])


def _one_class_task(t):
    return dataclasses.replace(t, n_classes=1, train=clnp.Split(t.train.x, torch.zeros_like(t.train.y)))


def _train_split_with_one_class(t):
    return _spoil(t, "train", y=torch.zeros_like(t.train.y))


def _float_labels(t):
    return _spoil(t, "train", y=t.train.y.float())


def _labels_as_column(t):
    return _spoil(t, "train", y=t.train.y[:, None])


def _fewer_labels_than_inputs(t):
    return _spoil(t, "train", y=t.train.y[:-1])


BAD_TASKS = {
    "nan_inputs": (_nan_inputs, r"train inputs contain NaN or infinite values"),
    "inf_inputs": (_inf_inputs, r"val inputs contain NaN or infinite values"),
    "negative_label": (_negative_label, r"test labels range over -1\.\.1; expected 0\.\.1"),
    "label_too_large": (_label_too_large, r"train labels range over 0\.\.2; expected 0\.\.1"),
    "wrong_image_shape": (_wrong_image_shape, r"shape \(1, 9, 9\); the model expects \(1, 8, 8\)"),
    "empty_split": (_empty_split, r"the val split is empty"),
    "one_class_task": (_one_class_task, r"has 1 class; a task needs at least 2"),
    "train_split_with_one_class": (_train_split_with_one_class, r"training split holds a single class"),
    "float_labels": (_float_labels, r"labels must be integers, got torch\.float32"),
    "labels_as_column": (_labels_as_column, r"labels have shape \(40, 1\); expected one label per input"),
    "fewer_labels_than_inputs": (_fewer_labels_than_inputs, r"train has 40 inputs but 39 labels"),
}


@pytest.fixture(scope="module")
def learned():
    """A learner that has learned one task, for checking that refused input changes nothing."""
    torch.manual_seed(0)
    net = clnp.mlp(64, (16, 12), batch_norm=True, input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config(epochs=2, finetune_epochs=1))
    learner.learn(_task(seed=1, name="first"))
    return learner


def _snapshot(learner: clnp.CLNP) -> dict:
    return {k: v.clone() for k, v in learner.net.state_dict().items()}


def _assert_unchanged(learner: clnp.CLNP, before: dict, n_tasks: int) -> None:
    after = learner.net.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert learner.net.n_tasks == n_tasks and len(learner.reports) == n_tasks


def _assert_learned_part_unchanged(learner: clnp.CLNP, before: dict, n_tasks: int) -> None:
    """Owners, heads and every owned unit's parameters and statistics as before (free units may differ)."""
    net = learner.net
    after = net.state_dict()
    assert after.keys() == before.keys()
    assert net.n_tasks == n_tasks and len(learner.reports) == n_tasks
    for key, value in before.items():
        if key.startswith("heads.") or key.endswith("owner"):
            assert torch.equal(after[key], value), key
    for i, block in enumerate(net.blocks):
        owned = block.layer.owner != clnp.FREE
        assert torch.equal(owned, before[f"blocks.{i}.layer.owner"] != clnp.FREE)
        for key, value in before.items():
            if key.startswith(f"blocks.{i}.") and value.dim() >= 1 and value.shape[0] == owned.numel():
                assert torch.equal(after[key][owned], value[owned]), key


@pytest.mark.parametrize("case", BAD_TASKS)
def test_bad_task_is_refused_with_a_message_naming_the_problem_and_nothing_changes(case, learned):
    spoil, message = BAD_TASKS[case]
    before = _snapshot(learned)
    with pytest.raises(ValueError, match=message) as info:
        learned.learn(spoil(_task(seed=2, name="bad")))
    assert "'bad'" in str(info.value)  # the message names the task
    _assert_unchanged(learned, before, n_tasks=1)


def test_prediction_with_an_unknown_task_id_is_refused(learned):
    x = _task().test.x
    for task_id in (1, 7, -1):
        with pytest.raises(IndexError, match=rf"unknown task id {task_id}: this network has 1 task heads"):
            learned.predict(x, task_id)
        with pytest.raises(IndexError, match=rf"unknown task id {task_id}"):
            learned.accuracy(task_id, x, torch.zeros(len(x), dtype=torch.long))


@pytest.mark.parametrize("shape", [(64,), (1, 9, 9), (3, 8, 8), (8, 8)])
def test_prediction_with_inputs_of_the_wrong_shape_is_refused(shape, learned):
    x = torch.rand(5, *shape)
    with pytest.raises(ValueError, match=r"do not fit this network: expected \[N, 1, 8, 8\]"):
        learned.predict(x, 0)
    with pytest.raises(ValueError, match=r"expected \[N, 1, 8, 8\]"):
        learned.accuracy(0, x, torch.zeros(5, dtype=torch.long))


def test_prediction_with_nan_or_inf_inputs_is_refused(learned):
    x = torch.rand(4, 1, 8, 8)
    x[2, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        learned.predict(x, 0)
    x[2, 0, 1, 1] = float("-inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        learned.accuracy(0, x, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("labels, message", [
    (torch.zeros(3, dtype=torch.long), r"expected 4 integer labels \(shape \[4\]\), got shape \(3,\)"),
    (torch.zeros(4), r"expected 4 integer labels .* torch\.float32"),
    (torch.tensor([0, 1, 2, 1]), r"labels range over 0\.\.2; expected 0\.\.1"),
])
def test_accuracy_with_labels_that_do_not_fit_is_refused(labels, message, learned):
    with pytest.raises(ValueError, match=message):
        learned.accuracy(0, torch.rand(4, 1, 8, 8), labels)


def test_a_network_that_cannot_read_the_declared_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"cannot read inputs of shape \(1, 8, 8\).*Expected the first layer"):
        clnp.mlp(100, (16,), input_shape=(1, 8, 8))
    trunk = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"cannot read inputs of shape \(1, 2, 2\)"):
        clnp.CLNPNet(trunk, input_shape=(1, 2, 2))


def test_data_that_does_not_match_the_networks_input_shape_is_refused_before_training():
    net = clnp.mlp(64, (16,), input_shape=(64,))  # flat inputs declared, images given
    learner = clnp.CLNP(net, quick_config(epochs=1))
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\); the model expects \(64,\)"):
        learner.learn(_task())
    assert net.n_tasks == 0


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 2.5, r"CLNPConfig\.epochs must be an int, got 2\.5 \(float\)"),
    ("epochs", "3", r"CLNPConfig\.epochs must be an int, got '3' \(str\)"),
    ("batch_size", True, r"CLNPConfig\.batch_size must be an int, got True \(bool\)"),
    ("lr", "fast", r"CLNPConfig\.lr must be a number, got 'fast'"),
    ("margin", None, r"CLNPConfig\.margin must be a number, got None"),
    ("l1", "0.01", r"CLNPConfig\.l1 must be a number or a list of numbers"),
    ("optimizer", 3, r"CLNPConfig\.optimizer must be a str"),
])
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_field(field, value, message):
    with pytest.raises(ConfigTypeError, match=message) as info:
        clnp.CLNPConfig(**{field: value})
    assert isinstance(info.value, ValueError)  # callers that refuse bad input catch ValueError


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be >= 1"),
    ("margin", -1.0, "margin must be >= 0"),
    ("lr", 0.0, "lr must be > 0"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("l1", -1e-3, "l1 coefficients must be >= 0"),
    ("optimizer", "rmsprop", "optimizer must be 'adam' or 'sgd'"),
    ("activity", "variance", "activity must be one of 'mean_abs', 'firing_rate', 'contribution'"),
])
def test_a_config_value_out_of_range_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        clnp.CLNPConfig(**{field: value})


def test_a_task_that_fails_part_way_leaves_the_learner_as_before_and_retrying_gives_the_same_result():
    """An error during training (here a stop after the first epoch) is rolled back: no head, no units taken."""
    first, second = _task(seed=1, name="a"), _task(seed=2, name="b")
    probe = torch.rand(16, 1, 8, 8)

    def make(on_epoch=None):
        torch.manual_seed(0)
        net = clnp.mlp(64, (16, 12), batch_norm=True, input_shape=(1, 8, 8))
        cfg = quick_config(epochs=3, finetune_epochs=1, optimizer="sgd", lr=0.1, weight_decay=1e-2)
        return clnp.CLNP(net, cfg, on_epoch=on_epoch)

    calls = []

    def stop_in_second_task(row):
        calls.append(row)
        if row["task"] == 1 and len(calls) == 5:
            raise KeyboardInterrupt

    interrupted = make(stop_in_second_task)
    interrupted.learn(first)
    before = _snapshot(interrupted)
    with pytest.raises(KeyboardInterrupt):
        interrupted.learn(second)
    _assert_learned_part_unchanged(interrupted, before, n_tasks=1)
    interrupted.on_epoch = None
    interrupted.learn(second)

    reference = make()
    reference.learn(first)
    reference.learn(second)
    for a, b in ((interrupted, reference),):
        a.net.eval()
        b.net.eval()
        with torch.no_grad():
            for t in range(2):
                assert torch.equal(a.net(probe, t), b.net(probe, t))
        assert [r.owned for r in a.reports] == [r.owned for r in b.reports]


# ------------------------------------------------------------------------------------------ CLI
QUICK = ["--tasks", "2", "--model", "mlp:16", "--epochs", "2", "--lr", "0.01", "--finetune-epochs", "0",
         "--no-progress"]


@pytest.fixture
def finished_run(tmp_path):
    """A finished quick run directory, and a snapshot of every file in it."""
    out = tmp_path / "run"
    assert main(["run", "--benchmark", "split-digits", *QUICK, "--out", str(out)]) == 0
    files = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert out / "results.json" in files
    return out, files


def _assert_run_dir_unchanged(out, files):
    now = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert now == files


def _bad_benchmark(monkeypatch, spoil):
    """Register a benchmark whose second task is spoiled (as a bad data file would be)."""
    def build(n_tasks, seed, *args, **kwargs):
        tasks = clnp.split_digits(seed=seed)[:2]
        return [tasks[0], spoil(tasks[1])]

    spec = dataclasses.replace(BENCHMARKS["split-digits"], name="bad-digits", build=build)
    monkeypatch.setitem(BENCHMARKS, "bad-digits", spec)


@pytest.mark.parametrize("case", ["nan_inputs", "label_too_large"])
def test_cli_refuses_bad_data_with_exit_code_2_one_line_and_the_run_dir_intact(case, finished_run, monkeypatch,
                                                                              capsys):
    out, files = finished_run
    capsys.readouterr()
    spoil, message = BAD_TASKS[case]
    _bad_benchmark(monkeypatch, spoil)
    assert main(["run", "--benchmark", "bad-digits", *QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("clnp run: error:") and err.count("\n") == 1
    _assert_run_dir_unchanged(out, files)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--tasks", "0"], "--tasks must be >= 1"),
    (["--model", "mlp:abc"], "bad layer sizes 'abc'"),
    (["--model", "rnn:16"], "unknown model spec 'rnn"),
    (["--margin", "-1"], "margin must be >= 0"),
    (["--lr", "0"], "lr must be > 0"),
])
def test_cli_refuses_bad_arguments_with_exit_code_2_and_the_run_dir_intact(args, message, finished_run, capsys):
    out, files = finished_run
    capsys.readouterr()
    assert main(["run", "--benchmark", "split-digits", *QUICK, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err
    _assert_run_dir_unchanged(out, files)


def test_cli_bad_input_exits_2_without_a_traceback_in_a_real_process(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "clnp.cli", "run", "--epochs", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "epochs must be >= 1" in proc.stderr
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("text, message", [
    ("epoch: 3\n", "unknown key 'epoch' (did you mean 'epochs'?)"),
    ("epochs: three\n", "epochs must be an integer"),
    ("margin: [1, 2]\n", "margin must be"),
])
def test_cli_refuses_a_bad_config_file_and_the_run_dir_intact(text, message, finished_run, tmp_path, capsys):
    out, files = finished_run
    capsys.readouterr()
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err and err.count("\n") == 1
    _assert_run_dir_unchanged(out, files)
