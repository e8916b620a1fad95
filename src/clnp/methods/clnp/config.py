"""CLNP's settings: the training settings every method reads, plus the method's own, checked on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ...core.activity import ACTIVITY_MEASURES
from ...core.capacity import SHARES
from ...engine.config import LR_SCHEDULES, ConfigTypeError, TrainConfig, check_choice, check_field_types, is_number

FINETUNE_LR_SCALE = 0.3
"""CLNP's fine-tuning runs at this fraction of the training rate unless ``finetune_lr`` is given: it retrains a few
kept units of a trained network, where the training rate is noisy (bench/RESULTS.md, "The capacity plan", fourth
session)."""

FINETUNE_SCHEDULE = "cosine"
"""CLNP's default fine-tuning schedule (:attr:`CLNPConfig.finetune_schedule`): the rate falls from its start to 0 over
the fine-tuning's steps (a cosine), so the retrained units settle at the end instead of moving at a constant step to
the last batch (bench/RESULTS.md, "The capacity plan", eighth session)."""

SPARSITY_TARGETS = ("activations", "weights")
"""Where :attr:`CLNPConfig.sparsity` may put the L1 penalty."""


@dataclass
class CLNPConfig(TrainConfig):
    """CLNP's settings: the training settings every method reads, plus the method's own.

    The own ones are the L1 coefficient on hidden activations, the graceful-forgetting margin and
    the activity measure; ``finetune_epochs`` (retraining after pruning) is a training setting,
    shared with PackNet, to which CLNP gives its own default.
    """

    finetune_epochs: int = 10
    """Retraining epochs after pruning: CLNP's own default, twice the training settings' 5 (PackNet's). The kept
    units are retrained with a rate that falls to 0 along a cosine, and the longer fall lifts the wide permuted stream
    and split-fashion-mnist (bench/RESULTS.md, "The capacity plan", ninth session). A run takes it unless
    ``--finetune-epochs`` is given; a plain :class:`TrainConfig` handed to CLNP keeps its own value."""
    finetune_schedule: str = FINETUNE_SCHEDULE
    """How the fine-tuning's rate moves over its steps, one of ``LR_SCHEDULES``: ``cosine`` (the default, measured
    above ``constant`` on the small-network protocol) or ``constant`` (clnp's fine-tuning before the eighth session, and
    PackNet's retraining). The training phase follows ``lr_schedule``."""
    l1: float | tuple[float, ...] | list[float] = 3e-3
    """L1 coefficient on mean absolute activation: one value for all layers, or one per layer. The penalty is a sum
    over units (each unit feels the same pull at any width), so one default serves every benchmark
    (``bench/l1_sweep.py``, bench/RESULTS.md "One L1 coefficient"). With the plan, the pull falls with the share of
    the layer still free (:data:`~clnp.methods.clnp.cycle.L1_BY_FREE_SHARE`): the full coefficient on an empty layer,
    a fifth of it where a fifth is free; and it is relaxed, to as little as a third, in a layer where every earlier
    task kept under half its budget (:data:`~clnp.methods.clnp.cycle.L1_FOLLOWS_BUDGET`). Each task's report says
    the share it trained under (``l1_pull``)."""
    margin: float = 1.0
    """Graceful-forgetting margin: the validation accuracy (in points) the pruning may cost."""
    plan: bool = True
    """Plan capacity over the stream: before each task, give every layer a unit budget (an equal share of its free
    units among the tasks still to come, ``expected_tasks``, or open-ended, beyond a reserve of a few units); the
    task begins training on every free unit, pruned to the budget between epochs (``anneal``; otherwise on a few
    times its budget);
    the search first prunes what costs next to nothing and spends the margin only where a layer is over its budget
    (docs/design.md, "Capacity is a budget"). False: the
    greedy search of the paper, which spends the whole margin on every task, trained on every free unit."""
    anneal: bool = True
    """With a plan: prune the task's least active units towards its budget between training epochs (a cubic
    schedule, never below 8 units), so that it learns within the budget instead of being cut to it after training.
    The task then trains on every free unit of a layer whose budget is at least 8 (what it drops is free again for
    later tasks), where a task too short to anneal (fewer than 40 steps before its last epoch) trains on a few
    times its budget. Open-ended streams (no ``expected_tasks``) are annealed too, to the doubling rule's budget.
    Measured (bench/RESULTS.md, "The capacity plan", third, sixth and fourteenth sessions): on the small-network
    protocol no task is starved and ACC rises from 80.4 to 84.7 %; trained on every free unit, the wide permuted
    stream gains 0.6 points; open-ended, 10 permuted-digits tasks score 96.2 % against 94.5 % and leave 21-27
    units of each layer free against 0-4, and on ``mlp:64,64`` all ten fit (91 %) where, cut after training, the
    stream stopped at task 7 or 8. False: cut after training, over budget where the margin forbids."""
    share: str = "equal"
    """How the plan divides a layer's free units among the tasks still to come: ``equal`` shares, or ``declining``
    (about twice the equal share for the coming task, falling linearly to the last: for streams whose later tasks
    reuse old units); :func:`clnp.core.capacity.allotments`, measured in bench/RESULTS.md ("The capacity plan")."""
    sparsity: str = "activations"
    """Where the L1 penalty goes: ``activations`` (each unit's mean absolute activation, clnp's reading of the paper)
    or ``weights`` (each unit's mean absolute incoming weight and bias, as the re-implementation of CLNP that NISPA
    compares with). Both are sums over units, but a unit's mean incoming weight is far smaller than its mean
    activation: on weights, ``l1`` needs to be about 10-30 times larger to idle as many units, and at every
    coefficient measured it scored below activations (bench/RESULTS.md, "The capacity plan"), so it is an option,
    not the default."""
    activity: str = "mean_abs"
    """Unit activity measure, the order in which the search prunes: one of
    :data:`~clnp.core.activity.ACTIVITY_MEASURES` (``mean_abs``, ``firing_rate``, ``contribution``)."""
    min_gain: float = 0.1
    """How far from chance (the most frequent class) towards 100 % the dense network's validation accuracy
    must get before its task is pruned and frozen, as a fraction; otherwise :class:`TrainingFailedError`.
    0 turns the check off (for data that is not meant to be learnable, as in tests)."""
    grow: bool = False
    """Before each task, add free units to a layer that has fewer than the task is expected to need (the most
    any of the last :data:`GROW_LOOKBACK` tasks kept there, at least ``grow_min``), up to ``max_growth``
    times its initial width; earlier tasks' outputs stay bit-identical (:meth:`CLNPNet.grow_`)."""
    grow_min: int = 1
    """With ``grow``: the fewest free units every layer must have before a task."""
    max_growth: float = 4.0
    """With ``grow``: a layer grows to at most this many times its initial width; beyond, ``CapacityError``."""

    def finetuning(self) -> CLNPConfig:
        """These settings with the fine-tuning's rate as ``lr`` (``finetune_lr``, or :data:`FINETUNE_LR_SCALE` times
        ``lr`` when it is not given), moving as ``finetune_schedule`` says."""
        return replace(self, lr=self.lr * FINETUNE_LR_SCALE if self.finetune_lr is None else self.finetune_lr,
                       lr_schedule=self.finetune_schedule)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field_types(self, {"margin": "number", "activity": "str", "sparsity": "str", "share": "str",
                                 "finetune_schedule": "str",
                                 "min_gain": "number", "grow": "bool", "plan": "bool", "anneal": "bool",
                                 "grow_min": "int", "max_growth": "number"})
        if self.grow_min < 1:
            raise ValueError(f"grow_min must be >= 1 unit, got {self.grow_min}")
        if not 1.0 <= self.max_growth < math.inf:
            raise ValueError(f"max_growth must be >= 1 (times the initial width) and finite, got {self.max_growth}")
        if not 0 <= self.min_gain <= 1:
            raise ValueError(f"min_gain must lie in [0, 1], got {self.min_gain}")
        l1 = self.l1
        if not (is_number(l1) or (isinstance(l1, (list, tuple)) and l1 and all(is_number(v) for v in l1))):
            raise ConfigTypeError(f"CLNPConfig.l1 must be a number or a list of numbers (one per layer), got {l1!r}")
        if not 0 <= self.margin < math.inf:
            raise ValueError(f"margin must be >= 0 accuracy points and finite, got {self.margin}")
        coefficients = (l1,) if isinstance(l1, (int, float)) else l1  # a number (a bool was refused above) or a list
        if any(not 0 <= v < math.inf for v in coefficients):
            raise ValueError(f"l1 coefficients must be >= 0 and finite, got {self.l1}")
        for name, choices in (("finetune_schedule", LR_SCHEDULES), ("share", SHARES), ("sparsity", SPARSITY_TARGETS),
                              ("activity", ACTIVITY_MEASURES)):
            check_choice(self, name, choices)


__all__ = ["FINETUNE_LR_SCALE", "FINETUNE_SCHEDULE", "SPARSITY_TARGETS", "CLNPConfig", "ConfigTypeError"]
