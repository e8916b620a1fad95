"""The package layout shows the layers, and no import runs back up a layer; one loop trains every method."""

import ast
import types
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "clnp"

LAYER = {"core": 0, "data": 0, "models": 0, "engine": 1, "methods": 2, "experiments": 3, "report": 4, "exporting": 4,
         "cli": 5, "__init__": 6, "__main__": 6, "version": 0}
"""Rank of each top-level package or module: a module may import only ranks at or below its own."""
ALLOWED_SIDEWAYS = {("core", "core"), ("data", "data"), ("models", "models"), ("models", "core"),
                    ("version", "version")}
"""Rank-0 packages are independent of each other (the mechanism knows nothing of data sets or built-in models), except
that ``models`` turns a spec into the mechanism's network."""


def _clnp_imports(path: Path) -> set[str]:
    """Top-level ``clnp`` packages a source file imports (relative imports resolved)."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts] if node.module else [base + [a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "clnp":
                names = [node.module.split(".")]
            else:
                continue
            for parts in names:
                if len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "clnp" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _top(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


SOURCES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_runs_back_up_a_layer(path):
    here = _top(path)
    for target in _clnp_imports(path):
        if target == here:
            continue
        assert target in LAYER, f"{path.relative_to(SRC)} imports clnp.{target}, which has no place in the layering"
        if LAYER[here] == 0:
            assert (here, target) in ALLOWED_SIDEWAYS, f"{path.relative_to(SRC)} ({here}) imports clnp.{target}"
        assert LAYER[target] <= LAYER[here], (
            f"{path.relative_to(SRC)} ({here}, layer {LAYER[here]}) imports clnp.{target} (layer {LAYER[target]})")


def _clnp_modules_imported(path: Path) -> set[str]:
    """Every ``clnp`` module path a source file imports (relative imports resolved), e.g. ``clnp.methods.clnp``."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            parts = base + (node.module.split(".") if node.module else [])
            if parts[:1] == ["clnp"]:
                found.add(".".join(parts))
                found.update(".".join([*parts, a.name]) for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "clnp")
    return found


@pytest.mark.parametrize("path", [p for p in SOURCES if _top(p) != "methods"], ids=lambda p: str(p.relative_to(SRC)))
def test_nothing_outside_the_methods_imports_a_methods_internals(path):
    """Outside ``methods/`` a method is reached through the registry (:mod:`clnp.methods`) and the engine only."""
    import clnp.methods

    public = set(clnp.methods.__all__)
    for module in _clnp_modules_imported(path):
        parts = module.split(".")
        if parts[:2] == ["clnp", "methods"] and len(parts) > 2:
            assert parts[2] in public, f"{path.relative_to(SRC)} imports {module}, a method's internals"


def test_the_core_knows_nothing_of_files_data_sets_the_cli_or_plots():
    banned = {"pathlib", "os", "json", "yaml", "matplotlib", "argparse", "csv", "safetensors", "tqdm", "sklearn"}
    for path in (SRC / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] not in banned, f"core/{path.name} imports {name}"


def _iterates_over_batches(path: Path) -> bool:
    """Whether a module loops over shuffled minibatches (``randperm`` ... ``.split(``) or calls an optimiser step."""
    text = path.read_text()
    return "optimizer.step()" in text or ("randperm" in text and ".split(" in text and "for " in text
                                           and "generator" in text and "yield" in text)


def test_one_function_holds_the_loop_over_training_batches():
    """The loop over batches is the engine's; the optimiser step it takes is the precision object's (plain, or
    through a gradient scaler), so the loop has no precision branch."""
    loops = [p.relative_to(SRC).as_posix() for p in SOURCES if _iterates_over_batches(p)]
    assert loops == ["engine/loop.py", "engine/precision.py"]


def test_every_method_trains_through_the_one_loop(monkeypatch, digit_tasks):
    import clnp.engine.learner as learner_module
    from clnp.engine.loop import fit
    from clnp.methods import METHODS, build_method

    from .conftest import quick_config

    calls: list[str] = []

    def counted(hooks, *args, **kwargs):
        calls.append(type(hooks).__name__)
        return fit(hooks, *args, **kwargs)

    monkeypatch.setattr(learner_module, "fit", counted)  # the one base class calls the loop for every method
    for name in METHODS:
        calls.clear()
        learner = build_method(name, "mlp:16", (1, 8, 8), quick_config(epochs=1, finetune_epochs=1))
        learner.learn(digit_tasks[0])
        assert calls, f"{name} learned a task without the one training loop"


def test_importing_clnp_and_its_cli_parser_imports_no_torch():
    """`clnp --help` answers at once: the package imports its public names lazily."""
    import subprocess
    import sys

    code = ("import sys, clnp, clnp.cli; clnp.cli.build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(clnp.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import clnp
    import clnp.exporting

    # ``clnp.export`` is a plain function (the package is ``clnp.exporting``): importing the package changes nothing.
    assert isinstance(clnp.export, types.FunctionType) and clnp.export is clnp.exporting.export
    assert clnp.load_state_dict_export is clnp.exporting.load_state_dict_export
    assert set(clnp.__all__) <= set(dir(clnp))
