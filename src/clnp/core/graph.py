"""Read any traceable ``nn.Module`` as CLNP units: prunable layers, unit groups and input maps.

CLNP's units are the output features of ``Linear`` and the output channels of ``Conv2d``. In a
network that is not a plain stack, two things decide how they can be partitioned among tasks
without any old output changing:

* **Unit groups.** An addition (a residual ``x + y``) joins channel ``c`` of both operands into
  one tensor channel: no weight between them can be cut, so the channels that additions join are
  one *group*, owned, frozen and pruned together. Groups are a union-find over ``(layer, channel)``.
* **Input maps.** For every input column of a ``Linear`` (input channel of a ``Conv2d``) the
  group it reads, or ``None`` for the network input, following concatenation (channel offsets),
  ``flatten``/``view`` (channel-major: a channel becomes its spatial positions' columns), pooling,
  batch norm, activations and dropout. Cutting a task's weights from the columns of free or later
  groups is what keeps its outputs exact; silencing a pruned group is cutting its columns.

:func:`trace_units` reads these with :mod:`torch.fx` (symbolic trace, then
:class:`~torch.fx.passes.shape_prop.ShapeProp` on an example input for the shapes), and refuses
with :class:`UnsupportedNodeError`, naming the node, anything it cannot follow: a wrong partition
would break zero forgetting silently, a refusal does not. Why fx and not Torch-Pruning's DepGraph:
we need exact channel coupling for add/cat/flatten and a hard refusal of everything else, and fx's
node graph with shapes gives both in a few hundred lines with no dependency; DepGraph is built for
structural pruning, where an op it does not know is a best-effort guess rather than an error.

How :class:`clnp.core.graph_net.GraphNet` uses it: one owner per *group* (a layer's owner vector is
``owner[group_of[layer]]``);
a unit of task ``t`` keeps weight ``(o, i)`` only where ``weight_inputs(layer)[o, i]`` is the network
input or a group owned by a task ``<= t`` (heads likewise through :attr:`UnitGraph.output`); a pruned
group is silenced by cutting its columns everywhere (not by zeroing its activation: a constant added
after it, ``x + 1.0``, is followed and would survive); the batch norms over a group's channels
(:attr:`UnitGraph.norms`) freeze with the group.

The example input runs once through the model for the shapes, in eval mode and without gradients
(running statistics do not move), with a batch of 1 repeated to 2 so that the batch dimension is
told apart from the others.

This module imports nothing from clnp.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

FOLLOWS = (
    "clnp follows Linear/Conv2d, additions of activations, torch.cat along channels, flatten/view/reshape, "
    "pooling, mean over spatial dims, batch norm, element-wise activations, dropout and scalar arithmetic"
)

Unit = tuple[str, int]
"""A unit: (prunable layer's qualified name, output channel or feature)."""

Entry = Unit | None
"""What one tensor channel carries: a representative unit of its group, or ``None`` for the network input."""


class UnsupportedNodeError(ValueError):
    """A node (or a whole model) clnp cannot follow; the message is one line and names the node."""

    def __init__(self, message: str, node: str | None = None):
        super().__init__(message)
        self.node = node


@dataclass(frozen=True)
class Layer:
    """A prunable layer of the traced model.

    Attributes:
        name: the module's qualified name in the model (``layer1.0.conv1``).
        node: the fx node calling it.
        kind: ``"linear"`` or ``"conv"``.
        n_units: output features or channels (the units).
        n_inputs: input features or channels (the columns of the input map).
        conv_groups: ``Conv2d.groups`` (1 for Linear): with groups > 1 a unit reads only its group's columns.
    """

    name: str
    node: str
    kind: Literal["linear", "conv"]
    n_units: int
    n_inputs: int
    conv_groups: int = 1


@dataclass(frozen=True, eq=False)
class UnitGraph:
    """A model read as CLNP units (see the module docstring).

    Attributes:
        layers: prunable layers by qualified name, in execution order.
        groups: group id -> its units ``(layer, channel)``, in layer order then channel order.
            Every unit of every layer is in exactly one group; most groups are single units.
        group_of: layer -> long tensor ``[n_units]``: each unit's group id.
        inputs: layer -> per input column (feature or channel), the group it reads or ``None``
            (the network input). A column after an addition reads the addition's group.
        norms: batch norm module name -> per normalised channel, its group or ``None`` (a batch norm of
            the network input, which every task reads: it must freeze with the first task).
        output: per feature (dim 1) of the model's output, its group or ``None``: what a head reads.
        graph_module: the traced ``GraphModule`` (it shares its submodules with the model).
    """

    layers: dict[str, Layer]
    groups: list[tuple[Unit, ...]]
    group_of: dict[str, Tensor]
    inputs: dict[str, tuple[int | None, ...]]
    norms: dict[str, tuple[int | None, ...]]
    output: tuple[int | None, ...]
    graph_module: fx.GraphModule = field(repr=False, compare=False)

    def columns(self, layer: str, group: int) -> Tensor:
        """The input columns (features or channels) of ``layer`` that read ``group``."""
        return torch.tensor([i for i, g in enumerate(self.inputs[layer]) if g == group], dtype=torch.long)

    def weight_inputs(self, layer: str) -> Tensor:
        """Long ``[n_units, n_inputs // conv_groups]``: the group each weight column of ``layer`` reads, -1
        for the network input. With ``conv_groups > 1`` unit ``o`` reads its own slice of the input
        channels; this resolves it, so the cut rule compares ``group_of``-owners with this, weight by weight."""
        info = self.layers[layer]
        columns = torch.tensor([-1 if g is None else g for g in self.inputs[layer]], dtype=torch.long)
        per_group_in, per_group_out = info.n_inputs // info.conv_groups, info.n_units // info.conv_groups
        first = (torch.arange(info.n_units) // per_group_out) * per_group_in
        return columns[first[:, None] + torch.arange(per_group_in)[None, :]]

    def members(self, group: int) -> dict[str, Tensor]:
        """The units of ``group``, as channel indices per layer."""
        out: dict[str, list[int]] = {}
        for layer, channel in self.groups[group]:
            out.setdefault(layer, []).append(channel)
        return {layer: torch.tensor(chs, dtype=torch.long) for layer, chs in out.items()}

    def norms_of(self, layer: str) -> list[str]:
        """The batch norms that normalise some channel of ``layer``'s groups (all of them freeze with it)."""
        mine = set(self.group_of[layer].tolist())
        return [bn for bn, gs in self.norms.items() if mine.intersection(g for g in gs if g is not None)]


def trace_units(model: nn.Module, example_input: Tensor) -> UnitGraph:
    """Trace ``model`` with torch.fx and read its units, groups, batch norms and input maps.

    ``example_input`` gives the shapes (a batch of 1 is repeated to 2 so that the batch dimension
    is told apart from the others). The model runs once, in eval mode and without gradients (no
    running statistic moves); its training flags are restored.

    Raises:
        UnsupportedNodeError: the model cannot be traced, or a node cannot be followed.
        ValueError: the model fails on the example input (the message names the node and the cause).
    """
    name = type(model).__name__
    try:
        gm = fx.symbolic_trace(model)
    except fx.proxy.TraceError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedNodeError(f"cannot trace {name} with torch.fx: {first}") from err
    x = example_input.detach()
    if x.dim() >= 1 and x.shape[0] == 1:
        x = torch.cat([x, x])
    flags = {m: m.training for m in gm.modules()}
    try:
        gm.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except RuntimeError as err:  # the model does not run on this input: say where and why, in one line
        where = re.search(r"node=%(\S+)", str(err))
        cause = str(err.__cause__ or err).strip().splitlines()[0]
        at = f" at node {where.group(1)!r}" if where else ""
        raise ValueError(f"{name} fails on an example input of shape {tuple(x.shape)}{at}: {cause}") from err
    finally:
        for m, flag in flags.items():
            m.training = flag
    return _Reader(gm).read()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Unit, Unit] = {}

    def find(self, u: Unit) -> Unit:
        root = u
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while u != root:  # path compression
            self.parent[u], u = root, self.parent.get(u, u)
        return root

    def union(self, a: Unit, b: Unit) -> Unit:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
        return ra


def _qualified(target: Any) -> str:
    """A readable name for a call_function target: ``operator.mul``, ``torch.nn.functional.relu``."""
    for module, prefix in ((F, "torch.nn.functional"), (operator, "operator"), (torch, "torch")):
        for attr in dir(module):
            if not attr.startswith("_") and getattr(module, attr, None) is target:
                return f"{prefix}.{attr}"
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__name__', repr(target))}"


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_function":
        return f"{node.op} {_qualified(node.target)}"
    if node.op == "call_module":
        return f"{node.op} {node.target}: {type(gm.get_submodule(str(node.target))).__name__}"
    return f"{node.op} {node.target}"


ADDS_F = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
ADDS_M = {"add", "add_", "sub", "sub_"}
SCALAR_F = {operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div, operator.neg,
            torch.neg}
SCALAR_M = {"mul", "mul_", "div", "div_", "neg", "neg_"}
UNARY_F = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.gelu, F.silu, F.elu, F.selu, F.celu, F.leaky_relu,
    F.hardtanh, F.softplus, F.mish, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh,
    F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout,
}
UNARY_M = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "detach"}
POOL_F = {F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
          F.adaptive_max_pool1d, F.adaptive_max_pool2d}
RESHAPE_F = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
RESHAPE_M = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
PERMUTE_F = {torch.transpose, torch.permute}
PERMUTE_M = {"transpose", "permute"}
REDUCE_F = {torch.mean, torch.sum, torch.amax, torch.amin}
REDUCE_M = {"mean", "sum", "amax", "amin"}
CAT_F = {torch.cat, torch.concat, torch.concatenate}
SIZE_M = {"size", "dim"}

ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.Mish, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.AlphaDropout,
)
POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
RESHAPE_MODULES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten)
NORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)


class _Refusal(Exception):
    """Raised inside the reader with a reason; turned into :class:`UnsupportedNodeError` with the node's name."""


class _Reader:
    """Walks the traced graph once, in order, keeping each tensor's channel map (an :data:`Entry` per dim-1 index)."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.maps: dict[fx.Node, list[Entry]] = {}
        self.scalars: set[fx.Node] = set()
        self.uf = _UnionFind()
        self.layers: dict[str, Layer] = {}
        self.layer_inputs: dict[str, list[Entry]] = {}
        self.norm_maps: dict[str, list[Entry]] = {}
        self.output: list[Entry] | None = None
        self.seen_placeholder = False

    # -- walking -----------------------------------------------------------------------------------
    def read(self) -> UnitGraph:
        for node in self.gm.graph.nodes:
            try:
                self._visit(node)
            except _Refusal as why:
                raise UnsupportedNodeError(
                    f"cannot follow node {node.name!r} ({_describe(node, self.gm)}): {why}; {FOLLOWS}", node.name
                ) from None
        return self._result()

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.seen_placeholder:
                raise _Refusal("a second input: clnp traces models of one tensor input")
            self.seen_placeholder = True
            if len(self._shape(node)) < 2:
                raise _Refusal("an input without a channel dimension: clnp needs [batch, features or channels, ...]")
            self.maps[node] = [None] * self._shape(node)[1]
            return
        if node.op == "get_attr":
            raise _Refusal("reads a parameter or buffer directly: clnp owns only Linear/Conv2d/batch-norm weights")
        if node.op == "output":
            self._visit_output(node)
            return
        tensor_inputs = [a for a in node.all_input_nodes if a in self.maps]
        meta = node.meta.get("tensor_meta")
        if meta is None:  # a Python value: sizes and arithmetic on them, used for view shapes
            if tensor_inputs and not self._is_size(node):
                raise _Refusal("turns an activation into a Python value")
            self.scalars.add(node)
            return
        if not isinstance(meta, TensorMetadata):
            raise _Refusal("returns several tensors")
        if not tensor_inputs:
            raise _Refusal("makes a tensor that does not come from the input")
        if len(meta.shape) < 2:
            raise _Refusal(f"its output of shape {tuple(meta.shape)} has no channel dimension")
        if node.op == "call_module":
            self.maps[node] = self._module(node, tensor_inputs)
        elif node.op in ("call_function", "call_method"):
            self.maps[node] = self._function(node, tensor_inputs)
        else:  # pragma: no cover - fx has no other node kinds
            raise _Refusal("unknown node kind")

    def _visit_output(self, node: fx.Node) -> None:
        value = node.args[0]
        if not isinstance(value, fx.Node) or value not in self.maps:
            raise _Refusal("the model must return one tensor (the features the heads read)")
        self.output = self.maps[value]

    def _is_size(self, node: fx.Node) -> bool:
        if node.op == "call_method" and node.target in SIZE_M:
            return True
        return node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _shape(node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata):
            raise _Refusal(f"no tensor shape for {node.name!r}")
        return tuple(meta.shape)

    def _single(self, node: fx.Node, tensor_inputs: Sequence[fx.Node]) -> tuple[fx.Node, list[Entry]]:
        if len(tensor_inputs) != 1:
            names = ", ".join(repr(a.name) for a in tensor_inputs)
            raise _Refusal(f"combines activations {names} in a way other than addition or concatenation")
        return tensor_inputs[0], self.maps[tensor_inputs[0]]

    def _same_shape(self, node: fx.Node, src: fx.Node, cmap: list[Entry]) -> list[Entry]:
        if self._shape(node) != self._shape(src):
            raise _Refusal(f"changes the shape {self._shape(src)} -> {self._shape(node)}")
        return cmap

    def _keeps_channels(self, node: fx.Node, src: fx.Node, cmap: list[Entry]) -> list[Entry]:
        out, inp = self._shape(node), self._shape(src)
        if out[:2] != inp[:2] or len(out) != len(inp):
            raise _Refusal(f"changes batch or channels {inp} -> {out}")
        return cmap

    def _arg(self, node: fx.Node, index: int, key: str, default: Any = None) -> Any:
        if len(node.args) > index:
            return node.args[index]
        return node.kwargs.get(key, default)

    def _unit_layer(self, node: fx.Node, module: nn.Module, src: fx.Node, cmap: list[Entry]) -> list[Entry]:
        name = str(node.target)
        if name in self.layers:
            raise _Refusal("calls a prunable layer a second time: each layer's units must have one input")
        shape = self._shape(src)
        if isinstance(module, nn.Linear):
            if len(shape) != 2:
                raise _Refusal(f"Linear on an input of shape {shape}: clnp needs [batch, features]")
            layer = Layer(name, node.name, "linear", module.out_features, module.in_features)
        else:
            assert isinstance(module, nn.Conv2d)
            if len(shape) != 4:
                raise _Refusal(f"Conv2d on an input of shape {shape}: clnp needs [batch, channels, height, width]")
            layer = Layer(name, node.name, "conv", module.out_channels, module.in_channels, module.groups)
        self.layers[name] = layer
        self.layer_inputs[name] = list(cmap)
        return [(name, k) for k in range(layer.n_units)]

    # -- node kinds --------------------------------------------------------------------------------
    def _module(self, node: fx.Node, tensor_inputs: list[fx.Node]) -> list[Entry]:
        module = self.gm.get_submodule(str(node.target))
        src, cmap = self._single(node, tensor_inputs)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return self._unit_layer(node, module, src, cmap)
        if isinstance(module, NORM_MODULES):
            name = str(node.target)
            if name in self.norm_maps:
                raise _Refusal("calls a batch norm a second time: its statistics would mix two places")
            self.norm_maps[name] = list(cmap)
            return self._same_shape(node, src, cmap)
        if isinstance(module, ELEMENTWISE_MODULES):
            return self._same_shape(node, src, cmap)
        if isinstance(module, POOL_MODULES):
            return self._keeps_channels(node, src, cmap)
        if isinstance(module, nn.Flatten) and module.start_dim == 0:
            raise _Refusal("flattens the batch dimension")
        if isinstance(module, RESHAPE_MODULES):
            return self._reshape(node, src, cmap)
        raise _Refusal(f"a module of type {type(module).__name__} clnp does not know")

    def _function(self, node: fx.Node, tensor_inputs: list[fx.Node]) -> list[Entry]:
        t, method = node.target, node.op == "call_method"

        def one_of(functions: Any, methods: Any = ()) -> bool:
            """Whether the node calls one of ``functions`` (``call_function``) or ``methods`` (``call_method``)."""
            return t in (methods if method else functions)

        if one_of(ADDS_F, ADDS_M):
            if len(tensor_inputs) == 2:
                return self._add(node, tensor_inputs)
            src, cmap = self._single(node, tensor_inputs)
            return self._same_shape(node, src, cmap)  # adding a constant keeps the channel map
        if one_of(SCALAR_F, SCALAR_M) or one_of(UNARY_F, UNARY_M):
            src, cmap = self._single(node, tensor_inputs)
            return self._same_shape(node, src, cmap)
        if one_of(POOL_F):
            src, cmap = self._single(node, tensor_inputs)
            return self._keeps_channels(node, src, cmap)
        if one_of(RESHAPE_F, RESHAPE_M):
            src, cmap = self._single(node, tensor_inputs)
            if t in (torch.flatten, "flatten") and self._arg(node, 1, "start_dim", 0) == 0:
                raise _Refusal("flattens the batch dimension")
            return self._reshape(node, src, cmap)
        if one_of(PERMUTE_F, PERMUTE_M):
            src, cmap = self._single(node, tensor_inputs)
            return self._permute(node, src, cmap)
        if one_of(REDUCE_F, REDUCE_M):
            src, cmap = self._single(node, tensor_inputs)
            return self._reduce(node, src, cmap)
        if one_of(CAT_F):
            return self._cat(node)
        raise _Refusal("an operation clnp does not know")

    def _add(self, node: fx.Node, operands: list[fx.Node]) -> list[Entry]:
        (a, b), (sa, sb) = operands, (self._shape(operands[0]), self._shape(operands[1]))
        if len(sa) != len(sb) or sa[1] != sb[1] or self._shape(node)[1] != sa[1]:
            raise _Refusal(f"adds tensors of shapes {sa} and {sb}: clnp joins equal channel counts only")
        out: list[Entry] = []
        for ea, eb in zip(self.maps[a], self.maps[b], strict=True):
            if ea is None and eb is None:
                out.append(None)
            elif ea is None or eb is None:
                raise _Refusal("adds the network input to units: no weight could cut later units out of that sum")
            else:
                out.append(self.uf.union(ea, eb))
        return out

    def _cat(self, node: fx.Node) -> list[Entry]:
        parts = self._arg(node, 0, "tensors")
        dim = self._arg(node, 1, "dim", 0)
        if not isinstance(parts, (list, tuple)) or not all(isinstance(p, fx.Node) and p in self.maps for p in parts):
            raise _Refusal("concatenates something other than activations")
        ndim = len(self._shape(node))
        if not isinstance(dim, int) or dim % ndim != 1:
            raise _Refusal(f"concatenates along dim {dim}: clnp follows concatenation along channels (dim 1)")
        return [e for p in parts for e in self.maps[p]]

    def _reshape(self, node: fx.Node, src: fx.Node, cmap: list[Entry]) -> list[Entry]:
        """view/reshape/flatten/squeeze keep each sample's row-major order: an output channel is followed
        when all of its elements come from one input channel's entry."""
        inp, out = self._shape(src), self._shape(node)
        if len(out) < 2 or out[0] != inp[0]:
            raise _Refusal(f"reshapes {inp} -> {out} across the batch dimension")
        per_in, per_out = _prod(inp[2:]), _prod(out[2:])
        result: list[Entry] = []
        for k in range(out[1]):
            first, last = k * per_out // per_in, ((k + 1) * per_out - 1) // per_in
            entries = {cmap[c] for c in range(first, last + 1)}
            if len(entries) != 1:
                raise _Refusal(f"reshapes {inp} -> {out}, mixing channels of different units in one channel")
            result.append(cmap[first])
        return result

    def _permute(self, node: fx.Node, src: fx.Node, cmap: list[Entry]) -> list[Entry]:
        ndim = len(self._shape(src))
        if node.target in (torch.transpose, "transpose"):
            dims = [self._arg(node, 1, "dim0"), self._arg(node, 2, "dim1")]
            moved = not all(isinstance(d, int) for d in dims) or any(d % ndim in (0, 1) for d in dims)
        else:
            rest = node.args[1:]
            perm: list[Any] = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else list(rest)
            perm = perm or list(cast(Sequence[Any], node.kwargs.get("dims", [])))
            ints = len(perm) == ndim and all(isinstance(d, int) for d in perm)
            moved = not ints or [d % ndim for d in perm[:2]] != [0, 1]
        if moved:
            raise _Refusal("moves the batch or channel dimension")
        return cmap

    def _reduce(self, node: fx.Node, src: fx.Node, cmap: list[Entry]) -> list[Entry]:
        dim = self._arg(node, 1, "dim")
        ndim = len(self._shape(src))
        dims = [dim] if isinstance(dim, int) else list(dim) if isinstance(dim, (list, tuple)) else None
        if not dims or not all(isinstance(d, int) for d in dims) or any(d % ndim in (0, 1) for d in dims):
            raise _Refusal(f"reduces over dim {dim}: clnp follows reductions over spatial dims (2 and up) only")
        out = self._shape(node)
        if out[:2] != self._shape(src)[:2]:
            raise _Refusal("changes batch or channels")
        return cmap

    # -- result ------------------------------------------------------------------------------------
    def _result(self) -> UnitGraph:
        if self.output is None:  # pragma: no cover - every graph has an output node
            raise UnsupportedNodeError("the traced graph has no output")
        ids: dict[Unit, int] = {}
        members: list[list[Unit]] = []
        group_of: dict[str, Tensor] = {}
        for name, layer in self.layers.items():
            row = []
            for k in range(layer.n_units):
                root = self.uf.find((name, k))
                if root not in ids:
                    ids[root] = len(members)
                    members.append([])
                members[ids[root]].append((name, k))
                row.append(ids[root])
            group_of[name] = torch.tensor(row, dtype=torch.long)

        def resolve(cmap: list[Entry]) -> tuple[int | None, ...]:
            return tuple(None if e is None else ids[self.uf.find(e)] for e in cmap)

        return UnitGraph(
            layers=dict(self.layers),
            groups=[tuple(m) for m in members],
            group_of=group_of,
            inputs={name: resolve(cmap) for name, cmap in self.layer_inputs.items()},
            norms={name: resolve(cmap) for name, cmap in self.norm_maps.items()},
            output=resolve(self.output),
            graph_module=self.gm,
        )


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


__all__ = ["FOLLOWS", "Layer", "UnitGraph", "UnsupportedNodeError", "trace_units"]
