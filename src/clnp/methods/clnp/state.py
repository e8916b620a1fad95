"""CLNP's learned state: its round trip as data, the rollback of a failed task, and the integrity checks a
saved state passes before it is loaded (:mod:`.integrity`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ...core.partition import FREE
from .report import TaskReport


class StateMixin:
    """The state of :class:`~clnp.methods.clnp.CLNP`: the network's tensors and the reports."""

    net: Any
    reports: list

    def _state(self) -> tuple[dict[str, Tensor], dict]:
        """The network's tensors and JSON-able metadata (heads, reports); valid between tasks (the network is
        consolidated then); see :mod:`clnp.experiments.checkpoint`."""
        meta = {"heads": [head.out_features for head in self.net.heads],
                "reports": [r.to_dict() for r in self.reports]}
        return dict(self.net.state_dict()), meta

    def _load_state(self, tensors: Mapping[str, Tensor], meta: dict) -> None:
        for n_classes in meta["heads"]:
            self.net.add_head(int(n_classes))
        self.net.load_state_dict(dict(tensors), strict=True)  # the load hook re-derives every mask
        self.reports = [TaskReport(**r) for r in meta["reports"]]

    @torch.no_grad()
    def rollback(self, task_id: int) -> None:
        """Undo a task that failed part-way: drop its head and give back any units it took.

        Earlier tasks never changed (their units are frozen). The free units are zeroed, so nothing
        the failed task left in them (an overflow, say) lingers; the next task re-initialises them.
        Afterwards the learner can learn the next task as if nothing had happened.
        """
        net = self.net
        if net.n_tasks <= task_id:
            return
        net.consolidate_()  # frozen rows and statistics back to their frozen values
        for owner in net.owners:
            owner[owner >= task_id] = FREE
        while net.n_tasks > task_id:
            del net.heads[net.n_tasks - 1]
        net.clear_free_units_()
        del self.reports[task_id:]
