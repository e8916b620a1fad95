"""``online-ewc``: online EWC (Schwarz et al. 2018, "Progress & Compress", arXiv 1805.06370).

One running penalty: ``F <- gamma * F + F_task`` and the anchor moves to the weights after each
task. Fisher estimated as in :mod:`clnp.methods.ewc`.

Default strength ``lambda = 400``: Hsu, Liu & Kira 2018 (arXiv 1810.12488), online EWC in their
task-incremental split MNIST script (GT-RIPL/Continual-Learning-Benchmark). ``gamma = 1.0`` as in
van de Ven & Tolias 2019 ("Three scenarios for continual learning", arXiv 1904.07734). Options
``lambda``, ``gamma``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.tasks import Task
from ..engine.config import TrainConfig
from ..engine.method import Method
from ..engine.options import Option
from .common.plain_net import PlainNet
from .common.quadratic import QuadraticLearner, fisher_diagonal
from .common.sequential import options_float

DEFAULT_STRENGTH = 400.0
DEFAULT_GAMMA = 1.0


class OnlineEWC(QuadraticLearner):
    method = "online-ewc"

    def __init__(self, net: PlainNet, config: TrainConfig, strength: float = DEFAULT_STRENGTH,
                 gamma: float = DEFAULT_GAMMA) -> None:
        super().__init__(net, config, strength)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"online-ewc: gamma must lie in [0, 1], got {gamma}")
        self.gamma = gamma

    def after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        fisher = fisher_diagonal(self.net, task_id, task.train.input_batches(self.config.batch_size))
        if self.terms:
            fisher = [self.gamma * old + new for old, new in zip(self.terms[0][0], fisher, strict=True)]
        self.terms = [(fisher, self.anchor())]
        return {"strength": self.strength, "gamma": self.gamma}


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> OnlineEWC:
    return OnlineEWC(PlainNet(model, input_shape), config, options_float(options, "lambda", DEFAULT_STRENGTH),
                     options_float(options, "gamma", DEFAULT_GAMMA))


METHOD = Method(
    name="online-ewc", build=build, summary="Fisher-weighted quadratic penalty, one running term",
    options={"lambda": Option("number", DEFAULT_STRENGTH, low=0, help="strength of the penalty"),
             "gamma": Option("number", DEFAULT_GAMMA, low=0, high=1, help="Fisher decay")},
    tuning={"lambda": (1.0, 10.0, 100.0, 1e3, 1e4)},  # Schwarz et al. 2018; gamma stays 1
)
