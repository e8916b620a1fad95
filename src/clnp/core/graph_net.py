"""CLNP on any traceable ``nn.Module``: residual additions, concatenation, global pooling, batch norm.

:class:`GraphNet` is the :class:`~clnp.core.network.CLNPNet` of a model that is not a plain stack of
layers (``CLNPNet(model, input_shape)`` builds one for any such module). It reads the model with
:func:`clnp.core.graph.trace_units` and keeps its computation, with three changes made once, at
construction, in the traced ``GraphModule``:

* every ``Linear``/``Conv2d`` and batch norm becomes its masked twin (same values);
* after every prunable layer, at the end of the single-use chain of element-wise modules, batch norm,
  pooling and dropout that follows it, a *tap*: where the layer's activity is read, the L1 gradient
  is added and, for a learned task, the units the task does not own are set to exactly zero;
* in-place operations become their out-of-place forms (a tap's output must not be written over).

**Units.** The channels that additions join are one *unit group* (owned, pruned, frozen and reused
together); the layers joined by groups form one *unit set*, which plays the part a prunable layer plays
in a stack: it has one owner vector (a buffer ``owner_<i>``), an L1 coefficient, a budget and a
threshold. A set of one layer is that layer, unit for unit. Every mask derives from the set owners:
a layer's own ``owner`` is its groups' owners, a weight ``(o, i)`` is cut where column ``i`` reads a
free group or one of a later task than unit ``o``'s (the network input is read by every task), batch
norm channels freeze with their groups.

**Silencing.** The search and fine-tuning silence pruned units by cutting their columns in every layer
and head that reads them (out of place, for the call), which is what freezing will do; zeroing their
activity instead would let a constant or a batch norm after the tap through.

**The search's cache.** A proposal on one unit set changes only the layers (and head) that read it, so the
search restarts a pass at the first of them (:meth:`GraphNet.search_point`), from the values live there, run
node by node with the same modules and functions as the compiled forward (:meth:`GraphNet.forward_from`).

**Batch norm** is :class:`GraphBatchNorm`: owned channels frozen, one batch norm per pass; per-task statistics
for reused units as an option (``task_batch_norm=True``).

**Growth** (:meth:`GraphNet.grow_`) adds units to a unit set where they come last in everything that reads it
(no concatenation after it puts other channels behind them); an old task computes with the widths it was
learned with, as in a stack.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .graph import (
    ELEMENTWISE_MODULES,
    NORM_MODULES,
    POOL_F,
    POOL_MODULES,
    UNARY_F,
    UNARY_M,
    UnitGraph,
    UnsupportedNodeError,
    trace_units,
)
from .layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from .modes import evaluation_mode
from .network import NONNEGATIVE, CLNPNet, check_task_widths
from .partition import FREE, cut_mask, live_units
from .sparsity import add_l1_gradient

INPUT = -2
"""Owner value of an input column that reads the network input: never cut (every task reads it)."""

_OUT_OF_PLACE_F = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                   operator.itruediv: operator.truediv}
_NONNEGATIVE_F = {F.relu, torch.relu, F.relu6, F.sigmoid, torch.sigmoid, F.softplus}


class _Context:
    """What one forward pass asks of the masked layers and taps (set by :class:`GraphNet`, reset after)."""

    __slots__ = ("frozen", "task", "widths", "cols", "taps", "l1", "live")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frozen = False
        self.task: int | None = None
        self.widths: list[int] | None = None
        self.cols: dict[int, Tensor] | None = None
        self.taps: list[Tensor | None] | None = None
        self.l1: list[Tensor | None] | None = None
        self.live: list[Tensor] | None = None


class _GraphLayer:
    """Mixin of the masked layers inside a graph: one input, the rest from the pass's context."""

    clnp_context: _Context
    clnp_index: int

    def _weight_and_bias(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The weight and bias of this pass: frozen rows from their snapshot for a learned task, narrowed to the
        widths it was learned with (a network grown since: the same shapes, the same bits), and the columns the
        search silences cut."""
        ctx = self.clnp_context
        units = None if ctx.widths is None else ctx.widths[self.clnp_index]
        w, b = self._narrowed(x, ctx.frozen, units)  # type: ignore[attr-defined]
        if ctx.cols is not None and (cols := ctx.cols.get(self.clnp_index)) is not None:
            w = w * cols.view(1, -1, *([1] * (w.dim() - 2))).to(w.dtype)
        return w, b


class GraphLinear(_GraphLayer, MaskedLinear):
    """A masked ``Linear`` inside a traced model."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.linear(x, *self._weight_and_bias(x))


class GraphConv2d(_GraphLayer, MaskedConv2d):
    """A masked ``Conv2d`` inside a traced model."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self._conv_forward(x, *self._weight_and_bias(x))


class Tap(nn.Module):
    """Where layer ``index``'s activity is read (see the module docstring); the identity otherwise."""

    def __init__(self, index: int, nonnegative: bool, context: _Context) -> None:
        super().__init__()
        self.index, self.nonnegative, self.clnp_context = index, nonnegative, context

    def forward(self, a: Tensor) -> Tensor:
        ctx = self.clnp_context
        if ctx.live is not None:  # a learned task: units it does not own are exactly zero (no inf can leak)
            live = ctx.live[self.index][:a.shape[1]].view(1, -1, *([1] * (a.dim() - 2)))
            a = torch.where(live, a, torch.zeros((), dtype=a.dtype, device=a.device))
        if ctx.l1 is not None and (weights := ctx.l1[self.index]) is not None:
            a = add_l1_gradient(a, weights, self.nonnegative)
        if ctx.taps is not None:
            with torch.no_grad():  # per input and unit: the mean absolute activity over positions
                v = a.detach()
                if v.dim() == 2:
                    ctx.taps[self.index] = v if self.nonnegative else v.abs()
                else:  # abs then mean: 1.2 ms against 1.6 for vector_norm(ord=1) on 128x20x32x32, one thread
                    ctx.taps[self.index] = (v if self.nonnegative else v.abs()).flatten(2).mean(2)
        return a


def _batch_var_mean(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per channel (dim 1): the biased variance and the mean over the batch and positions, differentiable.

    Two passes, each reducing the contiguous positions first: ``torch.var_mean`` over dims (0, 2, 3) of an NCHW
    tensor is 8x slower on CPU (13 ms against 1.7 ms for 128x20x32x32, one thread)."""
    if x.dim() == 2:
        mean = x.mean(0)
        return (x - mean).pow(2).mean(0), mean
    flat = x.flatten(2)
    mean = flat.mean(2).mean(0)
    n = flat.shape[0] * flat.shape[2]
    var = torch.linalg.vector_norm(flat - mean.view(1, -1, 1), 2, dim=2).pow(2).sum(0) / n
    return var, mean


class GraphBatchNorm(MaskedBatchNorm):
    """A masked batch norm whose frozen channels cost no second pass over the activations.

    Where some channels are frozen, :class:`MaskedBatchNorm` runs two batch norms over all channels in training
    mode (batch statistics, frozen statistics) and picks per channel with ``where``, forward and backward: in a
    residual network, with batch norm after every convolution, that was most of CLNP's step-time overhead
    (``bench/step_time.py``). Here:

    * training the task being learned: one batch norm in training mode, whose per-channel affine map is the
      parameters for free channels and, for frozen channels, the map that turns the batch-normalised value back
      into the frozen one (``xhat * sd_b * s + (mean_b * s + t)``, with ``s``, ``t`` the frozen scale and shift):
      equal to the frozen value up to rounding. Nothing the task trains reads a frozen channel's gradient (the
      weights into an owned unit are frozen, and it reads no free unit), so only the values matter;
    * evaluation, and a learned task's pass in any mode (``clnp_context.frozen``): every channel as
      ``x * scale + shift`` from its running or frozen statistics, the same operations in both modes, so an old
      task's outputs are the same bits in train and eval mode (no statistic moves then).

    With no frozen channel it is torch's own batch norm.
    """

    clnp_context: _Context | None = None
    per_task = False
    """Per-task statistics (:meth:`keep_task_statistics`): each task normalises every channel it reads, its own and
    the old ones it reuses, with statistics of its own data, frozen when it is learned (EideticNet's choice)."""
    task_mean: Tensor
    task_var: Tensor
    current_mean: Tensor
    current_var: Tensor

    def keep_task_statistics(self) -> None:
        """Switch to per-task statistics (before any task is learned)."""
        self.per_task = True
        self.register_buffer("task_mean", self.running_mean.new_zeros((0, self.num_features)))
        self.register_buffer("task_var", self.running_var.new_ones((0, self.num_features)))
        # Persistent: fine-tuning's revert and a checkpoint restore them with the weights they belong to.
        self.register_buffer("current_mean", self.running_mean.clone())
        self.register_buffer("current_var", self.running_var.clone())

    def _affine(self) -> tuple[Tensor, Tensor]:
        rows = self.train_rows
        if self.affine:
            return (torch.where(rows, self.weight, self.frozen_weight),
                    torch.where(rows, self.bias, self.frozen_bias))
        return torch.ones_like(self.frozen_mean), torch.zeros_like(self.frozen_mean)

    def _momentum(self) -> float:
        if self.momentum is None:
            self.num_batches_tracked.add_(1)
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def _per_task_forward(self, x: Tensor) -> Tensor:
        ctx = self.clnp_context
        task = None if ctx is None or not ctx.frozen else ctx.task
        w, b = self._affine()
        if task is not None and task < self.task_mean.shape[0]:  # a learned task, in any mode: its own statistics
            mean, var = self.task_mean[task], self.task_var[task]
            c = x.shape[1]  # a network grown since: the task's own channels
            w, b, mean, var = w[:c], b[:c], mean[:c], var[:c]
        elif self.training:  # the task being learned: batch statistics for every channel, its own running ones
            out = F.batch_norm(x, self.current_mean, self.current_var, w, b, True, self._momentum(), self.eps)
            with torch.no_grad():
                rows = self.train_rows
                self.running_mean.copy_(torch.where(rows, self.current_mean, self.frozen_mean))
                self.running_var.copy_(torch.where(rows, self.current_var, self.frozen_var))
            return out
        else:
            mean, var = self.current_mean, self.current_var
        scale = w * torch.rsqrt(var + self.eps)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return torch.addcmul((b - mean * scale).view(shape), x, scale.view(shape))

    @torch.no_grad()
    def reset_free_(self) -> None:
        super().reset_free_()
        if self.per_task:  # a new task starts from the owners' statistics for old channels
            self.current_mean.copy_(torch.where(self.train_rows, self.running_mean, self.frozen_mean))
            self.current_var.copy_(torch.where(self.train_rows, self.running_var, self.frozen_var))

    frozen_channels: Tensor

    @torch.no_grad()
    def refresh_(self, owner: Tensor) -> None:
        super().refresh_(owner)
        self.frozen_channels = torch.nonzero(~self.train_rows).flatten()  # read once, not at every step

    @torch.no_grad()
    def grow_(self, k: int) -> None:
        super().grow_(k)
        if self.per_task:
            rows = self.task_mean.shape[0]
            self.task_mean = torch.cat([self.task_mean, self.task_mean.new_zeros((rows, k))], 1)
            self.task_var = torch.cat([self.task_var, self.task_var.new_ones((rows, k))], 1)
            self.current_mean = torch.cat([self.current_mean, self.current_mean.new_zeros(k)])
            self.current_var = torch.cat([self.current_var, self.current_var.new_ones(k)])

    @torch.no_grad()
    def record_task_(self, task: int) -> None:
        """Freeze the statistics task ``task`` computed with (per-task statistics only)."""
        if self.per_task:
            self.task_mean = torch.cat([self.task_mean[:task], self.current_mean[None]])
            self.task_var = torch.cat([self.task_var[:task], self.current_var[None]])

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if self.per_task:
            return self._per_task_forward(x)
        if self._all_free:
            return super().forward(x)
        rows = self.train_rows
        w, b = self._affine()
        frozen_pass = self.clnp_context is not None and self.clnp_context.frozen
        if self.training and not frozen_pass:
            with torch.no_grad():  # the batch statistics of the frozen channels only
                idx = self.frozen_channels
                var, mean = _batch_var_mean(x.detach().index_select(1, idx))
                scale = w.detach()[idx] * torch.rsqrt(self.frozen_var[idx] + self.eps)
                shift = b.detach()[idx] - self.frozen_mean[idx] * scale
                frozen_gain = w.detach().index_copy(0, idx, torch.sqrt(var + self.eps) * scale)
                frozen_offset = b.detach().index_copy(0, idx, mean * scale + shift)
            gain = torch.where(rows, w, frozen_gain)
            offset = torch.where(rows, b, frozen_offset)
            running_mean, running_var = self.running_mean.clone(), self.running_var.clone()
            out = F.batch_norm(x, running_mean, running_var, gain, offset, True, self._momentum(), self.eps)
            with torch.no_grad():  # the free channels' running statistics, as torch's batch norm moved them
                self.running_mean.copy_(torch.where(rows, running_mean, self.frozen_mean))
                self.running_var.copy_(torch.where(rows, running_var, self.frozen_var))
            return out
        scale, shift = self.fixed_affine(w, b)
        c = x.shape[1]  # a network grown since: an old task's own channels (the same values, the same bits)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return torch.addcmul(shift[:c].view(shape), x, scale[:c].view(shape))

    def fixed_affine(self, w: Tensor | None = None, b: Tensor | None = None,
                     task: int | None = None) -> tuple[Tensor, Tensor]:
        """Per channel: the scale and shift of evaluation (running statistics, frozen ones for owned channels; with
        per-task statistics, learned task ``task``'s own)."""
        rows = self.train_rows
        if w is None or b is None:
            w, b = self._affine()
        if self.per_task and task is not None:
            mean, var = self.task_mean[task], self.task_var[task]
        else:
            mean = torch.where(rows, self.running_mean, self.frozen_mean)
            var = torch.where(rows, self.running_var, self.frozen_var)
        scale = w * torch.rsqrt(var + self.eps)
        return scale, b - mean * scale

def _twin(module: nn.Module, index: int, context: _Context, name: str) -> nn.Module:
    """The masked twin of a ``Linear``/``Conv2d`` (reading ``context``) or a batch norm, with the same values."""
    twin: nn.Module
    if isinstance(module, nn.Linear):
        twin = GraphLinear(module.in_features, module.out_features, bias=module.bias is not None)
    elif isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise UnsupportedNodeError(f"clnp supports Conv2d with padding_mode='zeros' only; {name} has "
                                       f"{module.padding_mode!r}", name)
        twin = GraphConv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                           padding=module.padding, dilation=module.dilation, groups=module.groups,
                           bias=module.bias is not None)
    else:
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        if not module.track_running_stats:
            raise ValueError(f"clnp needs batch norm with track_running_stats=True (old units freeze their running "
                             f"statistics); {name} has track_running_stats=False")
        twin = GraphBatchNorm(module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine)
    first = next(iter(module.parameters()), None)
    if first is not None:
        twin = twin.to(device=first.device, dtype=first.dtype)
    twin.load_state_dict(module.state_dict(), strict=False)
    if isinstance(twin, GraphBatchNorm):
        twin.clnp_context = context
    if isinstance(twin, _GraphLayer):
        twin.clnp_context, twin.clnp_index = context, index
        twin._non_persistent_buffers_set.add("owner")  # derived from the network's unit-set owners
    return twin


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class GraphNet(CLNPNet):
    """CLNP's network on a traced model (see the module docstring): unit sets in place of layers.

    Args:
        model: any ``nn.Module`` ``torch.fx`` can trace that maps ``[N, *input_shape]`` to flat features
            ``[N, F]`` (the heads are clnp's). Its values are copied into masked twins; it is not changed.
        input_shape: shape of one input example (without the batch dimension).
        task_batch_norm: per-task batch-norm statistics for reused units (:meth:`GraphBatchNorm.keep_task_statistics`);
            off by default, the owners' frozen statistics (``bench/task_batch_norm.py``).

    Raises:
        UnsupportedNodeError: a node clnp cannot follow (the message names it and its operation).
    """

    _output: Tensor
    """Per feature of the model's output: its flat unit index, or -1 for the network input (a buffer)."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], task_batch_norm: bool = False) -> None:
        nn.Module.__init__(self)
        self.input_shape = tuple(int(s) for s in input_shape)
        first = next((p for p in model.parameters() if p.is_floating_point()), None)
        dtype = first.dtype if first is not None else torch.get_default_dtype()
        device = first.device if first is not None else torch.device("cpu")
        graph = trace_units(model, torch.zeros(1, *self.input_shape, dtype=dtype, device=device))
        if not graph.layers:
            raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer: nothing to prune")
        for bn, groups in graph.norms.items():
            if any(g is None for g in groups):
                raise UnsupportedNodeError(f"batch norm {bn!r} normalises the network input: its statistics would "
                                           "belong to no task; normalise the data instead", bn)
        if any(g is None for g in graph.output):
            raise UnsupportedNodeError("the model's output holds features of the network input itself: a head "
                                       "must read units")
        gm = graph.graph_module
        self._context = _Context()
        self.layer_modules = list(graph.layers)
        """Qualified names of the prunable layers in the model, in execution order."""
        for j, name in enumerate(self.layer_modules):
            _set_submodule(gm, name, _twin(gm.get_submodule(name), j, self._context, name))
        for name in graph.norms:
            norm = _twin(gm.get_submodule(name), -1, self._context, name)
            if task_batch_norm:
                norm.keep_task_statistics()  # type: ignore[operator]
            _set_submodule(gm, name, norm)
        self._sets = self._unit_sets(graph)
        self._index_buffers(graph)
        self._insert_taps(gm, graph)
        self.trunk = gm
        self._initial_widths = [len(gids) for _, gids in self._sets]
        self._initial_layer_widths = [graph.layers[name].n_units for name in self.layer_modules]
        self._search_points(gm)
        for s, (_, gids) in enumerate(self._sets):
            self.register_buffer(f"owner_{s}", torch.full((len(gids),), FREE, dtype=torch.long, device=device))
        self.heads = nn.ModuleList()  # type: ignore[assignment]
        self.feature_dim = len(graph.output)
        self.register_buffer("task_widths", torch.zeros((0, len(self._sets)), dtype=torch.long))
        self.register_load_state_dict_pre_hook(self._fit_loaded_shapes)
        self.register_load_state_dict_post_hook(self._refresh_after_load)
        self.register_state_dict_pre_hook(self._consolidate_before_save)
        self.refresh_masks()

    # ------------------------------------------------------------------------- construction
    def _unit_sets(self, graph: UnitGraph) -> list[tuple[list[int], list[int]]]:
        """Unit sets: (member layer indices, group ids in unit order), ordered by their first layer."""
        order = {name: j for j, name in enumerate(self.layer_modules)}
        parent = list(range(len(order)))

        def find(j: int) -> int:
            while parent[j] != j:
                parent[j] = parent[parent[j]]
                j = parent[j]
            return j

        for group in graph.groups:
            js = sorted({order[layer] for layer, _ in group})
            for j in js[1:]:
                parent[find(j)] = find(js[0])
        members: dict[int, list[int]] = {}
        for j in range(len(order)):
            members.setdefault(find(j), []).append(j)
        groups_of: dict[int, list[tuple[tuple[int, int], int]]] = {}
        for gid, group in enumerate(graph.groups):
            key = min((order[layer], ch) for layer, ch in group)
            groups_of.setdefault(find(key[0]), []).append((key, gid))
        sets = []
        for root in sorted(members, key=lambda r: min(members[r])):
            sets.append((members[root], [gid for _, gid in sorted(groups_of[root])]))
        return sets

    def _index_buffers(self, graph: UnitGraph) -> None:
        """Flat unit index (sets in order, units in order) of every layer's units, columns, norms and the output."""
        flat: dict[int, int] = {}
        self._offsets = []
        for _, gids in self._sets:
            self._offsets.append(len(flat))
            for gid in gids:
                flat[gid] = len(flat)
        self._set_of_layer = {j: s for s, (js, _) in enumerate(self._sets) for j in js}

        def index(groups: Sequence[int | None]) -> Tensor:
            return torch.tensor([-1 if g is None else flat[g] for g in groups], dtype=torch.long)

        for j, name in enumerate(self.layer_modules):
            self.register_buffer(f"_units_{j}", index(graph.group_of[name].tolist()), persistent=False)
            self.register_buffer(f"_columns_{j}", index(graph.inputs[name]), persistent=False)
        self.norm_modules = list(graph.norms)
        for k, name in enumerate(self.norm_modules):
            self.register_buffer(f"_norm_{k}", index(graph.norms[name]), persistent=False)
        self.register_buffer("_output", index(graph.output), persistent=False)

    def _insert_taps(self, gm: fx.GraphModule, graph: UnitGraph) -> None:
        """Out-of-place forms of in-place operations, then one :class:`Tap` after each prunable layer."""
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and node.target in _OUT_OF_PLACE_F:
                node.target = _OUT_OF_PLACE_F[node.target]
            elif node.op == "call_method" and isinstance(node.target, str) and node.target.endswith("_") \
                    and node.target not in ("size",):
                node.target = node.target[:-1]
            if node.op == "call_function" and node.kwargs.get("inplace"):
                node.kwargs = {**node.kwargs, "inplace": False}
            if node.op == "call_module":
                module = gm.get_submodule(str(node.target))
                if getattr(module, "inplace", False):
                    fresh = copy.copy(module)
                    fresh.inplace = False  # type: ignore[assignment]
                    _set_submodule(gm, str(node.target), fresh)
        nodes = {str(n.target): n for n in gm.graph.nodes if n.op == "call_module"}
        for j, name in enumerate(self.layer_modules):
            end, nonnegative = nodes[name], False
            while len(end.users) == 1:
                user = next(iter(end.users))
                if len(user.all_input_nodes) != 1 or not self._follows(gm, user):
                    break
                end = user
                if not self._keeps_sign(gm, user):
                    nonnegative = self._nonnegative(gm, user)
            tap_name = f"clnp_tap_{j}"
            gm.add_submodule(tap_name, Tap(j, nonnegative, self._context))
            with gm.graph.inserting_after(end):
                tap = gm.graph.call_module(tap_name, (end,))
            end.replace_all_uses_with(tap, delete_user_cb=lambda user, tap=tap: user is not tap)
        gm.graph.lint()
        gm.recompile()

    def _search_points(self, gm: fx.GraphModule) -> None:
        """Where the search restarts a pass after changing one unit set (its first consumer: a layer that reads it,
        or the head), and which values are live there (:meth:`forward_from`)."""
        self._order = list(gm.graph.nodes)
        position = {node: i for i, node in enumerate(self._order)}
        calls = {str(n.target): position[n] for n in self._order if n.op == "call_module"}
        head = len(self._order)
        first = []
        for s, (_, gids) in enumerate(self._sets):
            lo, hi = self._offsets[s], self._offsets[s] + len(gids)
            readers = [calls[name] for j, name in enumerate(self.layer_modules)
                       if bool(((self._buffer(f"_columns_{j}") >= lo) & (self._buffer(f"_columns_{j}") < hi)).any())]
            first.append(min(readers, default=head))
        self._points = sorted({0, head, *first})
        self._point_of_set = [self._points.index(p) for p in first]
        last_use = {node: max((position[u] for u in node.users), default=-1) for node in self._order}
        self._live = [[n for n in self._order if position[n] < p and last_use[n] >= p] for p in self._points]

    def search_point(self, layer: int, cut: bool) -> int:
        """A unit set's silenced units and cut old units both change the weights of the layers (and head) that
        read it: the pass restarts at the first of them."""
        return self._point_of_set[layer]

    def stays_silent(self, layer: int, changed: set[int]) -> bool:
        """Only while nothing changed: unit sets read each other both ways (a residual stream feeds a block whose
        output joins it), so pruning any active unit may wake a silent one, in its own set too."""
        return not changed

    @property
    def n_search_points(self) -> int:
        return len(self._points)

    def _execute(self, start: int, state: Tensor | tuple, inputs: list | None) -> Tensor:
        """The traced trunk from restart point ``start`` (0: ``state`` is the input; else the values live there, as
        recorded), node by node with the same modules and functions as the compiled forward (the same bits);
        ``inputs`` collects the live values at every point from ``start`` on, then ``(features,)``."""
        env: dict[fx.Node, Any] = {} if start == 0 else dict(zip(self._live[start], state, strict=True))
        point, output = start, None
        for index in range(self._points[start], len(self._order)):
            while inputs is not None and point < len(self._points) - 1 and self._points[point] == index:
                inputs.append(tuple(env[n] for n in self._live[point]))
                point += 1
            node = self._order[index]
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "placeholder":
                env[node] = state
            elif node.op == "call_module":
                env[node] = self.trunk.get_submodule(str(node.target))(*args, **kwargs)
            elif node.op == "call_function":
                env[node] = node.target(*args, **kwargs)  # type: ignore[operator]
            elif node.op == "call_method":
                env[node] = getattr(args[0], str(node.target))(*args[1:], **kwargs)
            elif node.op == "output":
                output = args[0]
        if inputs is not None:
            inputs.append((output,))
        return output  # type: ignore[return-value]

    @staticmethod
    def _follows(gm: fx.GraphModule, node: fx.Node) -> bool:
        """Whether a tap may move past ``node``: one channel-preserving operation of one tensor."""
        if node.op == "call_module":
            return isinstance(gm.get_submodule(str(node.target)), (*ELEMENTWISE_MODULES, *NORM_MODULES,
                                                                   *POOL_MODULES, MaskedBatchNorm))
        if node.op == "call_function":
            return node.target in UNARY_F or node.target in POOL_F
        return node.op == "call_method" and node.target in UNARY_M

    @staticmethod
    def _keeps_sign(gm: fx.GraphModule, node: fx.Node) -> bool:
        """Pooling and dropout keep a non-negative activity non-negative."""
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            return isinstance(module, (*POOL_MODULES, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity))
        return node.target in POOL_F or node.target in (F.dropout, F.dropout1d, F.dropout2d)

    @staticmethod
    def _nonnegative(gm: fx.GraphModule, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(gm.get_submodule(str(node.target)), NONNEGATIVE)
        return node.target in _NONNEGATIVE_F or node.target in ("relu", "sigmoid")

    # ----------------------------------------------------------------------------- structure
    def _layer(self, j: int) -> GraphLinear | GraphConv2d:
        return self.trunk.get_submodule(self.layer_modules[j])  # type: ignore[return-value]

    def _layers(self) -> list[GraphLinear | GraphConv2d]:  # type: ignore[override]
        return [self._layer(j) for j in range(len(self.layer_modules))]

    def _norms(self) -> list[GraphBatchNorm]:  # type: ignore[override]
        return [self.trunk.get_submodule(n) for n in self.norm_modules]  # type: ignore[misc]

    def _buffer(self, name: str) -> Tensor:
        return getattr(self, name)

    @property
    def n_layers(self) -> int:
        return len(self._sets)

    @property
    def owners(self) -> list[Tensor]:
        return [getattr(self, f"owner_{s}") for s in range(len(self._sets))]

    @property
    def widths(self) -> list[int]:
        return [o.numel() for o in self.owners]

    @property
    def layer_names(self) -> list[str]:
        """Readable names of the unit sets: ``'3:Conv2d(layer1.0.conv2+2)'`` for a set of three joined layers."""
        names = []
        for s, (js, _) in enumerate(self._sets):
            first = self._layer(js[0])
            kind = "Conv2d" if isinstance(first, MaskedConv2d) else "Linear"
            more = f"+{len(js) - 1}" if len(js) > 1 else ""
            names.append(f"{s}:{kind}({self.layer_modules[js[0]]}{more}->{self.widths[s]})")
        return names

    @property
    def device(self) -> torch.device:
        return self._layer(0).weight.device

    def masked_layers(self) -> list[nn.Module]:
        return [*self._layers(), *self._norms(), *self.heads]

    def add_head(self, n_classes: int) -> int:
        if n_classes < 2:
            raise ValueError(f"a task needs at least 2 classes, got {n_classes}")
        weight = self._layer(0).weight
        head = MaskedLinear(self.feature_dim, n_classes).to(device=weight.device, dtype=weight.dtype)
        self.heads.append(head)
        head.refresh_(self._column_owners(self._output))
        self._refresh_learned()
        return len(self.heads) - 1

    def _layer_widths(self, task: int) -> list[int] | None:
        """Each layer's width when learned task ``task`` was learned, or None where nothing has grown since."""
        row = self._widths[task]
        if row == self.widths:
            return None
        return [w0 + row[self._set_of_layer[j]] - self._initial_widths[self._set_of_layer[j]]
                for j, w0 in enumerate(self._initial_layer_widths)]

    def _readers_of(self, s: int) -> list[tuple[str, Tensor, int]]:
        """Every map that reads unit set ``s`` (layer inputs, batch norms, the output): (key, flat indices, factor),
        after checking that ``s``'s units come last there, each over ``factor`` consecutive columns, so that new
        units append (``ValueError`` otherwise)."""
        lo, n = self._offsets[s], self.widths[s]
        expected = torch.arange(lo, lo + n, device=self._output.device)
        maps = [f"_columns_{j}" for j in range(len(self.layer_modules))]
        maps += [f"_norm_{k}" for k in range(len(self.norm_modules))] + ["_output"]
        out = []
        for key in maps:
            index = self._buffer(key)
            reads = (index >= lo) & (index < lo + n)
            if not reads.any():
                continue
            factor = int(reads.sum()) // n
            tail = index[index.numel() - int(reads.sum()):]
            if factor < 1 or not torch.equal(tail, expected.repeat_interleave(factor)):
                kind, _, number = key.strip("_").rpartition("_")
                reader = ("the heads" if key == "_output" else f"layer {self.layer_modules[int(number)]}"
                          if kind == "columns" else f"batch norm {self.norm_modules[int(number)]}")
                raise ValueError(f"unit set {self.layer_names[s]} cannot grow: {reader} reads other channels after "
                                 "its units (a concatenation after it), so new units would not come last")
            out.append((key, index, factor))
        return out

    @torch.no_grad()
    def grow_(self, layer: int, k: int) -> None:
        """Add ``k`` free units to unit set ``layer``: a new channel in each of its layers (and batch norms), new
        columns in every layer and head that reads it. An old task computes with the widths it was learned with,
        so its outputs stay bit-identical. Refused (``ValueError``, nothing changed) where the new units would
        not come last in what reads them, or the model no longer runs (a ``view`` of a fixed size)."""
        if not 0 <= layer < len(self._sets):
            raise IndexError(f"no unit set {layer}; this network has {len(self._sets)}")
        if k < 1:
            raise ValueError(f"grow by at least one unit, got {k}")
        readers = self._readers_of(layer)
        trial = copy.deepcopy(self)
        trial._grow_in_place(layer, k, trial._readers_of(layer))
        try:
            with evaluation_mode(trial):
                trial.features(torch.zeros(2, *self.input_shape, dtype=self._layer(0).weight.dtype,
                                           device=self.device))
        except RuntimeError as err:
            cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"unit set {self.layer_names[layer]} cannot grow: the model no longer runs with "
                             f"{k} more units ({cause})") from None
        self._grow_in_place(layer, k, readers)

    def _grow_in_place(self, s: int, k: int, readers: list[tuple[str, Tensor, int]]) -> None:
        self.consolidate_()
        boundary = self._offsets[s] + self.widths[s]
        new = torch.arange(boundary, boundary + k, device=self._output.device)

        def shifted(index: Tensor) -> Tensor:
            return torch.where(index >= boundary, index + k, index)

        factors = {key: factor for key, _, factor in readers}
        members = set(self._sets[s][0])
        for j, module in enumerate(self._layers()):
            units = shifted(self._buffer(f"_units_{j}"))
            if j in members:
                module.grow_units_(k)
                units = torch.cat([units, new])
            columns = shifted(self._buffer(f"_columns_{j}"))
            if f"_columns_{j}" in factors:
                module.grow_inputs_(k * factors[f"_columns_{j}"])
                columns = torch.cat([columns, new.repeat_interleave(factors[f"_columns_{j}"])])
            setattr(self, f"_units_{j}", units)
            setattr(self, f"_columns_{j}", columns)
        for i, bn in enumerate(self._norms()):
            index = shifted(self._buffer(f"_norm_{i}"))
            if f"_norm_{i}" in factors:
                bn.grow_(k)
                index = torch.cat([index, new])
            setattr(self, f"_norm_{i}", index)
        output = shifted(self._output)
        if "_output" in factors:
            for head in self.heads:
                head.grow_inputs_(k * factors["_output"])
            self.feature_dim += k * factors["_output"]
            output = torch.cat([output, new.repeat_interleave(factors["_output"])])
        self._output = output
        owner = getattr(self, f"owner_{s}")
        setattr(self, f"owner_{s}", torch.cat([owner, owner.new_full((k,), FREE)]))
        js, gids = self._sets[s]
        self._sets[s] = (js, [*gids, *([-1] * k)])
        self._offsets = [o + k if t > s else o for t, o in enumerate(self._offsets)]
        self._search_points(self.trunk)
        self.refresh_masks(consolidate=False)

    def nonnegative_activity(self) -> list[bool]:
        """Every unit set's activity is a sum of absolute values (see :meth:`forward_with_activity`)."""
        return [True] * len(self._sets)

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        return [p for p in self.trunk.parameters() if p.requires_grad] + list(self.heads[task].parameters())

    def _fit_loaded_shapes(self, module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
        for s in range(len(self._sets)):  # a grown network's state: grow the same way first
            owner = state_dict.get(f"{prefix}owner_{s}")
            if isinstance(owner, Tensor) and owner.dim() == 1 and owner.numel() > self.widths[s]:
                self.grow_(s, owner.numel() - self.widths[s])
        for name, bn in zip(self.norm_modules, self._norms(), strict=True):
            if bn.per_task:
                for part in ("task_mean", "task_var"):
                    loaded = state_dict.get(f"{prefix}trunk.{name}.{part}")
                    if isinstance(loaded, Tensor) and loaded.dim() == 2:
                        setattr(bn, part, torch.zeros_like(loaded, device=bn.running_mean.device))
        key = f"{prefix}task_widths"
        if key in state_dict:
            owners = [state_dict.get(f"{prefix}owner_{s}") for s in range(len(self._sets))]
            if all(isinstance(o, Tensor) for o in owners):
                check_task_widths(state_dict[key], owners)  # type: ignore[arg-type]
            self.task_widths = torch.zeros_like(state_dict[key], device=self.task_widths.device)

    # ------------------------------------------------------------------------------- masks
    def _flat_owner(self) -> Tensor:
        return torch.cat(self.owners)

    def _column_owners(self, columns: Tensor, flat: Tensor | None = None) -> Tensor:
        flat = self._flat_owner() if flat is None else flat
        return torch.where(columns >= 0, flat[columns.clamp(min=0)], torch.full_like(columns, INPUT))

    @torch.no_grad()
    def refresh_masks(self, consolidate: bool = True) -> None:
        if consolidate:
            self.consolidate_()
        flat = self._flat_owner()
        for j, layer in enumerate(self._layers()):
            layer.owner = flat[self._buffer(f"_units_{j}")].clone()
            layer.refresh_(self._column_owners(self._buffer(f"_columns_{j}"), flat))
        for k, bn in enumerate(self._norms()):
            bn.refresh_(flat[self._buffer(f"_norm_{k}")])
        head_in = self._column_owners(self._output, flat)
        for head in self.heads:
            head.refresh_(head_in)
        self._refresh_learned()

    @torch.no_grad()
    def restore_frozen_(self) -> None:
        for layer in self._layers():
            layer.restore_frozen_()
        for head in self.heads:
            head.restore_frozen_()

    # ------------------------------------------------------------------------------- forward
    def _flat(self, per_set: Sequence[Tensor]) -> Tensor:
        return torch.cat([t.to(self.device) for t in per_set])

    def _run(self, x: Tensor | tuple, task: int | None, keep: Sequence[Tensor | None] | None,
             taps: list[Tensor] | None, l1_weights: Sequence[Tensor | None] | None = None, start: int = 0,
             inputs: list | None = None) -> Tensor:
        ctx = self._context
        frozen = task is not None and self.is_learned(task)
        ctx.frozen, ctx.task = frozen, task
        if frozen:
            ctx.widths = self._layer_widths(task)  # type: ignore[arg-type]
            live = live_units(self._flat_owner(), task)  # type: ignore[arg-type]
            ctx.live = [live[self._buffer(f"_units_{j}")] for j in range(len(self.layer_modules))]
        if keep is not None and any(k is not None for k in keep):
            kept = self._flat([torch.ones(w, dtype=torch.bool) if k is None else k.bool()
                               for k, w in zip(keep, self.widths, strict=True)])
            ctx.cols = {j: self._kept_columns(self._buffer(f"_columns_{j}"), kept)
                        for j in range(len(self.layer_modules))}
        if l1_weights is not None:
            ctx.l1 = []
            for j in range(len(self.layer_modules)):
                s = self._set_of_layer[j]
                w = l1_weights[s]
                ctx.l1.append(None if w is None else
                              w.to(self.device)[self._buffer(f"_units_{j}") - self._offsets[s]])
        if taps is not None:
            ctx.taps = [None] * len(self.layer_modules)
        try:
            if start == len(self._points) - 1:  # the head alone: the features as recorded
                out = x[0]  # type: ignore[index]
                if inputs is not None:
                    inputs.append(x)
            elif start or inputs is not None:
                out = self._execute(start, x, inputs)
            else:
                out = self.trunk(x)
        finally:
            read = ctx.taps
            ctx.reset()
        if taps is not None:
            assert read is not None and isinstance(x, Tensor)
            taps.extend(self._combine(read, x.shape[0]))
        return out

    @staticmethod
    def _kept_columns(columns: Tensor, kept: Tensor) -> Tensor:
        return torch.where(columns >= 0, kept[columns.clamp(min=0)], torch.ones_like(columns, dtype=torch.bool))

    @torch.no_grad()
    def _combine(self, read: Sequence[Tensor | None], n: int) -> list[Tensor]:
        """Per unit set ``[N, units]``: the summed mean absolute activity of its layers' units."""
        out = []
        for s, (js, _) in enumerate(self._sets):
            total: Tensor | None = None
            for j in js:
                v = read[j]
                assert v is not None
                if total is None:
                    total = v.new_zeros((n, self.widths[s]))
                total.index_add_(1, self._buffer(f"_units_{j}") - self._offsets[s], v.to(total.dtype))
            assert total is not None
            out.append(total)
        return out

    def _head(self, task: int, features: Tensor, frozen: bool, keep: Sequence[Tensor | None] | None) -> Tensor:
        head = self.heads[task]
        if keep is None or all(k is None for k in keep):
            return head(features, frozen)
        kept = self._flat([torch.ones(w, dtype=torch.bool) if k is None else k.bool()
                           for k, w in zip(keep, self.widths, strict=True)])
        w = head.effective_weight(frozen) * self._kept_columns(self._output, kept).to(features.dtype)
        return F.linear(features, w, head.effective_bias(frozen))

    def _check_features(self, features: Tensor) -> Tensor:
        return features

    def check_input(self, x: Tensor, task: int) -> Tensor:
        if not 0 <= task < len(self.heads):
            raise IndexError(f"unknown task id {task}: this network has {len(self.heads)} task heads")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"inputs of shape {tuple(x.shape)} do not fit this network: expected [N, "
                             f"{', '.join(str(s) for s in self.input_shape)}]")
        if not torch.is_floating_point(x):
            raise ValueError(f"inputs must be floating point, got {x.dtype} (e.g. x.float() / 255 for 8-bit images)")
        dtype = self._layer(0).weight.dtype
        return x if x.dtype == dtype else x.to(dtype)

    def features(self, x: Tensor, keep: Sequence[Tensor | None] | None = None) -> Tensor:
        return self._run(x, None, keep, None)

    def forward(self, x: Tensor, task: int, keep: Sequence[Tensor | None] | None = None) -> Tensor:
        x = self.check_input(x, task)
        return self._head(task, self._run(x, task, keep, None), self.is_learned(task), keep)

    def forward_from(self, x: Tensor | tuple, task: int, keep: Sequence[Tensor | None] | None, start: int,
                     inputs: list | None = None) -> Tensor:
        """Logits of task ``task`` (not yet learned) from restart point ``start`` (:meth:`search_point`): ``x`` is
        the input for 0, else the values live there as ``inputs`` recorded them."""
        if self.is_learned(task):
            raise ValueError(f"forward_from is for the task being learned; task {task} is learned")
        return self._head(task, self._run(x, task, keep, None, start=start, inputs=inputs), False, keep)

    def forward_with_activity(
        self, x: Tensor, task: int, keep: Sequence[Tensor | None] | None = None,
        l1_weights: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Logits and, per unit set, ``[N, units]``: each unit's mean absolute activity (over positions),
        summed over the set's layers; ``l1_weights`` adds the L1 gradient at every layer's tap."""
        x = self.check_input(x, task)
        taps: list[Tensor] = []
        features = self._run(x, task, keep, taps, l1_weights)
        return self._head(task, features, self.is_learned(task), keep), taps

    # --------------------------------------------------------------------------- task life cycle
    @torch.no_grad()
    def assign_units_(self, task: int, keep: Sequence[Tensor]) -> None:
        self.consolidate_()
        for owner, k in zip(self.owners, keep, strict=True):
            owner[(owner == FREE) & k.to(owner.device)] = task
        self.heads[task].owner.fill_(task)
        row = torch.tensor([self.widths], dtype=torch.long, device=self.task_widths.device)
        self.task_widths = torch.cat([self.task_widths[:task], row])
        for bn in self._norms():
            bn.record_task_(task)  # type: ignore[operator]
        self.refresh_masks()

    def _refresh_learned(self) -> None:
        super()._refresh_learned()
        n_learned = self.task_widths.shape[0]
        for bn in self._norms():
            if isinstance(bn, GraphBatchNorm) and bn.per_task and bn.task_mean.shape[0] > n_learned:  # rolled back
                bn.task_mean, bn.task_var = bn.task_mean[:n_learned].clone(), bn.task_var[:n_learned].clone()

    @torch.no_grad()
    def silence_free_units_(self, trained: Sequence[Tensor]) -> None:
        chosen = self._flat(trained).bool()
        for j, layer in enumerate(self._layers()):
            rows = (layer.owner == FREE) & ~chosen[self._buffer(f"_units_{j}")]
            layer.weight[rows] = 0.0
            if layer.bias is not None:
                layer.bias[rows] = 0.0

    @torch.no_grad()
    def units_used_by(self, task: int) -> list[Tensor]:
        if not 0 <= task < self.n_tasks:
            raise IndexError(f"unknown task id {task}: this network has {self.n_tasks} task heads")
        flat = self._flat_owner()
        alive = live_units(flat, task) if self.is_learned(task) else torch.ones_like(flat, dtype=torch.bool)
        needed = torch.zeros_like(flat, dtype=torch.bool)

        def mark(weight: Tensor, columns: Tensor) -> None:
            w = weight.abs()
            per_column = (w.flatten(2).sum(2) if w.dim() > 2 else w).sum(0) > 0
            needed[columns[per_column & (columns >= 0)]] = True

        mark(self.heads[task].effective_weight().detach(), self._output)
        layers = self._layers()
        while True:
            before = needed.clone()
            for j in reversed(range(len(layers))):
                rows = (needed & alive)[self._buffer(f"_units_{j}")]
                if rows.any():
                    mark(layers[j].effective_weight().detach()[rows], self._buffer(f"_columns_{j}"))
            if torch.equal(before, needed):
                break
        used = needed & alive
        return list(used.split(self.widths))

    @torch.no_grad()
    def outgoing_weight(self, layer: int, task: int, keep: Sequence[Tensor] | None = None) -> Tensor:
        total = torch.zeros(sum(self.widths), device=self.device)
        kept = None if keep is None else self._flat(keep).bool()
        for j, module in enumerate(self._layers()):
            rows = module.train_rows if kept is None else module.train_rows & kept[self._buffer(f"_units_{j}")]
            self._add_columns(total, module.weight.detach()[rows], self._buffer(f"_columns_{j}"))
        self._add_columns(total, self.heads[task].weight.detach(), self._output)
        start = self._offsets[layer]
        return total[start:start + self.widths[layer]]

    @staticmethod
    def _add_columns(total: Tensor, weight: Tensor, columns: Tensor) -> None:
        w = weight.abs()
        per_column = (w.flatten(2).sum(2) if w.dim() > 2 else w).sum(0).to(total.dtype)
        ok = columns >= 0
        total.index_add_(0, columns[ok], per_column[ok])

    def reuse_cut_pairs(self, task: int, cut: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        cut_flat = self._flat(cut).bool()
        pairs = []
        targets = [(m.weight, m.train_rows, self._buffer(f"_columns_{j}")) for j, m in enumerate(self._layers())]
        head = self.heads[task]
        targets.append((head.weight, torch.ones(head.n_units, dtype=torch.bool, device=self.device), self._output))
        for weight, rows, columns in targets:
            none = torch.zeros_like(columns, dtype=torch.bool)
            cols = torch.where(columns >= 0, cut_flat[columns.clamp(min=0)], none)
            if not (cols.any() and rows.any()):
                continue
            mask = rows[:, None] & cols[None, :]
            pairs.append((weight, mask.view(*mask.shape, *([1] * (weight.dim() - 2))).expand_as(weight)))
        return pairs

    def weight_cut_problems(self, tensors: dict[str, Tensor]) -> list[str]:
        """Names of the weights in ``tensors`` (a state dict of this network) that are non-zero where its owners
        say they are cut."""
        owners = [tensors[f"owner_{s}"] for s in range(len(self._sets))]
        flat = torch.cat(owners)
        out: list[str] = []
        for j, name in enumerate(self.layer_modules):
            units = self._buffer(f"_units_{j}").cpu()
            self._check_cut(out, tensors, f"trunk.{name}.weight", flat, self._buffer(f"_columns_{j}").cpu(),
                            flat[units])
        for k in range(len(self.heads)):
            key = f"heads.{k}.weight"
            self._check_cut(out, tensors, key, flat, self._output.cpu(), tensors[f"heads.{k}.owner"])
        return out

    def owned_rows(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per trunk tensor of ``tensors`` (a state dict of this network) with one row per unit or channel: the rows
        of owned units, by its owner vectors."""
        flat = torch.cat([tensors[f"owner_{s}"] for s in range(len(self._sets))])
        out = {}
        for j, name in enumerate(self.layer_modules):
            for part in ("weight", "bias"):
                out[f"trunk.{name}.{part}"] = flat[self._buffer(f"_units_{j}").cpu()] != FREE
        for k, name in enumerate(self.norm_modules):
            for part in ("weight", "bias", "running_mean", "running_var"):
                out[f"trunk.{name}.{part}"] = flat[self._buffer(f"_norm_{k}").cpu()] != FREE
        return {key: rows for key, rows in out.items() if key in tensors}

    def _check_cut(self, out: list[str], tensors: dict[str, Tensor], key: str, flat: Tensor, columns: Tensor,
                   owner_out: Tensor) -> None:
        weight = tensors[key]
        cut = cut_mask(self._column_owners(columns, flat), owner_out)
        if weight.dim() == 4:
            cut = cut[:, :, None, None].expand_as(weight)
        if bool(torch.any(weight[cut] != 0)):
            out.append(key)


__all__ = ["GraphBatchNorm", "GraphConv2d", "GraphLinear", "GraphNet", "Tap"]
