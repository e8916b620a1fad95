"""Baseline continual-learning methods, each behind the :class:`clnp.methods.ContinualLearner` interface.

Every factory has the signature ``(model_spec, input_shape, CLNPConfig, options) -> learner`` and
trains for the same epochs, batch size, optimiser and learning rate as CLNP, on a plain network
converted from the same model spec (:mod:`clnp.baselines.net`).

| name | module | what it is |
|---|---|---|
| ``finetune`` | :mod:`.finetune` | sequential training, nothing against forgetting (lower bound) |
| ``independent`` | :mod:`.independent` | a separate network per task (ceiling at this width, T x parameters) |
| ``joint`` | :mod:`.joint` | one network trained on all tasks seen so far at once (shared-network upper bound) |
| ``ewc``, ``online-ewc`` | :mod:`.ewc`, :mod:`.online_ewc` | Fisher-weighted quadratic penalty |
| ``si`` | :mod:`.si` | path-integral importance (Synaptic Intelligence) |
| ``mas`` | :mod:`.mas` | output-sensitivity importance (Memory Aware Synapses) |
| ``packnet`` | :mod:`.packnet` | weight-level magnitude pruning, per-task weight masks |
| ``hat`` | :mod:`.hat` | unit-level hard attention masks |
"""

from __future__ import annotations

from . import ewc, finetune, hat, independent, joint, mas, online_ewc, packnet, si

BASELINES = {
    "finetune": finetune.build,
    "independent": independent.build,
    "joint": joint.build,
    "ewc": ewc.build,
    "online-ewc": online_ewc.build,
    "si": si.build,
    "mas": mas.build,
    "packnet": packnet.build,
    "hat": hat.build,
}
"""Method name -> factory ``(model_spec, input_shape, config, options) -> learner``."""

__all__ = ["BASELINES"]
