"""Count the pruning search's evaluations (passes over the search inputs) in a ``clnp`` command, per task and in all.

    python bench/search_evaluations.py [--evaluate-silent] -- run --benchmark split-fashion-mnist --out runs/x

``--evaluate-silent`` evaluates proposals of silent units too (as before they were taken at the current score),
so two runs of the same command show what skipping them saves: the same decisions (the units each task kept are
printed) in fewer evaluations. Evaluations do not depend on the machine's load; the seconds printed do. Figures in
bench/RESULTS.md ("The capacity plan", seventh session).
"""

from __future__ import annotations

import sys
import time

import clnp.core.pruning as pruning
import clnp.methods.clnp.cycle as cycle
from clnp.cli.entry import main as clnp_main


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    split = argv.index("--")
    if "--evaluate-silent" in argv[:split]:
        cycle.CycleMixin._silent_is_free = lambda self, task, probe: False  # type: ignore[method-assign]
    search = pruning.choose_pruning
    total = {"evaluations": 0, "seconds": 0.0}

    def counted(*args, **kwargs):
        start = time.perf_counter()
        decision = search(*args, **kwargs)
        total["seconds"] += time.perf_counter() - start
        total["evaluations"] += decision.evaluations
        kept = [int(k.sum()) for k in decision.keep]
        print(f"task {args[1]}: {decision.evaluations} evaluations, units kept or old {kept}", file=sys.stderr)
        return decision

    cycle.choose_pruning = counted  # the name the cycle calls
    code = clnp_main(argv[split + 1:])
    print(f"all tasks: {total['evaluations']} evaluations, {total['seconds']:.1f} s searching", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
