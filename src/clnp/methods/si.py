"""``si``: Synaptic Intelligence (Zenke, Poole & Ganguli 2017, ICML, arXiv 1703.04200).

During a task each weight accumulates ``omega += -g * delta`` over the optimiser's steps, ``g``
the gradient of the task loss alone (without the penalty) and ``delta`` the step's change. At the
end of the task ``importance += max(0, omega / (Delta ** 2 + xi))``, ``Delta`` the weight's total
change over the task, and the anchor moves to the latest weights. (Negative path integrals are
rare; clipping them at zero keeps the penalty a penalty.)

Default strength ``c = 300`` and damping ``xi = 0.1``: Hsu, Liu & Kira 2018 (arXiv 1810.12488),
SI in their task-incremental split MNIST script and their SI implementation
(GT-RIPL/Continual-Learning-Benchmark). Options ``lambda`` (c) and ``xi``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..data.tasks import Task
from ..engine.config import TrainConfig
from ..engine.method import Method
from ..engine.options import Option
from .common.plain_net import PlainNet
from .common.quadratic import QuadraticLearner
from .common.sequential import options_float

DEFAULT_STRENGTH = 300.0
DEFAULT_DAMPING = 0.1


class SI(QuadraticLearner):
    method = "si"

    def __init__(self, net: PlainNet, config: TrainConfig, strength: float = DEFAULT_STRENGTH,
                 damping: float = DEFAULT_DAMPING) -> None:
        super().__init__(net, config, strength)
        if damping <= 0:
            raise ValueError(f"si: the damping xi must be > 0, got {damping}")
        self.damping = damping
        self._omega: list[Tensor] = []
        self._start: list[Tensor] = []
        self._grads: list[Tensor] = []
        self._before: list[Tensor] = []

    def before_task(self, task: Task, task_id: int) -> None:
        self._start = self.anchor()
        self._omega = [torch.zeros_like(p) for p in self._start]

    def backward(self, loss: Tensor, penalty: Tensor | None) -> None:
        loss.backward()
        params = self.net.trunk_parameters()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        if self.loss_scale is not None:  # fp16: the loss was scaled; an overflowed step (inf) is skipped
            grads = [torch.nan_to_num(g / self.loss_scale, nan=0.0, posinf=0.0, neginf=0.0) for g in grads]
        self._grads = grads
        if penalty is not None:
            # A second backward pass would make DDP reduce twice: add the penalty's gradient by hand.
            # It is the same on every rank (the parameters are), so it needs no reduction.
            extra = torch.autograd.grad(penalty, params, allow_unused=True)
            for p, g in zip(params, extra, strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g

    def after_backward(self, task_id: int, step: int, n_steps: int) -> None:
        self._before = self.anchor()

    @torch.no_grad()
    def after_step(self, task_id: int) -> None:
        for omega, g, before, p in zip(self._omega, self._grads, self._before, self.net.trunk_parameters(),
                                       strict=True):
            omega -= g * (p - before)

    def after_task(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        end = self.anchor()
        new = [(w / ((e - s) ** 2 + self.damping)).clamp_min(0)
               for w, s, e in zip(self._omega, self._start, end, strict=True)]
        if self.terms:
            new = [old + n for old, n in zip(self.terms[0][0], new, strict=True)]
        self.terms = [(new, end)]
        return {"strength": self.strength, "damping": self.damping}


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> SI:
    return SI(PlainNet(model, input_shape), config, options_float(options, "lambda", DEFAULT_STRENGTH),
              options_float(options, "xi", DEFAULT_DAMPING))


METHOD = Method(
    name="si", build=build, summary="path-integral importance (Synaptic Intelligence)",
    options={"lambda": Option("number", DEFAULT_STRENGTH, low=0, help="strength of the penalty"),
             "xi": Option("number", DEFAULT_DAMPING, low=0, low_open=True, help="damping")},
    # SI (Zenke, Poole & Ganguli 2017): its strength c from 0.1 to 1000 in decades, around the default 300
    # of Hsu, Liu & Kira 2018.
    tuning={"lambda": (0.1, 1.0, 10.0, 100.0, 1000.0)},
)
