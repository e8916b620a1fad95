"""``independent``: a separate network per task, each as wide as the shared one.

The accuracy ceiling for a network of this size: no interference and no transfer, at T times the
parameters. Each task's network is freshly initialised under the task's seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.tasks import Task
from ..engine.config import TrainConfig
from ..engine.method import Method
from .common.plain_net import PlainNet, count_parameters
from .common.sequential import BYTES_PER_FLOAT, SequentialLearner


class Independent(SequentialLearner):
    method = "independent"

    def __init__(self, model: str, input_shape: Sequence[int], config: TrainConfig) -> None:
        super().__init__(PlainNet(model, input_shape), config)
        self.model = model
        self.nets: list[PlainNet] = []

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        # Called under the task's seed: the first network is the one built with the run's seed.
        if task_id > 0:
            self.net = PlainNet(self.model, self.net.input_shape).to(self.device)
        self.nets.append(self.net)
        self.net.add_head(task.n_classes)
        self._fit(task, 0, self.config.epochs, self._trainable(0), generator)
        return None

    def _evaluator(self, task_id: int) -> tuple[nn.Module, int]:
        return self.nets[task_id], 0

    def _heads(self) -> list[int]:
        return [int(net.heads[0].out_features) for net in self.nets]

    def _net_state(self) -> dict[str, Tensor]:
        return {f"{t}.{k}": v for t, net in enumerate(self.nets) for k, v in net.state_dict().items()}

    def _load_net(self, state: dict[str, Tensor], heads: list[int]) -> None:
        nets = []
        for t, n_classes in enumerate(heads):
            net = self.net if t == 0 else PlainNet(self.model, self.net.input_shape).to(self.device)
            net.add_head(n_classes)
            prefix = f"{t}."
            net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
            nets.append(net)
        stray = [k for k in state if not k.split(".", 1)[0].isdigit() or int(k.split(".", 1)[0]) >= len(heads)]
        if stray:
            raise ValueError(f"unexpected tensors in an independent state: net.{stray[0]}")
        self.nets = nets
        if nets:
            self.net = nets[-1]

    def _val_accuracy(self, task: Task, task_id: int) -> float:
        return super()._val_accuracy(task, len(self.nets) - 1)  # the network being trained

    def footprint(self) -> dict:
        n = sum(count_parameters(net) for net in self.nets)
        return {"parameters": n, "storage_bytes": n * BYTES_PER_FLOAT}


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> Independent:
    return Independent(model, input_shape, config)


METHOD = Method(
    name="independent", build=build,
    summary="a separate network per task (ceiling at this width, T x parameters)",
    # Separate networks: no own setting, the learning rate only.
)
