"""Every bad value is refused before any work starts, with its allowed range (issue 15, item 8)."""

import math
import time

import pytest

import clnp
from clnp.cli import main
from clnp.experiments.config import RunConfig


@pytest.mark.parametrize("args, expected", [
    (["--margin", "nan"], "margin must be >= 0 and <= 100"),
    (["--margin", "inf"], "margin must be >= 0 and <= 100"),
    (["--margin", "101"], "margin must be >= 0 and <= 100"),
    (["--l1", "nan"], "l1 must be >= 0 and finite, got nan"),
    (["--lr", "inf"], "lr must be > 0 and finite, got inf"),
    (["--weight-decay", "nan"], "weight_decay must be >= 0 and finite"),
    (["--seed", "-1"], "seed must be >= 0 and <= 4294967295, got -1"),
    (["--seed", "99999999999999999999"], "seed must be >= 0 and <= 4294967295"),
    (["--benchmark", "permuted-digits", "--tasks", "100000000"], "--tasks must be <= 100 for permuted-digits"),
    (["--tasks", "6"], "has 5 tasks; --tasks 6 asks for more (expected 1..5)"),
    (["--model", "mlp:100000000"], "layer sizes must be <= 100000"),
    (["--method", "ewk"], "unknown method 'ewk'; expected one of: clnp, ewc"),
])
def test_a_bad_run_setting_is_refused_at_the_door_with_its_range(tmp_path, capsys, args, expected):
    out = tmp_path / "never"
    started = time.perf_counter()
    assert main(["run", *args, "--out", str(out), "--no-progress"]) == 2
    assert time.perf_counter() - started < 10  # refused before any data is read or anything trained
    err = capsys.readouterr().err
    assert err.startswith("clnp run: error:") and err.count("\n") == 1 and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("extra, expected", [
    ("method: ewc\nextra:\n  lamda: 5\n", "unknown option ewc.lamda (did you mean 'lambda'?); ewc options: lambda"),
    ("method: ewc\nextra:\n  lambda: abc\n", "option ewc.lambda must be a finite number >= 0, got 'abc'"),
    ("method: packnet\nextra:\n  prune: 1.5\n", "option packnet.prune must be a finite number > 0 and < 1"),
    ("method: finetune\nextra:\n  lambda: 1\n", "unknown option finetune.lambda; finetune options: none"),
    ("margin: .nan\n", "margin must be >= 0 and <= 100"),
    ("epochs: 3\nepochs: 5\n", "duplicate key 'epochs' (line 2 and line 3): write each key once"),
])
def test_a_misspelled_or_bad_option_in_a_yaml_config_is_refused_before_any_run(tmp_path, capsys, extra, expected):
    config = tmp_path / "c.yaml"
    config.write_text("tasks: 1\n" + extra)
    out = tmp_path / "never"
    assert main(["run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("option, expected", [
    ("ewc.lamda=5", "unknown option ewc.lamda (did you mean 'lambda'?)"),
    ("ewc.lambda=abc", "option ewc.lambda must be a finite number >= 0, got 'abc'"),
    ("si.xi=0", "option si.xi must be a finite number > 0, got 0"),
])
def test_compare_checks_every_methods_options_before_the_first_run(tmp_path, capsys, option, expected):
    out = tmp_path / "cmp"
    started = time.perf_counter()
    assert main(["compare", "--methods", "finetune,ewc,si", "--tasks", "2", "--epochs", "1", "--model", "mlp:8",
                 "--option", option, "--out", str(out)]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert err.startswith("clnp compare: error:") and expected in err, err
    assert not out.exists()  # finetune, the first method, did not run


@pytest.mark.parametrize("field, value", [("margin", math.nan), ("margin", math.inf), ("l1", math.nan),
                                          ("lr", math.nan)])
def test_nan_and_inf_are_refused_by_the_library_configs(field, value):
    with pytest.raises(ValueError, match=f"{field}"):
        clnp.CLNPConfig(**{field: value})
    with pytest.raises(ValueError, match=f"{field} must be"):
        RunConfig(**{field: value}).check()


@pytest.mark.parametrize("option, expected", [
    ("lamda=5", "unknown option ewc.lamda (did you mean 'lambda'?)"),
    ("ewc.lambda=-1", "option ewc.lambda must be a finite number >= 0, got -1.0"),
    ("si.xi=1", "--option si.xi=1: an option of si, but this run's method is ewc"),
])
def test_run_option_is_checked_against_the_methods_options(tmp_path, capsys, option, expected):
    out = tmp_path / "never"
    assert main(["run", "--method", "ewc", "--option", option, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not out.exists()


def test_a_run_option_reaches_the_method(tmp_path):
    out = tmp_path / "ewc"
    assert main(["run", "--method", "ewc", "--option", "lambda=7", "--tasks", "2", "--model", "mlp:8", "--epochs",
                 "1", "--no-progress", "--out", str(out)]) == 0
    import json

    results = json.loads((out / "results.json").read_text())
    assert results["config"]["extra"] == {"lambda": 7.0} and results["tasks"][-1]["strength"] == 7.0


def test_an_unknown_benchmark_is_one_line_naming_the_benchmarks(tmp_path, capsys):
    assert main(["run", "--benchmark", "split-digit", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'split-digit'; expected one of: split-digits" in err and err.count("\n") == 1
