"""CLNP, continual learning via neural pruning (Golkar, Kagan & Cho 2019): the method, as one package.

* :mod:`.learner`: :class:`~.learner.CLNP`, the learner (public API: learn, accuracy, predict, capacity);
* :mod:`.cycle`: one task's cycle (train with L1, check, measure activity, prune, fine-tune, freeze) and
  its hooks of the one loop;
* :mod:`.search`: how a candidate pruning is scored;
* :mod:`.growth`: the growth policy and the full-layer refusal;
* :mod:`.state`: the learned state's round trip and the rollback of a failed task;
* :mod:`.integrity`: the consistency checks a saved state passes before it is loaded;
* :mod:`.config`: :class:`~.config.CLNPConfig`; :mod:`.report`: :class:`~.report.TaskReport`.

This module declares the method (:data:`METHOD`) for the registry (:mod:`clnp.methods`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from ...core.activity import ACTIVITY_MEASURES
from ...core.capacity import SHARES
from ...engine.config import LR_SCHEDULES, ConfigTypeError, TrainConfig
from ...engine.learner import CapacityError
from ...engine.method import Method
from ...engine.options import Option
from ...models import build_network
from .config import FINETUNE_SCHEDULE, SPARSITY_TARGETS, CLNPConfig
from .cycle import TrainingFailedError
from .integrity import check_clnp_state
from .learner import CLNP
from .report import TaskReport
from .search import RESOLVED_INPUTS, SEARCH_INPUTS

RUN_SETTINGS = ("l1", "margin", "grow")
"""CLNP's own settings that are also flags of ``clnp run`` (``--l1``, ``--margin``, ``--grow``)."""

OPTIONS = {
    "activity": Option("choice", "mean_abs", choices=ACTIVITY_MEASURES, help="unit activity measure"),
    "sparsity": Option("choice", "activations", choices=SPARSITY_TARGETS,
                       help="where the L1 penalty goes: hidden activations or the units' incoming weights"),
    "share": Option("choice", "equal", choices=SHARES,
                    help="how the plan divides free units among the tasks to come: equal, or declining "
                         "(more for the first tasks; for streams whose later tasks reuse old units)"),
    "finetune_schedule": Option("choice", FINETUNE_SCHEDULE, choices=LR_SCHEDULES,
                                help="how the fine-tuning's rate moves: cosine (falls to 0) or constant"),
    "plan": Option("bool", True, help="plan capacity over the stream (false: the greedy search that "
                                      "spends the whole margin on every task)"),
    "anneal": Option("bool", True, help="with the plan: train on every free unit, pruned towards the budget "
                                        "between epochs (false: train on a few times the budget, prune after "
                                        "training)"),
    "min_gain": Option("number", 0.1, low=0, high=1,
                       help="how far from chance towards 100 % a task must train before it is frozen"),
    "grow_min": Option("int", 1, low=1, help="with --grow: the fewest free units a layer must have"),
    "max_growth": Option("number", 4.0, low=1, help="with --grow: a layer grows to at most this many times its width"),
}
"""CLNP's options (``--option clnp.NAME=VALUE``) besides its run settings."""

OWN_SETTINGS = (*RUN_SETTINGS, *OPTIONS)
"""Every CLNP setting the factory takes from the options (the ``CLNPConfig`` fields beyond ``TrainConfig``)."""


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> CLNP:
    """CLNP on a fresh network built from ``model``. A ``CLNPConfig`` given as the training settings keeps its
    own CLNP settings; options override them."""
    own = {k: getattr(config, k) for k in OWN_SETTINGS} if isinstance(config, CLNPConfig) else {}
    own.update({k: v for k, v in options.items() if k in OWN_SETTINGS})
    return CLNP(build_network(model, input_shape), CLNPConfig(**asdict(config.training()), **own))


METHOD = Method(
    name="clnp", build=build,
    summary="continual learning via neural pruning: unit partition, zero forgetting",
    options=OPTIONS,
    # CLNP (Golkar, Kagan & Cho 2019): what the capacity plan leaves to tune. The plan sets each task's
    # share of the units, so no draw fills the network by task 3; the per-unit L1 coefficient (how tightly a
    # task concentrates, around its default 3e-3: bench/l1_sweep.py) and the margin, now the most a task may
    # lose to meet its budget (in validation points, around its default 1; below 0.5 the plan's free loss,
    # a tenth of it, is less than one input of most validation splits), remain.
    tuning={"l1": (1e-3, 3e-3, 1e-2), "margin": (0.5, 1.0, 2.0)},
    reads=("l1", "margin", "grow", "finetune_epochs", "finetune_lr"),
    run_settings=RUN_SETTINGS,
    settings=CLNPConfig,
    exports=True,
    capacity=True,
    check_state=check_clnp_state,
    # 1: the fine-tuning rate falls along a cosine (before: constant), the L1 pull falls with a layer's free share.
    # 2: 10 fine-tuning epochs (before: the training settings' 5).
    # 3: the L1 pull relaxes in a layer where every earlier task kept under half its budget (cycle.L1_FOLLOWS_BUDGET).
    revision=3,
    after_training="choosing the pruning within the {margin:g}-point margin (threshold search)",
)

__all__ = ["CLNP", "METHOD", "RESOLVED_INPUTS", "SEARCH_INPUTS", "CLNPConfig", "CapacityError", "ConfigTypeError",
           "TaskReport", "TrainingFailedError", "build"]
