"""Whether two comparison folders hold the same accuracy matrices, run by run, exactly (``==``).

    python bench/same_matrices.py OLD_DIR NEW_DIR

Every ``METHOD/sSEED/results.json`` under OLD_DIR is compared with the same path under NEW_DIR. Prints
``identical: N runs`` (exit 0), or each run that differs or is missing (exit 1). A refactoring that
claims to change no result shows it with this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def matrices(root: Path) -> dict[str, list]:
    """Run (``METHOD/sSEED``) -> its accuracy matrix, for every ``results.json`` two levels below ``root``."""
    return {str(path.parent.relative_to(root)): json.loads(path.read_text())["accuracy_matrix"]
            for path in sorted(root.glob("*/s*/results.json"))}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    old, new = (matrices(Path(a)) for a in argv)
    if not old:
        print(f"no runs under {argv[0]}", file=sys.stderr)
        return 2
    problems = []
    for run, matrix in old.items():
        if run not in new:
            problems.append(f"{run}: missing in {argv[1]}")
        elif new[run] != matrix:
            problems.append(f"{run}: differs\n  old {matrix}\n  new {new[run]}")
    if problems:
        print("\n".join(problems))
        return 1
    print(f"identical: {len(old)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
