"""Measure the pruning search holding the finer measures on every validation split, whatever the margin.

    CLNP_BENCH_MEASURES=confidence python bench/confidence_always.py run --benchmark ... --margin M

CLNP holds agreement with the dense network and the mean true-class probability only where the margin
is worth fewer than ``RESOLVED_INPUTS`` validation inputs (``clnp.methods.clnp``); elsewhere accuracy
alone judges. This script sets that line to infinity, so that the search always holds both
(agreement on the validation inputs), then runs the ``clnp`` command line;
``CLNP_BENCH_MEASURES=confidence`` or ``agreement`` holds only one of the two. It measured where to
draw the line (``bench/RESULTS.md``, "Where accuracy cannot resolve the margin"): on
split-fashion-mnist at margin 0.1 (1.2 inputs) the finer measures help, on permuted-fashion-mnist at
0.25 (15 inputs) they cost accuracy. ``--jobs 1`` keeps ``compare`` runs in this process, where the
patch is.
"""

from __future__ import annotations

import math
import os
import sys

from clnp.methods import clnp as m
from clnp.methods.clnp import search

MEASURES = os.environ.get("CLNP_BENCH_MEASURES", "agreement,confidence").split(",")
"""Which finer measures to hold (environment variable ``CLNP_BENCH_MEASURES``): ``agreement``, ``confidence``."""
real_score = m.CLNP._score


def score(self, *args, **kwargs):
    """``CLNP._score``, without the finer measure that ``MEASURES`` leaves out."""
    result = real_score(self, *args, **kwargs)
    if "agreement" not in MEASURES:
        result = result._replace(agreement=1.0)
    if "confidence" not in MEASURES:
        result = result._replace(confidence=None)
    return result


if __name__ == "__main__":
    from clnp.cli import main

    search.RESOLVED_INPUTS = math.inf
    m.CLNP._score = score
    sys.exit(main(sys.argv[1:]))
