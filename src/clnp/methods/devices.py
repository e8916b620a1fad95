"""Where and in which precision a method computes: the device and autocast settings of :class:`TrainConfig`.

``device``: ``auto`` (CUDA when available, else Apple's MPS, else the CPU), ``cpu``, ``cuda``,
``cuda:N`` or ``mps``. ``precision``: ``32``, ``bf16-mixed`` or ``16-mixed`` (Lightning's names):
the forward passes of training *and* of every evaluation run under :func:`torch.autocast` in that
dtype, with a gradient scaler for ``16-mixed``. Evaluation shares the precision of training, so an
old task's outputs stay bit-identical after later tasks when evaluated in the run's precision.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceUnavailableError(RuntimeError):
    """The device asked for does not exist on this machine (``clnp run`` exits 2 with this one line)."""


def check_device_name(name: str) -> None:
    """Refuse a device name clnp does not know (``ValueError`` naming the accepted forms)."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N, mps; got {name!r}")


def resolve_device(name: str | None, local_rank: int | None = None) -> torch.device:
    """The :class:`torch.device` for ``name``, checked to exist here.

    ``auto`` is CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else MPS, else the CPU.
    Raises :class:`DeviceUnavailableError` for a CUDA or MPS device this machine lacks.
    """
    name = "auto" if name is None else name
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda" if local_rank is None else f"cuda:{local_rank % torch.cuda.device_count()}"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    elif name == "cuda" and local_rank is not None and torch.cuda.is_available():
        name = f"cuda:{local_rank % torch.cuda.device_count()}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {name!r} asked for, but this machine has no CUDA device "
                                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None}); "
                                         "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {name!r} asked for, but this machine has "
                                         f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(f"device {name!r} asked for, but MPS is not available here; use --device cpu")
    return device


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def place(module: nn.Module, device: str | None) -> torch.device:
    """Move ``module`` to ``device`` (resolved here; under torchrun ``auto``/``cuda`` mean this rank's GPU)
    and return where it now is. None leaves it in place."""
    if device is not None:
        from .distributed import local_rank

        module.to(resolve_device(device, local_rank()))
    return module_device(module)


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without any)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` on ``device``'s type; a no-op context for ``32``.

    The cast cache is off: with it, a region casts a weight once and serves that copy to every later
    forward pass in the region, so an edit in place (the pruning search tries its reuse cuts on the new
    head's weight inside one region) would be scored on the weight as it was before the edit. A cast
    computes the same values as a cached one, so results are unchanged wherever nothing was edited.
    """
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for ``16-mixed`` (fp16 gradients underflow without one); None otherwise."""
    if precision != "16-mixed":
        return None
    return torch.amp.GradScaler(device.type)


@contextlib.contextmanager
def evaluating(module: nn.Module, precision: str) -> Iterator[None]:
    """Evaluation mode, no gradients, and the run's precision; the module's mode is restored after."""
    was = module.training
    module.eval()
    try:
        with torch.no_grad(), autocast(precision, module_device(module)):
            yield
    finally:
        module.train(was)


__all__ = ["PRECISIONS", "DeviceUnavailableError", "autocast", "check_device_name", "check_precision",
           "evaluating", "grad_scaler", "module_device", "resolve_device"]
