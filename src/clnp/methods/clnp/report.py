"""What learning one task did, as CLNP reports it (``results.json``'s ``tasks``, the checkpoint's reports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TaskReport:
    """What learning one task did: accuracies, units per layer, timings."""

    task: int
    name: str
    val_accuracy_dense: float
    """Validation accuracy after training, before pruning."""
    val_accuracy_pruned: float
    """After pruning, before fine-tuning (within the margin of the dense one)."""
    val_accuracy_final: float
    """After fine-tuning and freezing."""
    pruned: list[int]
    owned: list[int]
    free_after: list[int]
    reused: list[int]
    thresholds: list[float]
    seconds: dict[str, float]
    epoch_log: list[dict] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)
    """Units added to each layer before the task (``grow``); empty or zeros without growth."""
    budget: list[int] | None = None
    """The plan's per-layer budget: the most new units the task could keep without spending the margin on it
    (None: greedy search, ``plan=False``)."""
    over_budget: list[int] = field(default_factory=list)
    """Per layer, units kept beyond the budget because pruning them would cost more than the margin."""
    given_up: list[float] = field(default_factory=list)
    """Per layer, validation accuracy (points) the search gave up to prune that layer's units."""
    val_accuracy_lossless: float | None = None
    """After the pruning that cost nothing (with a plan); the margin is spent below it only for the budget."""
    trained: list[int] = field(default_factory=list)
    """Per layer, the free units the task began training on (with a plan: annealed, every free unit, pruned to the
    budget between epochs, so the search starts within it; otherwise a few times its budget). Empty without a plan."""

    l1_pull: list[float] = field(default_factory=list)
    """Per layer, the share of the L1 coefficient the task's units trained under (with a plan: the layer's free
    share, relaxed where earlier tasks left their budgets unused). Empty in reports from before it was recorded."""

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["TaskReport"]
