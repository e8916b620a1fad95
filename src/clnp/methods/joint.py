"""``joint``: one multi-head network trained on all tasks at once (the upper bound for a shared net).

For the accuracy matrix the runner asks for accuracies after every task, so after task ``i`` this
method trains a *fresh* network (initialised under task ``i``'s seed) on the union of tasks
``0..i`` for ``config.epochs`` epochs over that union, minibatches mixing tasks, each example
scored by its own task's head. Row ``i`` is then joint training on the tasks seen so far and the
last row is joint training on the whole stream. Backward transfer compares joint models of
different task sets, not one model over time. The cost grows with the number of tasks seen
(``T(T+1)/2`` task-epochs per epoch of budget instead of ``T``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.tasks import DatasetSplit, Task, union_split
from ..engine.config import TrainConfig
from ..engine.method import Method
from .common.plain_net import PlainNet
from .common.sequential import SequentialLearner


class Joint(SequentialLearner):
    method = "joint"
    uses_every_parameter = False  # a minibatch may hold no example of some task

    def __init__(self, model: str, input_shape: Sequence[int], config: TrainConfig) -> None:
        super().__init__(PlainNet(model, input_shape), config)
        self.model = model
        self.seen: list[Task] = []

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        self.seen.append(task)
        if task_id > 0:
            self.net = PlainNet(self.model, self.net.input_shape).to(self.device)
        for t in self.seen:
            self.net.add_head(t.n_classes)
        data: tuple[Tensor, Tensor, Tensor] | DatasetSplit
        if any(isinstance(t.train, DatasetSplit) for t in self.seen):
            data = union_split([t.train for t in self.seen])  # through the DataLoader, each task's transform
        else:
            x = torch.cat([t.train.x for t in self.seen])
            y = torch.cat([t.train.y for t in self.seen])
            owner = torch.cat([torch.full((len(t.train),), k, dtype=torch.long) for k, t in enumerate(self.seen)])
            data = (x, y, owner)
        self._fit(task, task_id, self.config.epochs, list(self.net.parameters()), generator, data=data)
        return {"union_examples": sum(len(t.train) for t in self.seen)}

    def restore_tasks(self, tasks: list[Task]) -> None:
        """After :meth:`load_learner_state`: the tasks learned so far (joint training reads their data again)."""
        if len(tasks) != len(self.reports):
            raise ValueError(f"joint: {len(tasks)} tasks given for a state of {len(self.reports)}")
        self.seen = list(tasks)

    def batch_loss(self, batch: tuple[Tensor, ...], head: int, step: int, n_steps: int) -> Tensor:
        return self._union_loss(*batch)

    def _union_loss(self, x: Tensor, y: Tensor, owner: Tensor) -> Tensor:
        """Mean cross-entropy over the batch, each example through its own task's head."""
        features = self.net.features(x)
        total = features.new_zeros(())
        for k in owner.unique().tolist():
            rows = owner == k
            total = total + F.cross_entropy(self.net.heads[k](features[rows]), y[rows], reduction="sum")
        return total / y.shape[0]


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> Joint:
    return Joint(model, input_shape, config)


METHOD = Method(
    name="joint", build=build,
    summary="one network trained on all tasks seen so far at once (shared-network upper bound)",
    # Joint training: no own setting, the learning rate only.
)
