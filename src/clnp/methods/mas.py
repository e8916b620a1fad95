"""``mas``: Memory Aware Synapses (Aljundi et al. 2018, ECCV, arXiv 1711.09601).

Importance of a weight: the mean over (up to ``samples``, default 1,024) training inputs of the
absolute gradient of the squared L2 norm of the task's outputs, one gradient per example; it is
accumulated over tasks and the anchor moves to the latest weights.

Default strength ``lambda = 1``: the value of Aljundi et al. and of Hsu, Liu & Kira 2018's
task-incremental split MNIST script (arXiv 1810.12488, GT-RIPL/Continual-Learning-Benchmark).
Option ``lambda``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.tasks import Task
from ..engine.config import TrainConfig
from ..engine.method import Method
from ..engine.options import Option
from .common.plain_net import PlainNet
from .common.quadratic import QuadraticLearner, n_samples, sensitivity
from .common.sequential import options_float, sample_inputs

DEFAULT_STRENGTH = 1.0
DEFAULT_SAMPLES = 1024


class MAS(QuadraticLearner):
    method = "mas"

    def __init__(self, net: PlainNet, config: TrainConfig, strength: float = DEFAULT_STRENGTH,
                 samples: int = DEFAULT_SAMPLES) -> None:
        super().__init__(net, config, strength)
        self.samples = samples

    def after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        omega = sensitivity(self.net, task_id, sample_inputs(task, self.samples, generator))
        if self.terms:
            omega = [old + new for old, new in zip(self.terms[0][0], omega, strict=True)]
        self.terms = [(omega, self.anchor())]
        return {"strength": self.strength}


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> MAS:
    return MAS(PlainNet(model, input_shape), config, options_float(options, "lambda", DEFAULT_STRENGTH),
               n_samples(options))


METHOD = Method(
    name="mas", build=build, summary="output-sensitivity importance (Memory Aware Synapses)",
    options={"lambda": Option("number", DEFAULT_STRENGTH, low=0, help="strength of the penalty"),
             "samples": Option("int", DEFAULT_SAMPLES, low=1, help="inputs for the importance estimate")},
    # MAS (Aljundi et al. 2018): lambda from 0.1 to 100 in decades, around the paper's 1.
    tuning={"lambda": (0.1, 1.0, 10.0, 100.0)},
)
