"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al. 2017, PNAS, arXiv 1612.00796).

After each task, the diagonal Fisher information of the trunk is estimated on the task's training
split with Hsu et al.'s estimator (minibatch gradients of the log-likelihood of the model's own
predictions, see :func:`clnp.methods.common.quadratic.fisher_diagonal`), and stored with the weights as
one penalty term per task.

Default strength ``lambda = 100``: Hsu, Liu & Kira 2018 (arXiv 1810.12488), the EWC setting of
their task-incremental split MNIST script (``scripts/split_MNIST_incremental_task.sh`` in
GT-RIPL/Continual-Learning-Benchmark), whose results ``bench/RESULTS.md`` quotes. Override with
the option ``lambda``.
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

DEFAULT_STRENGTH = 100.0


class EWC(QuadraticLearner):
    method = "ewc"

    def __init__(self, net: PlainNet, config: TrainConfig, strength: float = DEFAULT_STRENGTH) -> None:
        super().__init__(net, config, strength)

    def after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        fisher = fisher_diagonal(self.net, task_id, task.train.input_batches(self.config.batch_size))
        self.terms.append((fisher, self.anchor()))
        return {"strength": self.strength}


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> EWC:
    return EWC(PlainNet(model, input_shape), config, options_float(options, "lambda", DEFAULT_STRENGTH))


METHOD = Method(
    name="ewc", build=build, summary="Fisher-weighted quadratic penalty, one term per task",
    options={"lambda": Option("number", DEFAULT_STRENGTH, low=0, help="strength of the penalty")},
    # EWC (Kirkpatrick et al. 2017): strengths spanning four decades, as in the sweeps of Hsu, Liu & Kira
    # 2018 (arXiv 1810.12488), whose split-MNIST value 100 is the default.
    tuning={"lambda": (1.0, 10.0, 100.0, 1e3, 1e4)},
)
