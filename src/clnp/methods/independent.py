"""``independent``: a separate network per task, each as wide as the shared one.

The accuracy ceiling for a network of this size: no interference and no transfer, at T times the
parameters. Each task's network is freshly initialised under the task's seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.tasks import Task
from .config import TrainConfig
from .plain_net import PlainNet, count_parameters
from .sequential import BYTES_PER_FLOAT, SequentialLearner


class Independent(SequentialLearner):
    method = "independent"

    def __init__(self, model: str, input_shape: Sequence[int], config: TrainConfig) -> None:
        super().__init__(PlainNet(model, input_shape), config)
        self.model = model
        self.nets: list[PlainNet] = []

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        # Called under the task's seed: the first network is the one built with the run's seed.
        if task_id > 0:
            self.net = PlainNet(self.model, self.net.input_shape)
        self.nets.append(self.net)
        self.net.add_head(task.n_classes)
        self._fit(task, 0, self.config.epochs, self._trainable(0), generator)
        return None

    def _evaluator(self, task_id: int) -> tuple[nn.Module, int]:
        return self.nets[task_id], 0

    def _val_accuracy(self, task: Task, task_id: int) -> float:
        return super()._val_accuracy(task, len(self.nets) - 1)  # the network being trained

    def footprint(self) -> dict:
        n = sum(count_parameters(net) for net in self.nets)
        return {"parameters": n, "storage_bytes": n * BYTES_PER_FLOAT}


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> Independent:
    return Independent(model, input_shape, config)
