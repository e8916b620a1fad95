"""Where a method computes: the device setting of :class:`~clnp.engine.config.TrainConfig`, one row per kind.

``device``: ``auto`` (CUDA when available, else Apple's MPS, else the CPU), ``cpu``, ``cuda``,
``cuda:N`` or ``mps``; a new kind is one row of :data:`DEVICE_KINDS`. The precision
(:mod:`clnp.engine.precision`) applies on any of them; :func:`evaluating` puts a module in evaluation
mode, without gradients, in the run's precision (evaluation computes as training did, so an old task's
outputs stay bit-identical after later tasks).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..core.modes import evaluation_mode
from .precision import autocast


@dataclass(frozen=True)
class DeviceKind:
    """One kind of device: its ``torch`` type, whether this machine has one, and what to say when it does not."""

    name: str
    available: Callable[[], bool]
    missing: str
    """Why a device of this kind cannot be used here (the error's reason when this machine lacks one)."""
    indexed: bool = False
    """Whether a name may pick one device of the kind (``cuda:1``)."""


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


DEVICE_KINDS: dict[str, DeviceKind] = {k.name: k for k in (
    DeviceKind("cuda", _cuda_available, "this machine has no CUDA device", indexed=True),
    DeviceKind("mps", _mps_available, "MPS is not available here"),
    DeviceKind("cpu", lambda: True, ""),
)}
"""Device kind -> its row; ``auto`` takes the first available kind, in this order."""

_DEVICE = re.compile("^(auto|" + "|".join(k.name + (r"(:\d+)?" if k.indexed else "") for k in DEVICE_KINDS.values())
                     + ")$")


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
        name = next(kind.name for kind in DEVICE_KINDS.values() if kind.available())
    if name == "cuda" and local_rank is not None and torch.cuda.is_available():
        name = f"cuda:{local_rank % torch.cuda.device_count()}"
    device = torch.device(name)
    kind = DEVICE_KINDS[device.type]
    if not kind.available():
        build = f" (torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})"
        detail = f"{build}; use --device cpu or auto" if device.type == "cuda" else "; use --device cpu"
        raise DeviceUnavailableError(f"device {name!r} asked for, but {kind.missing}{detail}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"device {name!r} asked for, but this machine has "
                                     f"{torch.cuda.device_count()} CUDA device(s)")
    return device


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


@contextlib.contextmanager
def evaluating(module: nn.Module, precision: str) -> Iterator[None]:
    """Evaluation mode, no gradients, and the run's precision; the module's mode is restored after."""
    with evaluation_mode(module), torch.no_grad(), autocast(precision, module_device(module)):
        yield


__all__ = ["DEVICE_KINDS", "DeviceKind", "DeviceUnavailableError", "check_device_name", "evaluating", "module_device",
           "place", "resolve_device"]
