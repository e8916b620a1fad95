"""Measure a cosine decay of the fine-tuning learning rate (to 0 over the phase) without adding it to clnp.

    python bench/finetune_cosine.py compare --benchmark split-fashion-mnist --methods clnp ... --jobs 1

Patches the one loop (``clnp.engine.loop.fit`` and the optimiser it makes) so that every ``finetune``
phase, CLNP's and PackNet's alike, decays its rate by a cosine from ``finetune_lr`` to 0, step by step,
then runs the ``clnp`` command line with the arguments given. ``--jobs 1`` keeps the runs in this
process, where the patch is. Measured in ``bench/RESULTS.md`` (split-fashion-mnist); not adopted.
"""

from __future__ import annotations

import math
import sys

from clnp.methods import loop

state = {"phase": None, "total": 1}
real_fit, real_make = loop.fit, loop.make_optimizer


def fit(hooks, module, params, data, config, generator, *, epochs, head, task, phase, label, on_epoch=None):
    """The one loop, noting the phase and its number of optimiser steps for :func:`make_optimizer`."""
    n = data[0].shape[0] if isinstance(data, (tuple, list)) else len(data)
    state["phase"], state["total"] = phase, max(1, epochs * math.ceil(n / config.batch_size))
    try:
        return real_fit(hooks, module, params, data, config, generator, epochs=epochs, head=head, task=task,
                        phase=phase, label=label, on_epoch=on_epoch)
    finally:
        state["phase"] = None


def make_optimizer(params, config):
    """The loop's optimiser; in a ``finetune`` phase its rate follows the cosine, set before each step."""
    opt = real_make(params, config)
    if state["phase"] != "finetune":
        return opt
    base, total, done = config.lr, state["total"], [0]
    step = opt.step

    def cosine_step(*a, **k):
        for g in opt.param_groups:
            g["lr"] = base * 0.5 * (1 + math.cos(math.pi * done[0] / total))
        done[0] += 1
        return step(*a, **k)

    opt.step = cosine_step
    return opt


if __name__ == "__main__":
    from clnp.cli import main
    from clnp.engine import learner

    loop.fit, loop.make_optimizer = fit, make_optimizer
    learner.fit = fit  # the one base class imported fit by name
    sys.exit(main(sys.argv[1:]))
