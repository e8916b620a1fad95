"""Run the ``clnp`` command line with some of clnp's module constants set otherwise, to measure a variant without
committing it.

    python bench/with_constants.py clnp.core.capacity.TRAIN_HEADROOM=1e6 -- run --benchmark split-digits --out runs/x

Each ``module.NAME=value`` (a Python literal, or ``inf``) replaces ``NAME`` in ``module`` before the command runs, in
this process: ``run`` and ``compare --jobs 1`` see it; processes a command starts (``--jobs 2``, torchrun) do not.
Only constants read at call time through their module take effect (``clnp.core.capacity.TRAIN_HEADROOM`` is read
by ``units_to_train`` as a global of its module); a name another module imported by value needs that module
named too. Variants measured this way are in bench/RESULTS.md with the command that made them.
"""

from __future__ import annotations

import ast
import importlib
import sys

from clnp.cli.entry import main as clnp_main


def set_constant(assignment: str) -> None:
    """Apply one ``module.NAME=value``; refuse a name the module does not have (a typo would measure nothing)."""
    target, _, text = assignment.partition("=")
    module_name, _, name = target.rpartition(".")
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise SystemExit(f"{module_name} has no {name}")
    value = float(text) if text in ("inf", "-inf") else ast.literal_eval(text)
    print(f"with {module_name}.{name} = {value!r} (was {getattr(module, name)!r})", file=sys.stderr)
    setattr(module, name, value)


def usage(doc: str | None) -> str:
    """The usage line of a bench script's docstring: its first line that calls ``python bench/``."""
    return next(line.strip() for line in (doc or "").splitlines() if "python bench/" in line)


def apply_constants(argv: list[str], doc: str | None) -> list[str] | None:
    """Apply each ``module.NAME=value`` before ``--`` and return the arguments after it; without ``--``, print the
    script's usage (from ``doc``) and return None."""
    if "--" not in argv:
        print(usage(doc), file=sys.stderr)
        return None
    split = argv.index("--")
    for assignment in argv[:split]:
        set_constant(assignment)
    return argv[split + 1:]


def main(argv: list[str]) -> int:
    rest = apply_constants(argv, __doc__)
    return 2 if rest is None else clnp_main(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
