"""Every package's docstring is a map of its modules, kept complete: each module file and sub-package is named
there (as ``:mod:`.name```), and every module the map names exists."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "clnp"
PACKAGES = sorted(p.parent for p in SRC.rglob("__init__.py") if p.parent != SRC and "__pycache__" not in p.parts)


def _docstring(package: Path) -> str:
    return ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""


def _members(package: Path) -> set[str]:
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    return modules | subpackages


def _named(package: Path) -> set[str]:
    dotted = "clnp." + ".".join(package.relative_to(SRC).parts) + "."
    return {m.group(2) for m in re.finditer(r":mod:`~?(\.|" + re.escape(dotted) + r")(\w+)", _docstring(package))}


def test_every_package_is_found():
    names = {".".join(p.relative_to(SRC).parts) for p in PACKAGES}
    assert {"core", "data", "engine", "methods", "experiments", "report", "models", "exporting"} <= names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: ".".join(p.relative_to(SRC).parts))
def test_the_package_docstring_names_every_module_of_the_package(package):
    missing = sorted(_members(package) - _named(package))
    assert not missing, f"clnp.{'.'.join(package.relative_to(SRC).parts)}'s docstring does not name {missing}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: ".".join(p.relative_to(SRC).parts))
def test_every_module_the_package_docstring_names_exists(package):
    stale = sorted(_named(package) - _members(package))
    assert not stale, f"clnp.{'.'.join(package.relative_to(SRC).parts)}'s docstring names missing modules {stale}"
