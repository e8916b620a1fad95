"""Compact per-task models: the units one task uses, as a plain ``nn.Sequential`` without masks.

Task ``K`` of a :class:`~clnp.core.network.CLNPNet` computes with the units it owns and the older units
it reads; free units, later tasks' units and older units nothing of ``K`` reads contribute exactly
zero (their weights into ``K``'s computation are cut or zero). :func:`export` keeps only the units
that do contribute, found backwards from ``K``'s head: a unit is kept when it is live for ``K``
(owned by ``K`` or an earlier task) and has a non-zero weight into a kept unit of the next layer
(or into the head). The result is an ordinary ``nn.Sequential`` of ``Linear``/``Conv2d``,
activations, pooling and ``Flatten`` (batch norm folded into the layer before it, or kept as a plain
``BatchNorm`` where it does not directly follow one), in evaluation mode, whose logits equal
``net(x, K)`` up to float rounding, and which runs faster in proportion to the units removed.

:func:`save_export` writes it as TorchScript, ONNX, or data only (safetensors tensors plus a JSON
list of layers that :func:`load_state_dict_export` rebuilds).
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .core.layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from .core.network import CLNPNet

FORMATS = ("torchscript", "onnx", "state_dict")


def used_units(net: CLNPNet, task: int) -> list[Tensor]:
    """Per prunable layer, boolean per unit: the units task ``task``'s logits depend on
    (:meth:`CLNPNet.units_used_by`), with at least one unit per layer so that every layer exists in the
    exported model (a unit the task does not read has zero weights into it)."""
    needed = net.units_used_by(task)
    for k in needed:
        if not k.any():
            k[0] = True
    return needed


def _input_index(kept: Tensor, n_inputs: int) -> Tensor:
    """Indices of the input features of a layer that reads ``n_inputs`` features from units ``kept``."""
    factor = n_inputs // kept.numel()
    units = torch.nonzero(kept).flatten()
    if factor == 1:
        return units
    return (units[:, None] * factor + torch.arange(factor)[None, :]).flatten()


def _slice_layer(layer: MaskedLinear | MaskedConv2d, rows: Tensor, cols: Tensor | None) -> nn.Module:
    w = layer.weight.detach()[rows]
    if cols is not None:
        w = w[:, cols]
    b = None if layer.bias is None else layer.bias.detach()[rows]
    if isinstance(layer, MaskedConv2d):
        out: nn.Module = nn.Conv2d(w.shape[1], w.shape[0], layer.kernel_size, stride=layer.stride,
                                   padding=layer.padding, dilation=layer.dilation, bias=b is not None)
    else:
        out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        out.weight.copy_(w)
        if b is not None:
            out.bias.copy_(b)
    return out


def _plain_batch_norm(bn: MaskedBatchNorm, rows: Tensor, conv: bool) -> nn.Module:
    cls = nn.BatchNorm2d if conv else nn.BatchNorm1d
    out = cls(int(rows.sum()), eps=bn.eps, affine=bn.affine)
    with torch.no_grad():
        out.running_mean.copy_(bn.running_mean[rows])
        out.running_var.copy_(bn.running_var[rows])
        if bn.affine:
            out.weight.copy_(bn.weight[rows])
            out.bias.copy_(bn.bias[rows])
    return out


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.Module) -> None:
    """Fold an evaluation-mode batch norm into the linear or conv layer right before it."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    w = layer.weight
    w.mul_(scale.view(-1, *([1] * (w.dim() - 1))))
    if layer.bias is None:
        layer.bias = nn.Parameter(shift.clone())
    else:
        layer.bias.copy_(layer.bias * scale + shift)


@torch.no_grad()
def export(net: CLNPNet, task: int, fold_batch_norm: bool = True) -> nn.Sequential:
    """A plain ``nn.Sequential`` (evaluation mode) computing task ``task``'s logits with only its units.

    ``fold_batch_norm`` folds each batch norm that directly follows a ``Linear``/``Conv2d`` into it;
    other batch norms are kept as plain ``BatchNorm1d/2d`` over the kept channels. Call it between
    tasks; frozen values a user's own loop moved are put back first.
    """
    net.consolidate_()
    keep = used_units(net, task)
    modules: list[nn.Module] = [copy.deepcopy(m) for m in net.stem]
    prev: Tensor | None = None
    for block, rows in zip(net.blocks, keep, strict=True):
        layer = block.layer
        cols = None if prev is None else _input_index(prev, layer.in_features_count())
        compact = _slice_layer(layer, rows, cols)
        modules.append(compact)
        conv = isinstance(layer, MaskedConv2d)
        for j, m in enumerate((*block.post, *block.tail)):
            if isinstance(m, MaskedBatchNorm):
                if fold_batch_norm and j == 0:
                    _fold(compact, _plain_batch_norm(m, rows, conv))
                else:
                    modules.append(_plain_batch_norm(m, rows, conv))
            else:
                modules.append(copy.deepcopy(m))
        prev = rows
    assert prev is not None
    head = net.heads[task]
    modules.append(_slice_layer(head, torch.ones(head.n_units, dtype=torch.bool),
                                _input_index(prev, head.in_features)))
    model = nn.Sequential(*modules)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def n_parameters(module: nn.Module) -> int:
    """Number of parameter values of ``module`` (masks and other buffers not counted)."""
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------- on disk
_SIMPLE = {cls.__name__: cls for cls in (
    nn.ReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Mish,
    nn.Hardtanh, nn.Identity, nn.LeakyReLU, nn.Flatten, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
)}
_ARGS = {
    "LeakyReLU": ("negative_slope",), "ELU": ("alpha",), "GELU": ("approximate",), "Hardtanh": ("min_val", "max_val"),
    "Softplus": ("beta", "threshold"), "Flatten": ("start_dim", "end_dim"), "Dropout": ("p",), "Dropout2d": ("p",),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
}


def describe(model: nn.Sequential) -> list[dict]:
    """JSON-able list of the layers of an exported model (shapes and options, no tensors)."""
    out = []
    for m in model:
        name = type(m).__name__
        if isinstance(m, nn.Linear):
            out.append({"type": name, "in_features": m.in_features, "out_features": m.out_features,
                        "bias": m.bias is not None})
        elif isinstance(m, nn.Conv2d):
            out.append({"type": name, "in_channels": m.in_channels, "out_channels": m.out_channels,
                        "kernel_size": list(m.kernel_size), "stride": list(m.stride), "padding": list(m.padding),
                        "dilation": list(m.dilation), "bias": m.bias is not None})
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.append({"type": name, "num_features": m.num_features, "eps": m.eps, "affine": m.affine})
        elif name in _SIMPLE:
            out.append({"type": name, **{a: getattr(m, a) for a in _ARGS.get(name, ())}})
        else:
            raise TypeError(f"cannot describe a {name} layer; expected the layers export() produces")
    return out


def build(layers: Sequence[dict]) -> nn.Sequential:
    """Rebuild an exported model's architecture from :func:`describe` (fresh weights, evaluation mode)."""
    modules: list[nn.Module] = []
    for spec in layers:
        kind = spec.get("type")
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "type"}
        if kind == "Linear":
            modules.append(nn.Linear(**args))
        elif kind == "Conv2d":
            modules.append(nn.Conv2d(**args))
        elif kind in ("BatchNorm1d", "BatchNorm2d"):
            modules.append(getattr(nn, kind)(**args))
        elif kind in _SIMPLE:
            modules.append(_SIMPLE[kind](**args))
        else:
            raise ValueError(f"unknown layer type {kind!r} in an exported model description")
    return nn.Sequential(*modules).eval()


def _readable(paths: list[Path]) -> list[Path]:
    """Give exported files the mode of any file the user creates (0644 under the usual umask), not 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)  # the file written, never what a link points to
        try:
            os.fchmod(fd, 0o666 & ~umask)
        finally:
            os.close(fd)
    return paths


def save_export(model: nn.Sequential, path: str | Path, fmt: str, input_shape: Sequence[int]) -> list[Path]:
    """Write an exported model; return the files written.

    ``torchscript``: ``path`` (``torch.jit.load`` reads it); ``onnx``: ``path`` (needs the ``onnx``
    and ``onnxscript`` packages: ``pip install clnp[onnx]``); ``state_dict``: ``path`` as
    safetensors plus ``path`` with suffix ``.json`` listing the layers (:func:`load_state_dict_export`).
    A symbolic link at any of these names is refused (``RunDirError``): clnp never writes through a link.
    """
    from .experiments.checkpoint import atomic_write_bytes
    from .experiments.rundir import refuse_link

    path = Path(path)
    for name in (path, path.with_suffix(".json"), path.with_name(path.name + ".data")):
        refuse_link(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, *input_shape)
    if fmt == "torchscript":
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # torch.jit is deprecated in recent torch, but still works
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.trace(model, example), buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return _readable([path])
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "ONNX export needs the onnx and onnxscript packages: pip install 'clnp[onnx]', "
                "or choose --format torchscript or state_dict") from None
        with warnings.catch_warnings():  # the exporter's FutureWarning / DeprecationWarning noise
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
        # Large models keep their weights beside the graph (``task-K.onnx.data``): both files are the model.
        data = path.with_name(path.name + ".data")
        return _readable([path, data] if data.is_file() else [path])
    if fmt == "state_dict":
        from safetensors.torch import save

        atomic_write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
        meta = path.with_suffix(".json")
        atomic_write_bytes(meta, (json.dumps({"input_shape": list(input_shape), "layers": describe(model)},
                                             indent=1) + "\n").encode())
        return _readable([path, meta])
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def export_run(run_dir: str | Path, task: int, fmt: str, output: str | Path | None = None,
               fold_batch_norm: bool = True) -> dict:
    """Export task ``task`` of the CLNP run in ``run_dir`` (from its ``checkpoint/``); return a summary.

    The network is rebuilt from the run's configuration and checkpoint; the file goes to ``output``
    (default ``run_dir/export/task-K.pt|.onnx|.safetensors``).
    """
    from dataclasses import fields

    from .data.benchmarks import get_benchmark
    from .experiments.checkpoint import has_checkpoint, load_checkpoint
    from .experiments.config import RunConfig
    from .experiments.rundir import refuse_link
    from .experiments.runner import CHECKPOINT_DIR, load_checked
    from .methods import build_method

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if output is None:  # the run directory's own export/: never a link to a folder elsewhere
        refuse_link(run_dir / "export")
    ckpt = run_dir / CHECKPOINT_DIR
    if not has_checkpoint(ckpt):
        method = _results_method(run_dir)
        if method is not None and not _exports(method):
            raise ValueError(f"{run_dir} is a run of method {method!r}; only {_exporters()} networks can be exported")
        raise FileNotFoundError(f"no checkpoint in {ckpt}: expected a run directory written by 'clnp run --out'"
                                + (" (this run wrote none)" if method else ""))
    tensors, meta, _ = load_checkpoint(ckpt)
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in meta.get("config", {}).items() if k in names}).resolved()
    if not _exports(cfg.method):
        raise ValueError(f"{run_dir} is a run of method {cfg.method!r}; only {_exporters()} networks can be exported")
    n_done = len(meta.get("tasks", []))
    if not 0 <= task < n_done:
        raise ValueError(f"task {task} is not a finished task of {run_dir}: expected 0..{n_done - 1}")
    shape = meta.get("input_shape")
    if shape is None:  # older checkpoints: read it off the benchmark's first task
        shape = get_benchmark(cfg.benchmark, n_tasks=1, seed=cfg.seed, data_dir=cfg.data_dir)[0].input_shape
    assert cfg.model is not None
    learner = build_method(cfg.method, cfg.model, tuple(shape), cfg.train_config(), cfg.method_options())
    # The same consistency checks as a resume: owners, heads and shapes must fit the model and each other.
    load_checked(learner, tensors, meta.get("learner"), cfg.method, cfg.model, tuple(shape),
                 [int(t.get("n_classes", 0)) for t in meta.get("tasks", []) if isinstance(t, dict)], str(ckpt))
    net: CLNPNet = learner.net  # type: ignore[attr-defined]
    net.eval()
    model = export(net, task, fold_batch_norm=fold_batch_norm)
    suffix = {"torchscript": ".pt", "onnx": ".onnx", "state_dict": ".safetensors"}[fmt]
    path = Path(output) if output is not None else run_dir / "export" / f"task-{task}{suffix}"
    files = save_export(model, path, fmt, net.input_shape)
    kept = [int(k.sum()) for k in used_units(net, task)]
    full = sum(p.numel() for p in net.blocks.parameters()) + n_parameters(net.heads[task])
    return {"task": task, "format": fmt, "files": [str(f) for f in files], "units_kept": kept,
            "units": [o.numel() for o in net.owners], "parameters": n_parameters(model), "parameters_full": full}


def _exports(method: str) -> bool:
    """Whether the registry says runs of ``method`` can be exported (a network of :class:`CLNPNet` units)."""
    from .methods import METHODS

    return method in METHODS and METHODS[method].exports


def _exporters() -> str:
    from .methods import METHODS

    return " and ".join(name.upper() for name, method in METHODS.items() if method.exports)


def _results_method(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / "results.json").read_text())["method"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_state_dict_export(path: str | Path) -> nn.Sequential:
    """Read a model written by :func:`save_export` with ``fmt='state_dict'`` (data only, nothing unpickled)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    model = build(meta["layers"])
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


# ``clnp.export`` names both this module and its :func:`export` (the package's public function). The
# import system sets the package attribute to the module whenever the module is first imported, so the
# module is made callable: ``clnp.export(net, 2)`` and ``clnp.export.load_state_dict_export(path)`` both
# work, whichever was imported first.
export.load_state_dict_export = load_state_dict_export  # type: ignore[attr-defined]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> nn.Sequential:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["FORMATS", "build", "describe", "export", "export_run", "load_state_dict_export", "n_parameters",
           "save_export", "used_units"]
