"""An exported model on disk: :func:`save_export` writes it as TorchScript, a ``torch.export`` program, ONNX, or
data only (safetensors tensors plus a JSON list of layers, :func:`describe`), which :func:`load_state_dict_export`
rebuilds (:func:`build`) without unpickling anything."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

SUFFIXES = {"torchscript": ".pt", "exported_program": ".pt2", "onnx": ".onnx", "state_dict": ".safetensors"}
"""Every export format, and the suffix of the file ``clnp export`` names after it."""
FORMATS = tuple(SUFFIXES)

EXPORT_BATCH = 2
"""The batch of the example input a ``torch.export`` program is traced with: ``torch.export`` specialises a dimension
of size 0 or 1, so the batch dimension is declared dynamic on an example of 2 inputs."""

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
        # the layer's keyword arguments as the JSON description gives them (its lists as tuples)
        args: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "type"}
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


def save_export(model: nn.Module, path: str | Path, fmt: str, input_shape: Sequence[int]) -> list[Path]:
    """Write an exported model; return the files written.

    ``torchscript``: ``path`` (``torch.jit.load`` reads it; TorchScript is deprecated in recent torch);
    ``exported_program``: ``path``, a ``torch.export`` program of any batch size (``torch.export.load(path).module()``
    is the model); ``onnx``: ``path`` and, where the exporter keeps the
    weights apart, ``path`` + ``.data`` (needs the ``onnx`` and ``onnxscript`` packages:
    ``pip install clnp[onnx]``); ``state_dict``: ``path`` as
    safetensors plus ``path`` with suffix ``.json`` listing the layers (:func:`load_state_dict_export`).
    A symbolic link at any of these names is refused (``RunDirError``): clnp never writes through a link. Every file
    is replaced whole (written beside it, then renamed), never rewritten in place.
    """
    from ..experiments.checkpoint import atomic_write_bytes
    from ..experiments.rundir import refuse_link

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
    if fmt == "exported_program":
        program = torch.export.export(model, (torch.zeros(EXPORT_BATCH, *input_shape),),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
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
        # The exporter rewrites its target in place, so it writes into a fresh folder beside ``path``, and the files
        # are then moved into place like every other file clnp writes (a killed export leaves the previous one
        # whole). The weights may sit beside the graph (``task-K.onnx.data``, which the graph names): both files are
        # the model; they keep their names, and the weights are moved first.
        data = path.with_name(path.name + ".data")
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.export-", dir=path.parent))
        try:
            with warnings.catch_warnings():  # the exporter's FutureWarning / DeprecationWarning noise
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(model, (example,), str(scratch / path.name), input_names=["x"],
                                  output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  dynamo=True, verbose=False)
            written = [data] if (scratch / data.name).is_file() else []
            for target in [*written, path]:
                atomic_write_bytes(target, (scratch / target.name).read_bytes())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not written and data.is_file():
            data.unlink()  # an earlier export's weights, which this graph does not name
        return _readable([path, *written])
    if fmt == "state_dict":
        from safetensors.torch import save

        if not isinstance(model, nn.Sequential):
            raise ValueError("the state_dict format describes a stack of layers; a traced graph model is written as "
                             "--format torchscript, exported_program or onnx")
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
        meta = path.with_suffix(".json")
        atomic_write_bytes(meta, (json.dumps({"input_shape": list(input_shape), "layers": describe(model)},
                                             indent=1) + "\n").encode())
        return _readable([path, meta])
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def load_state_dict_export(path: str | Path) -> nn.Sequential:
    """Read a model written by :func:`save_export` with ``fmt='state_dict'`` (data only, nothing unpickled)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    model = build(meta["layers"])
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
