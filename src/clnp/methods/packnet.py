"""``packnet``: weight-level pruning with per-task masks (Mallya & Lazebnik 2018, CVPR, arXiv 1711.05769).

Every ``Linear``/``Conv2d`` weight has an owner (a task id, or free). Task ``t``:

1. re-initialise the free weights; train them (``config.epochs``) while weights of earlier tasks
   are read but frozen;
2. prune: of the free weights of each layer, keep the ``1 - prune`` fraction with the largest
   magnitude; the rest are set to zero and stay free for later tasks;
3. retrain the kept weights alone for ``config.finetune_epochs`` (the same fine-tuning budget
   CLNP gets) and give them to task ``t``.

The weights are those of every ``Linear``/``Conv2d`` layer of the trunk (:attr:`PlainNet.layers`), so
the method runs alike on a chain (``mlp``/``cnn`` specs) and on a built-in graph model (``resnet18:NF``,
``alexnet``). Task ``t`` is evaluated with the weights owned by tasks ``0..t`` only; biases are
trained with the first task and frozen after it, as in the paper; every task has its own head.

Batch norm (``mlp:...:bn``, ``cnn:...:bn``, the built-in graph models) is treated like the biases:
its scale, shift and running statistics are those of the first task. While a later task trains,
every batch norm is in evaluation mode (it normalises with the first task's statistics and updates
none) and its scale and shift are not trained. This is what the authors' code does by default
(arunmallya/packnet, ``--train_bn`` off), where the first task is the ImageNet model they start
from. There are no per-task batch norms: every task is normalised with the first task's statistics.

Frozen values are restored after every optimiser step, so no optimiser state or weight decay can move
them: earlier tasks' outputs are bit-identical after later tasks.

Default ``prune = 0.75``, the larger of the two per-task pruning ratios of the paper (50% and
75%), which leaves more room for long task sequences. Option ``prune``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..core.partition import FREE, live_units
from ..data.tasks import Task
from ..engine.config import TrainConfig
from ..engine.method import Method
from ..engine.options import Option
from .common.plain_net import PlainNet, count_parameters
from .common.sequential import (
    BYTES_PER_FLOAT,
    SequentialLearner,
    check_consumed,
    options_float,
    tensor_list,
)

DEFAULT_PRUNE = 0.75


class PackNet(SequentialLearner):
    method = "packnet"

    def __init__(self, net: PlainNet, config: TrainConfig, prune: float = DEFAULT_PRUNE) -> None:
        super().__init__(net, config)
        if not 0.0 < prune < 1.0:
            raise ValueError(f"packnet: prune must lie in (0, 1), got {prune}")
        self.prune = prune
        names = {id(p): name for name, p in net.named_parameters()}
        self.weight_names = [names[id(layer.weight)] for layer in net.layers]
        """The name of every pruned weight in the network (``blocks.0.layer.weight``, ``trunk.conv1.weight``)."""
        self.batch_norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.owner = [torch.full(layer.weight.shape, FREE, dtype=torch.int16, device=self.device)
                      for layer in net.layers]
        self._visible: list[Tensor] = []
        self._trainable_masks: list[Tensor] = []  # per layer; `_trainable` is SequentialLearner's method
        self._frozen: list[Tensor] = []

    # ------------------------------------------------------------------------------ masks
    def _forward_with(self, visible: Sequence[Tensor], x: Tensor, task_id: int) -> Tensor:
        weights = {name: torch.where(v, layer.weight, torch.zeros((), dtype=layer.weight.dtype))
                   for name, v, layer in zip(self.weight_names, visible, self.net.layers, strict=True)}
        return functional_call(self.net, weights, (x, task_id), strict=False)

    def forward_batch(self, x: Tensor, task_id: int, step: int, n_steps: int) -> Tensor:
        if task_id > 0:  # batch norm keeps the first task's statistics (the loop sets training mode)
            for bn in self.batch_norms:
                bn.eval()
        return self._forward_with(self._visible, x, task_id)

    def _set_phase(self, trainable: Sequence[Tensor], task_id: int) -> None:
        self._trainable_masks = list(trainable)
        self._visible = [live_units(o, task_id - 1) | t for o, t in zip(self.owner, trainable, strict=True)]
        self._frozen = [layer.weight.detach().clone() for layer in self.net.layers]

    def after_backward(self, task_id: int, step: int, n_steps: int) -> None:
        for layer, t in zip(self.net.layers, self._trainable_masks, strict=True):
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(t)

    @torch.no_grad()
    def after_step(self, task_id: int) -> None:
        for layer, t, frozen in zip(self.net.layers, self._trainable_masks, self._frozen, strict=True):
            layer.weight.copy_(torch.where(t, layer.weight, frozen))

    # -------------------------------------------------------------------------- the task
    def _trainable_parameters(self, task_id: int) -> list[nn.Parameter]:
        weights = [layer.weight for layer in self.net.layers]
        params = weights + list(self.net.heads[task_id].parameters())
        if task_id == 0:  # biases and batch norm: trained with the first task only
            pruned = {id(w) for w in weights}
            params += [p for p in self.net.trunk_parameters() if id(p) not in pruned]
        return params

    def _learn(self, task: Task, task_id: int, generator: torch.Generator) -> dict | None:
        self.net.add_head(task.n_classes)
        free = [o == FREE for o in self.owner]
        for i, f in enumerate(free):
            if not f.any():
                raise RuntimeError(f"packnet: layer {i} has no free weight left for task {task_id}; "
                                   "use a wider model or a larger prune fraction")
        self._reinitialise(free)
        self._set_phase(free, task_id)
        self._fit(task, task_id, self.config.epochs, self._trainable_parameters(task_id), generator)
        keep = self._prune(free)
        self._set_phase(keep, task_id)
        if self.config.finetune_epochs:
            self._fit(task, task_id, self.config.finetune_epochs, self._trainable_parameters(task_id), generator,
                      phase="finetune")
        for owner, k in zip(self.owner, keep, strict=True):
            owner[k] = task_id
        return {"weights_owned": [int(k.sum()) for k in keep],
                "weights_free_after": [int((o == FREE).sum()) for o in self.owner]}

    @torch.no_grad()
    def _reinitialise(self, free: Sequence[Tensor]) -> None:
        for layer, f in zip(self.net.layers, free, strict=True):
            fresh = torch.empty_like(layer.weight)
            nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))
            layer.weight.copy_(torch.where(f, fresh, layer.weight))

    @torch.no_grad()
    def _prune(self, free: Sequence[Tensor]) -> list[Tensor]:
        """Per layer, the free weights to keep (largest magnitude); zero the others."""
        keep = []
        for layer, f in zip(self.net.layers, free, strict=True):
            free_index = f.flatten().nonzero().squeeze(1)
            magnitude = layer.weight.detach().flatten()[free_index].abs()
            n_keep = max(1, math.ceil((1.0 - self.prune) * magnitude.numel()))
            k = torch.zeros(f.numel(), dtype=torch.bool, device=f.device)
            k[free_index[torch.topk(magnitude, n_keep).indices]] = True
            k = k.view_as(f)
            layer.weight.masked_fill_(f & ~k, 0.0)
            keep.append(k)
        return keep

    # ------------------------------------------------------------------------- checkpoint
    def state_tensors(self) -> dict[str, Tensor]:
        return {f"owner.{i}": o for i, o in enumerate(self.owner)}

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: dict, n_tasks: int) -> None:
        owner = tensor_list(tensors, "owner", self.owner)
        for i, o in enumerate(owner):
            if o.numel() and (int(o.min()) < FREE or int(o.max()) >= n_tasks):
                raise ValueError(f"packnet: owner.{i} holds task ids outside {FREE}..{n_tasks - 1}")
        check_consumed(tensors, {f"owner.{i}" for i in range(len(owner))}, self.method)
        self.owner = owner

    # ---------------------------------------------------------------------------- public
    def _evaluator(self, task_id: int) -> tuple[nn.Module, int]:
        return _Bound(self, [live_units(o, task_id) for o in self.owner]), task_id

    def _val_accuracy(self, task: Task, task_id: int) -> float:
        """During training: the network as the current phase sees it."""
        return self._accuracy_of(_Bound(self, self._visible), task_id, task.val.x, task.val.y)

    def footprint(self) -> dict:
        n = count_parameters(self.net)
        n_weights = sum(o.numel() for o in self.owner)
        return {"parameters": n, "storage_bytes": n * BYTES_PER_FLOAT + n_weights}  # + one owner byte per weight


class _Bound(nn.Module):
    """The network as task ``t`` sees it under fixed masks (for evaluation)."""

    def __init__(self, learner: PackNet, visible: Sequence[Tensor]) -> None:
        super().__init__()
        self.learner = learner
        self.inner = learner.net
        self.visible = list(visible)

    def forward(self, x: Tensor, task: int) -> Tensor:
        return self.learner._forward_with(self.visible, x, task)


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> PackNet:
    """PackNet on a fresh network built from ``model``. Settings of another method's dataclass (a ``CLNPConfig``)
    are dropped: PackNet retrains at ``finetune_lr`` or ``lr``, at a constant rate, not as CLNP fine-tunes."""
    return PackNet(PlainNet(model, input_shape), config.training(), options_float(options, "prune", DEFAULT_PRUNE))


METHOD = Method(
    name="packnet", build=build, summary="weight-level magnitude pruning, per-task weight masks",
    options={"prune": Option("number", DEFAULT_PRUNE, low=0, high=1, low_open=True, high_open=True,
                             help="fraction of a task's free weights pruned")},
    # PackNet (Mallya & Lazebnik 2018): the paper's per-task pruning ratios 50 % and 75 %, and 90 %.
    tuning={"prune": (0.5, 0.75, 0.9)},
    reads=("finetune_epochs", "finetune_lr"),
)
