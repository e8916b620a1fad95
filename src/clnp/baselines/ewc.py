"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al. 2017, PNAS, arXiv 1612.00796).

After each task, the diagonal Fisher information of the trunk is estimated on up to
``samples`` (default 1,024) training inputs, one gradient per example of the log-likelihood of
the model's own prediction, and stored with the weights as one penalty term per task.

Default strength ``lambda = 100``: Hsu, Liu & Kira 2018 (arXiv 1810.12488), the EWC setting of
their task-incremental split MNIST script (``scripts/split_MNIST_incremental_task.sh`` in
GT-RIPL/Continual-Learning-Benchmark), whose results ``docs/benchmarks.md`` quotes. Override with
the option ``lambda``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..tasks import Task
from ..trainer import CLNPConfig
from .base import options_float, sample_inputs
from .net import PlainNet
from .quadratic import QuadraticLearner, fisher_diagonal, n_samples

DEFAULT_STRENGTH = 100.0


class EWC(QuadraticLearner):
    method = "ewc"

    def __init__(self, net: PlainNet, config: CLNPConfig, strength: float = DEFAULT_STRENGTH,
                 samples: int = 1024) -> None:
        super().__init__(net, config, strength)
        self.samples = samples

    def _after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        fisher = fisher_diagonal(self.net, task_id, sample_inputs(task, self.samples, generator))
        self.terms.append((fisher, self.anchor()))
        return {"strength": self.strength}


def build(model: str, input_shape: Sequence[int], config: CLNPConfig, options: dict) -> EWC:
    return EWC(PlainNet(model, input_shape), config, options_float(options, "lambda", DEFAULT_STRENGTH),
               n_samples(options))
