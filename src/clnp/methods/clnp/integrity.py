"""Consistency of a CLNP checkpoint's tensors with its configuration and with its own metadata.

Checksums prove that the files are the ones clnp wrote; these checks prove that what they hold can
be the state of this run's network, before any of it is loaded (loading re-derives the masks and
would silently zero weights under a wrong owner vector):

* the tensor names, shapes and dtypes are exactly those of the configured model with one head per
  finished task, each head as wide as its task has classes (layers grown by ``grow`` may be wider than
  the model spec, never narrower; ``task_widths`` holds one row per finished task, within those widths);
* every owner vector holds task ids of finished tasks or ``FREE``; head *k* is owned by task *k*;
* per layer, the units each task owns and the units left free agree with the learner's reports;
* every cut weight (from a free unit, or from a later task's unit, into an owned unit or a head)
  is exactly zero, as the partition holds it; a shuffled owner vector breaks this;
* each task's row of ``task_widths`` covers every unit the task owns, never shrinks from one task to the
  next, and is the width its reports give (units owned so far plus those left free): an old task reads
  only the units below its row, so a narrowed row would silently change its outputs;
* no frozen value (an owned unit's weights, bias, batch-norm values; a head) is NaN or infinite.

Every failure is a :class:`~clnp.engine.learner.StateError` naming the checkpoint, the tensor and what
was expected (the runner raises it as a :class:`~clnp.experiments.checkpoint.CheckpointError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ...core.graph_net import GraphNet
from ...core.network import check_task_widths
from ...core.partition import FREE, cut_mask, expand_owner
from ...engine.learner import StateError
from ...models import build_network


def check_clnp_state(tensors: Mapping[str, Tensor], learner_meta: dict, model: str, input_shape: Sequence[int],
                     n_classes: Sequence[int], source: str) -> None:
    """Refuse a CLNP learner state that cannot be this run's network after ``len(n_classes)`` tasks."""
    n = len(n_classes)
    heads = learner_meta.get("heads")
    if not isinstance(heads, list) or [h for h in heads] != list(n_classes):
        raise StateError(f"{source}: the learner has heads {heads!r}; the {n} finished tasks have "
                              f"{list(n_classes)} classes")
    reports = learner_meta.get("reports")
    if not isinstance(reports, list) or len(reports) != n or not all(isinstance(r, dict) for r in reports):
        raise StateError(f"{source}: 'learner.reports' must hold one report per finished task ({n})")
    template = build_network(model, input_shape)
    spec = template.widths
    for k in n_classes:
        template.add_head(int(k))
    if isinstance(template, GraphNet):
        _check_graph_state(template, tensors, reports, n, model, source)
        return
    for i, block in enumerate(template.blocks):  # a grown network: the template grows the same way
        owner = tensors.get(f"blocks.{i}.layer.owner")
        if owner is not None and owner.dim() == 1 and owner.numel() > block.layer.n_units:
            template.grow_(i, owner.numel() - block.layer.n_units)
    expected = template.state_dict()
    expected.pop("task_widths", None)
    widths = tensors.get("task_widths")
    if widths is not None:
        if (widths.dtype != torch.int64 or tuple(widths.shape) != (n, len(spec))
                or bool((widths < torch.tensor(spec)).any()) or bool((widths > torch.tensor(template.widths)).any())):
            raise StateError(f"{source}: task_widths must hold one row of layer widths per finished task "
                                  f"({n} x {len(spec)}), between {spec} and {template.widths}; got "
                                  f"{tuple(widths.shape)} {widths.dtype}")
        owner_tensors = [tensors.get(f"blocks.{i}.layer.owner") for i in range(len(spec))]
        if all(isinstance(o, Tensor) and o.dim() == 1 for o in owner_tensors):
            try:
                check_task_widths(widths, owner_tensors)  # type: ignore[arg-type]
            except ValueError as exc:
                raise StateError(f"{source}: {exc}") from None
        tensors = {k: v for k, v in tensors.items() if k != "task_widths"}
    _check_names_and_shapes(expected, tensors, model, n, source)
    blocks = len(template.blocks)
    owners = [tensors[f"blocks.{i}.layer.owner"] for i in range(blocks)]
    for i, owner in enumerate(owners):
        if owner.numel() and (int(owner.min()) < FREE or int(owner.max()) >= n):
            raise StateError(f"{source}: blocks.{i}.layer.owner holds task ids {int(owner.min())}.."
                                  f"{int(owner.max())}; expected {FREE} (free) or 0..{n - 1}")
        for k, report in enumerate(reports):
            owned = report.get("owned")
            if not isinstance(owned, list) or len(owned) != blocks or int((owner == k).sum()) != owned[i]:
                raise StateError(
                    f"{source}: layer {i} has {int((owner == k).sum())} units owned by task {k}; its report says "
                    f"{owned[i] if isinstance(owned, list) and len(owned) == blocks else owned!r}")
        if reports:
            free = reports[-1].get("free_after")
            if not isinstance(free, list) or len(free) != blocks or int((owner == FREE).sum()) != free[i]:
                raise StateError(f"{source}: layer {i} has {int((owner == FREE).sum())} free units; the last "
                                      f"report says {free!r}")
    if widths is not None:
        _check_widths_against_reports(widths, reports, source)
    for k in range(n):
        head_owner = tensors[f"heads.{k}.owner"]
        if not bool((head_owner == k).all()):
            raise StateError(f"{source}: heads.{k}.owner must be {k} throughout (head {k} belongs to task {k})")
    consumers = [(f"blocks.{i}.layer.weight", owners[i - 1], owners[i]) for i in range(1, blocks)]
    consumers += [(f"heads.{k}.weight", owners[-1], tensors[f"heads.{k}.owner"]) for k in range(n)]
    for name, owner_in, owner_out in consumers:
        weight = tensors[name]
        cut = cut_mask(expand_owner(owner_in, weight.shape[1]), owner_out)
        if weight.dim() == 4:
            cut = cut[:, :, None, None].expand_as(weight)
        if bool(torch.any(weight[cut] != 0)):
            raise StateError(f"{source}: {name} has non-zero weights where the owner vectors say they are cut: "
                                  "the owners do not belong to these weights")
    _check_frozen_values_finite(tensors, owners, n, source)


def _check_widths_against_reports(widths: Tensor, reports: list[dict], source: str) -> None:
    """Each task's row of ``task_widths`` is the layer's width when it finished: the units owned by it and the
    tasks before it, plus those it left free (from its report; the reports' ``owned`` fit the owners)."""
    owned_so_far = [0] * widths.shape[1]
    for k, report in enumerate(reports):
        owned_so_far = [a + int(b) for a, b in zip(owned_so_far, report["owned"], strict=True)]
        free = report.get("free_after")
        if not isinstance(free, list) or len(free) != len(owned_so_far):
            raise StateError(f"{source}: report {k} has free_after {free!r}; expected one count per layer")
        for i, (owned, left) in enumerate(zip(owned_so_far, free, strict=True)):
            if int(widths[k, i]) != owned + left:
                raise StateError(
                    f"{source}: task_widths row {k} says layer {i} had {int(widths[k, i])} units; its reports give "
                    f"{owned + left} (owned by tasks 0..{k} plus {left} free after task {k})")


def _check_frozen_values_finite(tensors: Mapping[str, Tensor], owners: Sequence[Tensor], n: int,
                                source: str) -> None:
    """Refuse a NaN or infinity in a frozen unit (weights, bias, batch norm) or a head: an old task would compute
    with it for ever. A checksum cannot tell such a value from a real one; a real run never freezes one."""
    for name, t in tensors.items():
        if not t.is_floating_point():
            continue
        parts = name.split(".")
        if parts[0] == "heads" and int(parts[1]) < n:
            if not bool(torch.isfinite(t).all()):
                raise StateError(f"{source}: {name} holds NaN or infinite values (head {parts[1]} is frozen)")
        elif parts[0] == "blocks" and t.dim() and t.shape[0] == owners[int(parts[1])].numel():
            frozen = owners[int(parts[1])] != FREE
            if not bool(torch.isfinite(t[frozen]).all()):
                raise StateError(f"{source}: {name} holds NaN or infinite values in frozen units")


def _check_names_and_shapes(expected: Mapping[str, Tensor], tensors: Mapping[str, Tensor], model: str, n: int,
                            source: str, any_rows: tuple[str, ...] = ()) -> None:
    """The tensors are the template's: the same names, shapes and dtypes (``any_rows``: any shape, checked later)."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        bits = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:3])}"] if extra else [])
        raise StateError(f"{source}: the tensors do not match model {model!r} with {n} heads ({'; '.join(bits)})")
    for name, want in expected.items():
        got = tensors[name]
        if (tuple(got.shape) != tuple(want.shape) and name not in any_rows) or got.dtype != want.dtype:
            raise StateError(f"{source}: tensor {name} is {tuple(got.shape)} {got.dtype}; model {model!r} "
                             f"needs {tuple(want.shape)} {want.dtype}")


def _check_graph_state(template: GraphNet, tensors: Mapping[str, Tensor], reports: list[dict], n: int, model: str,
                       source: str) -> None:
    """:func:`check_clnp_state` for a traced graph network: the same promises over unit sets."""
    initial = template.widths
    for s in range(template.n_layers):  # a grown network: the template grows the same way
        owner = tensors.get(f"owner_{s}")
        if isinstance(owner, Tensor) and owner.dim() == 1 and owner.numel() > template.widths[s]:
            try:
                template.grow_(s, owner.numel() - template.widths[s])
            except ValueError as exc:
                raise StateError(f"{source}: owner_{s} has {owner.numel()} units: {exc}") from None
    expected = template.state_dict()
    _check_names_and_shapes(expected, tensors, model, n, source, any_rows=("task_widths",))
    widths = tensors["task_widths"]
    owners = [tensors[f"owner_{s}"] for s in range(template.n_layers)]
    if (tuple(widths.shape) != (n, template.n_layers) or bool((widths < torch.tensor(initial)).any())
            or bool((widths > torch.tensor(template.widths)).any())):
        raise StateError(f"{source}: task_widths must hold one row of unit-set widths per finished task ({n} x "
                         f"{template.n_layers}), between {initial} and {template.widths}; got {widths.tolist()}")
    try:
        check_task_widths(widths, owners)
    except ValueError as exc:
        raise StateError(f"{source}: {exc}") from None
    for i, owner in enumerate(owners):
        if owner.numel() and (int(owner.min()) < FREE or int(owner.max()) >= n):
            raise StateError(f"{source}: owner_{i} holds task ids {int(owner.min())}..{int(owner.max())}; expected "
                             f"{FREE} (free) or 0..{n - 1}")
        for k, report in enumerate(reports):
            owned = report.get("owned")
            if not isinstance(owned, list) or len(owned) != len(owners) or int((owner == k).sum()) != owned[i]:
                raise StateError(f"{source}: unit set {i} has {int((owner == k).sum())} units owned by task {k}; "
                                 f"its report says {owned!r}")
    for k in range(n):
        if not bool((tensors[f"heads.{k}.owner"] == k).all()):
            raise StateError(f"{source}: heads.{k}.owner must be {k} throughout (head {k} belongs to task {k})")
    cut = template.weight_cut_problems(dict(tensors))
    if cut:
        raise StateError(f"{source}: {cut[0]} has non-zero weights where the owner vectors say they are cut: the "
                         "owners do not belong to these weights")
    rows = template.owned_rows(dict(tensors))
    for name, t in tensors.items():
        frozen = t if name.startswith("heads.") else t[rows[name]] if name in rows else None
        if frozen is not None and frozen.is_floating_point() and not bool(torch.isfinite(frozen).all()):
            raise StateError(f"{source}: {name} holds NaN or infinite values in frozen units")
