"""Multi-head networks made of prunable blocks: the model CLNP trains.

A network is a *stem* (modules before the first prunable layer, e.g. ``Flatten``), a list of
:class:`Block` s and one output head per task. A block is one prunable layer (``Linear`` or
``Conv2d``: its output features or channels are the *units*), the batch-norm and activation
modules right after it (``post``), then the modules up to the next prunable layer (``tail``:
pooling, dropout, flatten, more activations). The block's *output*, after its tail, is the unit
*activity* that the L1 penalty and the pruning read, and where a pruned unit is silenced: it is
exactly what freezing cuts (the weights out of a unit), so the search evaluates the network that
will be frozen, whatever the tail maps zero to. Build one with :func:`mlp`, :func:`cnn`, or from
your own ``nn.Sequential`` with :class:`CLNPNet`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar, cast, overload

import torch
from torch import Tensor, nn

from .layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from .partition import FREE, expand_owner, live_units, trainable_units
from .sparsity import add_l1_gradient

ACTIVATIONS = (
    nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Mish, nn.Hardtanh, nn.Identity,
)
PASS_THROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Dropout2d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
NONNEGATIVE = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Softplus)
"""Activations whose outputs are never negative."""


_M = TypeVar("_M", bound=nn.Module)

if TYPE_CHECKING:
    class _ModuleListOf(nn.ModuleList, Generic[_M]):
        """For mypy only: an ``nn.ModuleList`` whose items are all ``_M`` (torch types them as ``Module``)."""

        @overload
        def __getitem__(self, idx: slice) -> nn.ModuleList: ...
        @overload
        def __getitem__(self, idx: int) -> _M: ...
        def __getitem__(self, idx: int | slice) -> _M | nn.ModuleList: ...
        def __iter__(self) -> Iterator[_M]: ...


class Block(nn.Module):
    """A prunable layer, its element-wise ``post`` modules (activity read here) and its ``tail``."""

    layer: MaskedLinear | MaskedConv2d
    post: nn.Sequential
    tail: nn.Sequential

    def __init__(self, layer: MaskedLinear | MaskedConv2d, post: list[nn.Module], tail: list[nn.Module]):
        super().__init__()
        self.layer = layer
        self.post = nn.Sequential(*post)
        self.tail = nn.Sequential(*tail)

    def forward(self, x: Tensor, from_snapshot: bool = False, out_units: int | None = None) -> Tensor:
        """The block's output (what the next block reads); ``from_snapshot``: owned rows from their snapshot;
        ``out_units``: only the first units (an old task of a network grown since)."""
        return self.tail(self.post(self.layer(x, from_snapshot, out_units)))

    def batch_norms(self) -> list[MaskedBatchNorm]:
        return [m for m in (*self.post, *self.tail) if isinstance(m, MaskedBatchNorm)]


def _is_stack(trunk: object) -> bool:
    """Whether ``trunk`` is a list or ``nn.Sequential`` of modules a stack of blocks is made of (otherwise a module
    is traced as a graph)."""
    if isinstance(trunk, nn.Module) and not isinstance(trunk, nn.Sequential):
        return False
    if not isinstance(trunk, nn.Sequential):
        return True  # a list, or not a module at all: the stack's own checks say what was expected
    return all(isinstance(m, (nn.Linear, nn.Conv2d, *ACTIVATIONS, *PASS_THROUGH, *BATCH_NORMS)) for m in trunk)


def _masked_copy(module: nn.Module) -> nn.Module:
    """A masked twin of a prunable or batch-norm module, with the same parameters."""
    if isinstance(module, nn.Linear):
        twin: nn.Module = MaskedLinear(module.in_features, module.out_features, bias=module.bias is not None)
    elif isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise ValueError("clnp supports Conv2d with padding_mode='zeros' only")
        twin = MaskedConv2d(
            module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
            padding=module.padding, dilation=module.dilation, groups=module.groups,
            bias=module.bias is not None,
        )
    elif isinstance(module, BATCH_NORMS):
        if not module.track_running_stats:
            raise ValueError("clnp needs batch norm with track_running_stats=True")
        twin = MaskedBatchNorm(module.num_features, eps=module.eps, momentum=module.momentum,
                               affine=module.affine)
    else:
        return module
    twin.load_state_dict(module.state_dict(), strict=False)
    return twin


class CLNPNet(nn.Module):
    """A feed-forward trunk of prunable blocks with one head per task.

    Args:
        trunk: ``nn.Sequential`` (or list) of ``Linear``, ``Conv2d``, element-wise activations,
            ``MaxPool2d``/``AvgPool2d``, ``Flatten``, ``Dropout`` and ``BatchNorm1d/2d``; or any other
            ``nn.Module`` ``torch.fx`` can trace (residual blocks, ...), which makes a
            :class:`~clnp.core.graph_net.GraphNet`. Its parameters are copied into masked twins.
        input_shape: shape of one input example (without the batch dimension).
    """

    blocks: _ModuleListOf[Block]
    heads: _ModuleListOf[MaskedLinear]
    task_widths: Tensor

    def search_point(self, layer: int, cut: bool) -> int:
        """Where a pass must restart when the search silences units of ``layer`` (their activity changes: block
        ``layer`` on) or cuts old units of ``layer`` out of the task (the next block's weights change): an index
        into what :meth:`forward_from` records (``inputs``)."""
        return layer + 1 if cut else layer

    def stays_silent(self, layer: int, changed: set[int]) -> bool:
        """Whether the units of ``layer`` that compute 0 on some inputs still do after active units of the ``changed``
        layers are silenced: in a stack, while no earlier layer changed (pruning can only wake units downstream)."""
        return not any(c < layer for c in changed)

    @property
    def n_search_points(self) -> int:
        """How many restart points :meth:`forward_from` records: one per block, then the features (the head)."""
        return len(self.blocks) + 1

    def __new__(cls, trunk: object = None, *args: object, **kwargs: object) -> CLNPNet:
        """``CLNPNet(model, input_shape)`` of a module that is not a plain stack of the layers listed above is a
        :class:`~clnp.core.graph_net.GraphNet` (residual additions, concatenation, global pooling, ...)."""
        if cls is CLNPNet and trunk is not None and not _is_stack(trunk):
            from .graph_net import GraphNet

            return super().__new__(GraphNet)
        return super().__new__(cls)

    def __init__(self, trunk: Sequence[nn.Module] | nn.Module, input_shape: Sequence[int]):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        stem: list[nn.Module] = []
        blocks: list[Block] = []
        current: list[nn.Module] | None = None  # [layer, post..., None marker, tail...]
        for module in trunk:  # type: ignore[union-attr]
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                if current is not None:
                    blocks.append(self._make_block(current))
                current = [_masked_copy(module)]
            elif isinstance(module, (*ACTIVATIONS, *PASS_THROUGH, *BATCH_NORMS)):
                if getattr(module, "return_indices", False):
                    raise ValueError(f"{type(module).__name__}(return_indices=True) returns (values, indices), "
                                     "which the next layer cannot read; expected return_indices=False")
                twin = _masked_copy(module)
                if current is None:
                    if isinstance(module, BATCH_NORMS):
                        raise ValueError("batch norm before the first Linear/Conv2d layer is not supported")
                    stem.append(twin)
                else:
                    current.append(twin)
            else:
                raise TypeError(
                    f"clnp cannot prune through {type(module).__name__}; expected Linear, Conv2d, "
                    "element-wise activations, MaxPool2d/AvgPool2d, Flatten, Dropout or BatchNorm1d/2d"
                )
        if current is None:
            raise ValueError("the trunk has no Linear or Conv2d layer: nothing to prune")
        blocks.append(self._make_block(current))
        self.stem = nn.Sequential(*stem)
        self.blocks = cast("_ModuleListOf[Block]", nn.ModuleList(blocks))
        self.heads = cast("_ModuleListOf[MaskedLinear]", nn.ModuleList())
        self.eval()  # the probe must not touch batch-norm statistics
        try:
            with torch.no_grad():
                probe = self.features(torch.zeros(2, *self.input_shape))
        except RuntimeError as exc:
            raise ValueError(
                f"the trunk cannot read inputs of shape {self.input_shape}: {exc}. "
                "Expected the first layer's input size (and the kernels) to fit input_shape"
            ) from None
        self.train()
        if probe.dim() != 2:
            raise ValueError(
                f"the trunk must end in flat features (add nn.Flatten()); it ends with shape {tuple(probe.shape[1:])}"
            )
        self.feature_dim = probe.shape[1]
        # Per learned task, the width of every prunable layer when it was learned (growth appends units):
        # an old task computes with those shapes, so its outputs stay bit-identical after the network grows.
        self.register_buffer("task_widths", torch.zeros((0, len(blocks)), dtype=torch.long))
        self.register_load_state_dict_pre_hook(self._fit_loaded_shapes)
        # Loaded tensors are the truth: derive masks and snapshots from them (no consolidation first).
        # (Bound methods, not lambdas: the network pickles, and torch.save saves it whole.)
        self.register_load_state_dict_post_hook(self._refresh_after_load)
        # A user's own loop (AdamW, param.data edits) may have moved frozen rows: state_dict() holds the truth.
        self.register_state_dict_pre_hook(self._consolidate_before_save)
        self.refresh_masks()

    def _refresh_after_load(self, module: nn.Module, keys: object) -> None:
        self.refresh_masks(consolidate=False)

    def _consolidate_before_save(self, module: nn.Module, prefix: str, keep_vars: bool) -> None:
        self.consolidate_()

    @staticmethod
    def _make_block(modules: list[nn.Module]) -> Block:
        layer, rest = modules[0], modules[1:]
        split = 0
        while split < len(rest) and isinstance(rest[split], (MaskedBatchNorm, *ACTIVATIONS)):
            split += 1
        return Block(layer, rest[:split], rest[split:])  # type: ignore[arg-type]

    # ----------------------------------------------------------------------------- structure
    @property
    def layer_names(self) -> list[str]:
        """Readable names of the prunable layers, e.g. ``['0:Linear(784->2000)', ...]``."""
        names = []
        for i, block in enumerate(self.blocks):
            kind = "Conv2d" if isinstance(block.layer, MaskedConv2d) else "Linear"
            names.append(f"{i}:{kind}({block.layer.in_features_count()}->{block.layer.n_units})")
        return names

    @property
    def owners(self) -> list[Tensor]:
        """The owner vector of every prunable layer (views of the buffers, do not edit in place)."""
        return [block.layer.owner for block in self.blocks]

    @property
    def n_tasks(self) -> int:
        return len(self.heads)

    def masked_layers(self) -> list[nn.Module]:
        """Every module with masks, in forward order: layers, their batch norms, then the heads."""
        out: list[nn.Module] = []
        for block in self.blocks:
            out.append(block.layer)
            out.extend(block.batch_norms())
        out.extend(self.heads)
        return out

    def add_head(self, n_classes: int) -> int:
        """Add the output head of a new task; return its task id."""
        if n_classes < 2:
            raise ValueError(f"a task needs at least 2 classes, got {n_classes}")
        weight = self.blocks[0].layer.weight  # the new head takes the trunk's device and dtype (net.double())
        head = MaskedLinear(self.feature_dim, n_classes).to(device=weight.device, dtype=weight.dtype)
        self.heads.append(head)
        head.refresh_(expand_owner(self.blocks[-1].layer.owner, self.feature_dim))
        self._refresh_learned()
        return len(self.heads) - 1

    @property
    def device(self) -> torch.device:
        """Where the network's parameters live (inputs are moved there for evaluation)."""
        return self.blocks[0].layer.weight.device

    def _refresh_learned(self) -> None:
        # Read once per owner change, so that a forward pass never waits for the device to say it.
        self._learned = [bool(h.owner[0] == t) for t, h in enumerate(self.heads)]
        n_learned = sum(self._learned)
        if self.task_widths.shape[0] > n_learned:  # tasks rolled back
            self.task_widths = self.task_widths[:n_learned].clone()
        self._widths = [[int(w) for w in row] for row in self.task_widths.tolist()]

    @property
    def widths(self) -> list[int]:
        """The number of units of every prunable layer, now."""
        return [block.layer.n_units for block in self.blocks]

    @torch.no_grad()
    def grow_(self, layer: int, k: int) -> None:
        """Add ``k`` free units to prunable layer ``layer``: new rows of it (and of its batch norms), new input
        columns of the next layer or of every head. The new columns into owned units are cut (zero), and old
        tasks compute with their own widths (``task_widths``), so every earlier task's outputs stay
        bit-identical."""
        if not 0 <= layer < len(self.blocks):
            raise IndexError(f"no prunable layer {layer}; this network has {len(self.blocks)}")
        if k < 1:
            raise ValueError(f"grow by at least one unit, got {k}")
        self.consolidate_()
        block = self.blocks[layer]
        units = block.layer.n_units
        if layer + 1 < len(self.blocks):
            consumers = [self.blocks[layer + 1].layer]
            per_unit = consumers[0].in_features_count() // units
        else:
            consumers = list(self.heads)
            per_unit = self.feature_dim // units
            self.feature_dim += k * per_unit
        block.layer.grow_units_(k)
        for bn in block.batch_norms():
            bn.grow_(k)
        for consumer in consumers:
            consumer.grow_inputs_(k * per_unit)
        self.refresh_masks(consolidate=False)

    def _fit_loaded_shapes(self, module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
        """Before a load: grow the layers to the loaded owners' lengths (a grown network's checkpoint), and
        take ``task_widths`` as loaded (or, from a checkpoint older than growth, the present widths)."""
        owners = [state_dict.get(f"{prefix}blocks.{i}.layer.owner") for i in range(len(self.blocks))]
        if f"{prefix}task_widths" in state_dict and all(isinstance(o, Tensor) for o in owners):
            check_task_widths(state_dict[f"{prefix}task_widths"], owners)  # type: ignore[arg-type]
        for i, block in enumerate(self.blocks):
            owner = state_dict.get(f"{prefix}blocks.{i}.layer.owner")
            if owner is not None and owner.numel() > block.layer.n_units:
                self.grow_(i, owner.numel() - block.layer.n_units)
        key = f"{prefix}task_widths"
        if key in state_dict:
            self.task_widths = torch.zeros_like(state_dict[key], device=self.task_widths.device)
        else:
            learned = [k for k in range(len(self.heads))
                       if (o := state_dict.get(f"{prefix}heads.{k}.owner")) is not None and bool(o[0] == k)]
            state_dict[key] = torch.tensor([self.widths] * len(learned), dtype=torch.long).view(-1, len(self.blocks))
            self.task_widths = torch.zeros_like(state_dict[key], device=self.task_widths.device)

    @torch.no_grad()
    def refresh_masks(self, consolidate: bool = True) -> None:
        """Derive every mask from the owner vectors (after an owner change or a load).

        First puts frozen values back (``consolidate``), so snapshots are never retaken from drifted
        parameters; a load passes ``consolidate=False``, as the loaded tensors are the truth.
        """
        if consolidate:
            self.consolidate_()
        owner_in: Tensor | None = None
        for block in self.blocks:
            layer = block.layer
            layer.refresh_(None if owner_in is None else expand_owner(owner_in, layer.in_features_count()))
            for bn in block.batch_norms():
                bn.refresh_(layer.owner)
            owner_in = layer.owner
        assert owner_in is not None
        for head in self.heads:
            head.refresh_(expand_owner(owner_in, self.feature_dim))
        self._refresh_learned()

    @torch.no_grad()
    def consolidate_(self) -> None:
        """Write effective weights into the parameters (frozen values included)."""
        for module in self.masked_layers():
            module.consolidate_()  # type: ignore[operator]

    @torch.no_grad()
    def restore_frozen_(self) -> None:
        """Copy frozen rows back from their snapshots; call after an optimiser step (cheap: owned rows only)."""
        for block in self.blocks:
            block.layer.restore_frozen_()
        for head in self.heads:
            head.restore_frozen_()

    # ------------------------------------------------------------------------------- forward
    def features(self, x: Tensor, keep: Sequence[Tensor | None] | None = None) -> Tensor:
        return self._trunk(x, keep, None)

    def is_learned(self, task: int) -> bool:
        """Whether task ``task`` is learned and frozen (its head is owned), not the one being trained."""
        learned = getattr(self, "_learned", [])
        if len(learned) != len(self.heads):  # heads added or removed since the last refresh
            self._refresh_learned()
            learned = self._learned
        return 0 <= task < len(learned) and learned[task]

    def _trunk(self, x: Tensor, keep: Sequence[Tensor | None] | None, taps: list[Tensor] | None,
               l1_weights: Sequence[Tensor | None] | None = None, task: int | None = None, start: int = 0,
               inputs: list[Tensor] | None = None) -> Tensor:
        """Features after the last block. ``task`` (a learned one) computes it from that task's live units only.

        ``start`` > 0: ``x`` is what block ``start`` reads (the stem and the blocks before are skipped);
        ``inputs`` collects what each block from ``start`` on reads, then the features."""
        frozen = task is not None and self.is_learned(task)
        widths = self._widths[task] if frozen else None  # type: ignore[index]
        if start == 0:
            x = self.stem(x)
        nonnegative = self.nonnegative_activity() if l1_weights is not None else None
        for i, block in enumerate(self.blocks):
            if i < start:
                continue
            if inputs is not None:
                inputs.append(x)
            units = block.layer.n_units if widths is None else widths[i]
            out = block(x, frozen, None if widths is None or units == block.layer.n_units else units)
            a = out if out.dim() != 2 or out.shape[1] == units else out.view(out.shape[0], units, -1)
            shape = (1, units, *([1] * (a.dim() - 2)))
            if frozen:
                # Old tasks read only their own live units: a free unit that overflowed (0 * inf) cannot leak in.
                live = live_units(block.layer.owner[:units], task).view(shape)  # type: ignore[arg-type]
                a = torch.where(live, a, torch.zeros((), dtype=a.dtype, device=a.device))
            if keep is not None and keep[i] is not None:
                a = a * keep[i].view(shape).to(a.dtype)  # type: ignore[union-attr]
            if l1_weights is not None and l1_weights[i] is not None:
                assert nonnegative is not None
                a = add_l1_gradient(a, l1_weights[i], nonnegative[i])  # type: ignore[arg-type]
            if taps is not None:
                taps.append(a)
            x = a.view_as(out) if a.dim() != out.dim() else a
        if inputs is not None:
            inputs.append(x)
        return x

    def forward(self, x: Tensor, task: int, keep: Sequence[Tensor | None] | None = None) -> Tensor:
        """Logits of task ``task``. ``keep`` (per layer, optional) zeroes the activity of units.

        A learned task is computed from its frozen values and its live units only, in any grad mode.
        """
        x = self.check_input(x, task)
        return self.heads[task](self._trunk(x, keep, None, task=task), self.is_learned(task))

    def forward_from(self, x: Tensor, task: int, keep: Sequence[Tensor | None] | None, start: int,
                     inputs: list[Tensor] | None = None) -> Tensor:
        """Logits of task ``task`` (not yet learned) from what block ``start`` reads (``start`` = number of blocks:
        from the features); ``inputs`` collects what each later block reads, then the features.

        For a search that changes only the later layers: the layers below need not be computed again."""
        if self.is_learned(task):
            raise ValueError(f"forward_from is for the task being learned; task {task} is learned")
        return self.heads[task](self._trunk(x, keep, None, task=task, start=start, inputs=inputs), False)

    def check_input(self, x: Tensor, task: int) -> Tensor:
        """Refuse a task id without a head (``IndexError``) or inputs not shaped ``[N, *input_shape]`` or not floating
        point; return ``x`` in the network's dtype (float64 or float16 inputs of a float32 network are converted,
        as ``torch.from_numpy`` of a float64 array would otherwise fail deep inside a layer)."""
        if not 0 <= task < len(self.heads):
            raise IndexError(f"unknown task id {task}: this network has {len(self.heads)} task heads")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"inputs of shape {tuple(x.shape)} do not fit this network: expected [N, "
                f"{', '.join(str(s) for s in self.input_shape)}]"
            )
        if not torch.is_floating_point(x):
            raise ValueError(f"inputs must be floating point, got {x.dtype} (e.g. x.float() / 255 for 8-bit images)")
        dtype = self.blocks[0].layer.weight.dtype
        return x if x.dtype == dtype else x.to(dtype)

    def forward_with_activity(
        self, x: Tensor, task: int, keep: Sequence[Tensor | None] | None = None,
        l1_weights: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Logits of task ``task`` and the activity of every prunable layer (block outputs, ``[N, units, ...]``).

        ``l1_weights`` (from :func:`clnp.core.sparsity.l1_unit_weights`) adds the L1 activity penalty's
        gradient to the backward pass; the caller then adds only the penalty's value to the loss.
        """
        x = self.check_input(x, task)
        taps: list[Tensor] = []
        logits = self.heads[task](self._trunk(x, keep, taps, l1_weights, task=task), self.is_learned(task))
        return logits, taps

    # --------------------------------------------------------------------------- task life cycle
    @torch.no_grad()
    def reset_free_units_(self) -> None:
        """Re-initialise the free units of every layer (their weights, biases and batch norms)."""
        for layer in self._layers():
            layer.reset_free_()
        for bn in self._norms():
            bn.reset_free_()
        self.refresh_masks()

    @torch.no_grad()
    def assign_units_(self, task: int, keep: Sequence[Tensor]) -> None:
        """Give the kept free units of every layer, and the head, to ``task``; freeze them."""
        self.consolidate_()
        for block, k in zip(self.blocks, keep, strict=True):
            owner = block.layer.owner
            owner[(owner == FREE) & k.to(owner.device)] = task
        self.heads[task].owner.fill_(task)
        row = torch.tensor([self.widths], dtype=torch.long, device=self.task_widths.device)
        self.task_widths = torch.cat([self.task_widths[:task], row])
        self.refresh_masks()

    @torch.no_grad()
    def clear_free_units_(self) -> None:
        """Zero the free units' incoming weights and biases (after a failed task: nothing it left can overflow)."""
        self.refresh_masks()  # masks must follow the owners before their free rows are addressed
        for layer in self._layers():
            free = layer.train_rows
            layer.weight[free] = 0.0
            if layer.bias is not None:
                layer.bias[free] = 0.0
        for bn in self._norms():
            bn.reset_free_()
        self.refresh_masks(consolidate=False)

    def _layers(self) -> list[MaskedLinear | MaskedConv2d]:
        """Every prunable layer, in forward order."""
        return [block.layer for block in self.blocks]

    def _norms(self) -> list[MaskedBatchNorm]:
        """Every masked batch norm, in forward order."""
        return [bn for block in self.blocks for bn in block.batch_norms()]

    @torch.no_grad()
    def units_used_by(self, task: int) -> list[Tensor]:
        """Per prunable layer, boolean per unit: the units task ``task``'s logits depend on.

        Found backwards from the task's head through non-zero weights: a unit is used when it has a
        non-zero weight into a used unit of the next layer (or into the head), directly or through
        other used units (an old task's units the task reuses pull in what they read).
        """
        if not 0 <= task < self.n_tasks:
            raise IndexError(f"unknown task id {task}: this network has {self.n_tasks} task heads")
        needed: list[Tensor] = [torch.zeros(0, dtype=torch.bool)] * len(self.blocks)
        consumer_w = self.heads[task].effective_weight().detach()
        consumer_rows = torch.ones(consumer_w.shape[0], dtype=torch.bool, device=consumer_w.device)
        for i in reversed(range(len(self.blocks))):
            owner = self.blocks[i].layer.owner
            w = consumer_w[consumer_rows].abs()
            if w.dim() > 2:
                w = w.flatten(2).sum(2)
            per_unit = w.sum(0).view(owner.numel(), -1).sum(1)  # dense after Flatten: channel-major
            alive = live_units(owner, task) if self.is_learned(task) else torch.ones_like(owner, dtype=torch.bool)
            needed[i] = alive & (per_unit > 0)
            consumer_w = self.blocks[i].layer.effective_weight().detach()
            consumer_rows = needed[i]
        return needed

    def free_units(self) -> list[int]:
        return [int((o == FREE).sum()) for o in self.owners]

    @property
    def n_layers(self) -> int:
        """The number of prunable layers (of unit sets, in a graph network): what per-layer settings count."""
        return len(self.owners)

    @torch.no_grad()
    def silence_free_units_(self, trained: Sequence[Tensor]) -> None:
        """Zero the incoming weights and biases of the free units not in ``trained`` (per layer): they compute 0."""
        for block, chosen in zip(self.blocks, trained, strict=True):
            layer = block.layer
            rows = (layer.owner == FREE) & ~chosen.to(layer.owner.device)
            layer.weight[rows] = 0.0
            if layer.bias is not None:
                layer.bias[rows] = 0.0

    @torch.no_grad()
    def outgoing_weight(self, layer: int, task: int, keep: Sequence[Tensor] | None = None) -> Tensor:
        """Per unit of ``layer``: summed magnitude of its weights into task ``task``'s trainable units of the
        next layer (those ``keep[layer + 1]`` allows, all without ``keep``) or, after the last layer, its head."""
        owner = self.blocks[layer].layer.owner
        if layer + 1 < len(self.blocks):
            consumer = self.blocks[layer + 1].layer
            rows = trainable_units(consumer.owner)
            if keep is not None:
                rows = rows & keep[layer + 1].to(consumer.owner.device)
        else:
            consumer = self.heads[task]
            rows = torch.ones(consumer.n_units, dtype=torch.bool, device=owner.device)
        w = consumer.weight.detach()[rows].abs()
        if w.dim() > 2:
            w = w.flatten(2).sum(2)
        per_input = w.sum(0)
        expand_owner(owner, per_input.numel())  # checks the layout
        return per_input.view(owner.numel(), -1).sum(1)

    def reuse_cut_pairs(self, task: int, cut: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """(weight, mask) pairs: the connections from the old units ``cut`` (per layer) into the task's units or
        its head, which the search tries without."""
        pairs = []
        for i, c in enumerate(cut):
            if not c.any():
                continue
            if i + 1 < len(self.blocks):
                consumer = self.blocks[i + 1].layer
                rows = consumer.train_rows
            else:
                consumer = self.heads[task]
                rows = torch.ones(consumer.n_units, dtype=torch.bool, device=c.device)
            cols = expand_owner(c.long(), consumer.weight.shape[1]).bool()
            mask = rows[:, None] & cols[None, :]
            pairs.append((consumer.weight, mask.view(*mask.shape, *([1] * (consumer.weight.dim() - 2)))
                          .expand_as(consumer.weight)))
        return pairs

    def nonnegative_activity(self) -> list[bool]:
        """Per prunable layer: whether its output can never be negative (its last activation is ReLU-like,
        followed only by pooling, dropout or flatten, which keep the sign).

        The L1 penalty skips the ``abs`` of such layers (a saving of two passes per step).
        """
        out = []
        for b in self.blocks:
            modules = [*b.post, *b.tail]
            last = max((j for j, m in enumerate(modules) if not isinstance(m, (*PASS_THROUGH, MaskedBatchNorm))),
                       default=None)
            out.append(last is not None and isinstance(modules[last], NONNEGATIVE))
        return out

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        """Parameters the current task trains: the trunk's (masked) and its own head's."""
        params = [p for p in self.blocks.parameters() if p.requires_grad]
        return params + list(self.heads[task].parameters())


def check_task_widths(widths: Tensor, owners: Sequence[Tensor]) -> None:
    """Refuse ``task_widths`` that do not fit the owner vectors (``ValueError``): an old task computes with its
    row's widths and reads only the units below them, so a row that cuts off a unit the task owns (or
    shrinks from one task to the next: layers only grow) would silently change that task's outputs."""
    if widths.dim() != 2 or widths.shape[1] != len(owners) or widths.is_floating_point():
        raise ValueError(f"task_widths must be an integer matrix of one row per learned task and one column per "
                         f"prunable layer ({len(owners)}); got shape {tuple(widths.shape)} {widths.dtype}")
    rows = [[int(w) for w in row] for row in widths.tolist()]
    for t, row in enumerate(rows):
        for i, (w, owner) in enumerate(zip(row, owners, strict=True)):
            if not 1 <= w <= owner.numel() or (t and w < rows[t - 1][i]):
                low = rows[t - 1][i] if t else 1
                raise ValueError(f"task_widths row {t} gives layer {i} {w} units; expected {low}..{owner.numel()} "
                                 "(layers only grow)")
            owned = (owner == t).nonzero().flatten()
            if owned.numel() and int(owned[-1]) >= w:
                raise ValueError(f"task_widths row {t} gives layer {i} {w} units, but task {t} owns unit "
                                 f"{int(owned[-1])}: a task's widths must cover every unit it owns")


def mlp(in_features: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0,
        batch_norm: bool = False, input_shape: Sequence[int] | None = None) -> CLNPNet:
    """A multi-layer perceptron ``in -> hidden... `` with ReLU (inputs of any shape are flattened)."""
    layers: list[nn.Module] = [nn.Flatten()]
    _dense_layers(layers, in_features, hidden, batch_norm, dropout)
    return CLNPNet(layers, input_shape or (in_features,))


def _dense_layers(layers: list[nn.Module], width: int, sizes: Sequence[int], batch_norm: bool,
                  dropout: float) -> None:
    """Append ``Linear [-> BatchNorm1d] -> ReLU [-> Dropout]`` for each of ``sizes``, from ``width`` inputs."""
    for size in sizes:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size


def cnn(input_shape: Sequence[int], channels: Sequence[int] = (32, 32, 64, 64), dense: Sequence[int] = (512,),
        batch_norm: bool = False, dropout: float = 0.0) -> CLNPNet:
    """3x3 convolutions with 2x2 max pooling after each pair, then dense layers (the SI paper's shape)."""
    c, h, w = (int(s) for s in input_shape)
    layers: list[nn.Module] = []
    for i, out in enumerate(channels):
        layers.append(nn.Conv2d(c, out, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        c = out
        if i % 2 == 1 or i == len(channels) - 1:
            if h >= 2 and w >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            if dropout:
                layers.append(nn.Dropout(dropout))
    layers.append(nn.Flatten())
    _dense_layers(layers, c * h * w, dense, batch_norm, dropout)
    return CLNPNet(layers, input_shape)


def build_model(spec: str, input_shape: Sequence[int]) -> CLNPNet:
    """A network from a short spec: ``mlp:2000,2000`` or ``cnn:32,32,64,64/512``.

    Options follow after further colons: ``bn`` (batch norm), ``dropout=0.2``; e.g.
    ``cnn:32,32/256:bn``.
    """
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    sizes = parts[0] if parts else ""
    options = parts[1:]
    batch_norm = False
    dropout = 0.0
    for opt in options:
        if opt == "bn":
            batch_norm = True
        elif opt.startswith("dropout="):
            dropout = float(opt.split("=", 1)[1])
        else:
            raise ValueError(f"unknown model option {opt!r} in {spec!r}; expected 'bn' or 'dropout=P'")

    def ints(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v]
        except ValueError:
            raise ValueError(f"bad layer sizes {text!r} in model spec {spec!r}; expected e.g. 256,256") from None
        if any(v < 1 for v in values):
            raise ValueError(f"layer sizes must be >= 1 in model spec {spec!r}")
        return values

    if kind == "mlp":
        hidden = ints(sizes)
        if not hidden:
            raise ValueError(f"model spec {spec!r} names no hidden layer; expected e.g. mlp:256,256")
        n_in = 1
        for s in input_shape:
            n_in *= int(s)
        return mlp(n_in, hidden, dropout=dropout, batch_norm=batch_norm, input_shape=input_shape)
    if kind == "cnn":
        conv, _, dense = sizes.partition("/")
        channels = ints(conv)
        if not channels:
            raise ValueError(f"model spec {spec!r} names no conv layer; expected e.g. cnn:32,32,64,64/512")
        if len(input_shape) != 3:
            raise ValueError(f"a cnn needs image inputs (C, H, W); this benchmark's inputs are {tuple(input_shape)}")
        return cnn(input_shape, channels, ints(dense), batch_norm=batch_norm, dropout=dropout)
    raise ValueError(f"unknown model kind {kind!r} in {spec!r}; expected 'mlp:...' or 'cnn:...'")


def spec_with_widths(spec: str, widths: Sequence[int]) -> str:
    """``spec`` (as :func:`build_model` reads it) with its layer widths replaced by ``widths``, in order,
    options kept: ``spec_with_widths("cnn:16,16/64:bn", [17, 17, 80]) == "cnn:17,17/80:bn"``."""
    kind, _, rest = spec.partition(":")
    sizes, sep, options = rest.partition(":")
    conv, slash, dense = sizes.partition("/")
    groups = [g for g in (conv, dense) if g] if kind == "cnn" else [sizes]
    counts = [len([v for v in g.split(",") if v]) for g in groups]
    if sum(counts) != len(widths):
        raise ValueError(f"model spec {spec!r} has {sum(counts)} layers; got {len(widths)} widths")
    values = [str(int(w)) for w in widths]
    parts = [",".join(values[sum(counts[:i]):sum(counts[:i + 1])]) for i in range(len(counts))]
    body = "/".join(parts) if kind == "cnn" and slash else parts[0]
    return f"{kind}:{body}{sep}{options}"
