"""Measure the pruning search holding the finer measures on every validation split, whatever the margin.

    CLNP_BENCH_MEASURES=confidence python bench/confidence_always.py run --benchmark ... --margin M

CLNP holds agreement with the dense network and the mean true-class probability only where the margin
is worth fewer than ``RESOLVED_INPUTS`` validation inputs (``clnp.methods.clnp``); elsewhere accuracy
alone judges. This script replaces ``CLNP._score`` by one that always reports both (agreement on the
validation inputs, against the search's first, dense, evaluation), then runs the ``clnp`` command
line; ``CLNP_BENCH_MEASURES=confidence`` or ``agreement`` holds only one of the two. It measured
where to draw the line (``bench/RESULTS.md``, "Where accuracy cannot resolve the margin"): on
split-fashion-mnist at margin 0.1 (1.2 inputs) the finer measures help, on permuted-fashion-mnist at
0.25 (15 inputs) they cost accuracy. ``--jobs 1`` keeps ``compare`` runs in this process, where the
patch is.
"""

from __future__ import annotations

import os
import sys

import torch

from clnp.core.pruning import Score
from clnp.methods import clnp as m

real_score = m.CLNP._score
dense: dict = {}
MEASURES = os.environ.get("CLNP_BENCH_MEASURES", "agreement,confidence").split(",")
"""Which finer measures to hold (environment variable ``CLNP_BENCH_MEASURES``): ``agreement``, ``confidence``."""


@torch.no_grad()
def score(self, task, task_id, keep, cut, probe, reference):
    """``CLNP._score``; without a probe, agreement with the first (dense) evaluation and the confidence too."""
    if probe is not None:
        return real_score(self, task, task_id, keep, cut, probe, reference)
    pairs = self._reuse_cut_masks(task_id, cut) if cut is not None else []
    saved = [w.detach().clone() for w, _ in pairs]
    try:
        for w, mask in pairs:
            w.masked_fill_(mask, 0.0)
        predicted, confidence = self._predict_shared(task_id, task.val.x, task.val.y, keep)
    finally:
        for (w, _), v in zip(pairs, saved, strict=True):
            w.copy_(v)
    key = (id(task), task_id)
    if dense.get("key") != key:  # the search's first evaluation is the dense network's
        dense["key"], dense["predicted"] = key, predicted
    acc = float((predicted == task.val.y).sum()) / len(task.val)
    agreement = float((predicted == dense["predicted"]).sum()) / predicted.numel()
    return Score(acc, agreement if "agreement" in MEASURES else 1.0,
                 confidence if "confidence" in MEASURES else None)


if __name__ == "__main__":
    from clnp.cli import main

    m.CLNP._score = score
    sys.exit(main(sys.argv[1:]))
