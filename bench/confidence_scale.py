"""Measure the pruning search with a scale-free confidence, without adding it to clnp.

    python bench/confidence_scale.py run --benchmark split-digits --model cnn:16,16/64:bn --seed S

On small validation splits the search holds the mean true-class probability within
``CONFIDENCE_SLACK`` margins of the dense network's. Silencing batch-normalised units shrinks every
logit, which lowers that probability even where every prediction stays right and fine-tuning would
restore the scale. This script replaces ``CLNP._score`` by one that first rescales each evaluated
network's validation logits to the dense network's spread (mean over inputs of the standard
deviation over classes), then runs the ``clnp`` command line. Measured in ``bench/RESULTS.md``;
not adopted.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from clnp.core.pruning import Score
from clnp.methods import clnp as m

state = {}

@torch.no_grad()
def logits_of(net, task_id, x, keep, bs):
    """Task ``task_id``'s logits on ``x`` with the units ``~keep`` silenced, on the CPU."""
    was = net.training
    net.eval()
    out = torch.cat([net(x[i:i + bs].to(net.device), task_id, keep).float().cpu()
                     for i in range(0, x.shape[0], bs)])
    net.train(was)
    return out

def spread(logits):
    """Mean over inputs of the standard deviation of the logits over the classes."""
    return float(logits.std(dim=1).mean())

@torch.no_grad()
def score(self, task, task_id, keep, cut, probe, reference):
    """``CLNP._score`` (one process), with the confidence taken from rescaled logits."""
    pairs = self._reuse_cut_masks(task_id, cut) if cut is not None else []
    saved = [w.detach().clone() for w, _ in pairs]
    n_val = len(task.val)
    inputs = task.val.x if probe is None else probe
    try:
        for w, mask in pairs:
            w.masked_fill_(mask, 0.0)
        logits = logits_of(self.net, task_id, inputs, keep, self.config.eval_batch_size)
    finally:
        for (w, _), v in zip(pairs, saved, strict=True):
            w.copy_(v)
    predicted = logits.argmax(1)
    acc = float((predicted[:n_val] == task.val.y).sum()) / n_val
    if reference is None:
        return Score(acc, 1.0, None)
    key = (id(task), task_id)
    val = logits[:n_val]
    if state.get("key") != key:  # the first evaluation is the dense network's
        state["key"], state["spread"] = key, spread(val)
    scale = state["spread"] / max(spread(val), 1e-12)
    conf = float(F.softmax(val * scale, 1).gather(1, task.val.y[:, None]).double().mean())
    agreement = float((predicted == reference).sum()) / reference.numel()
    return Score(acc, agreement, conf)

if __name__ == "__main__":
    from clnp.cli import main

    m.CLNP._score = score
    sys.exit(main(sys.argv[1:]))
