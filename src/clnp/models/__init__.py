"""Built-in models by spec, as plain ``nn.Module`` feature extractors (clnp adds one head per task).

| spec | module | model |
|---|---|---|
| ``resnet18``, ``resnet18:NF`` | :mod:`.resnet` | GEM's reduced ResNet-18, ``NF`` filters (20): ``[batch, 8 * NF]`` |
| ``alexnet`` | :mod:`.alexnet` | GPM/WSN's 5-layer AlexNet with batch norm: ``[batch, 2048]`` |

No torchvision: each model is a few dozen lines of torch. :func:`build_network` is the one place a model spec
becomes CLNP's network, for every spec: ``mlp:...`` and ``cnn:...`` (stacks of layers, :mod:`clnp.core.network`)
and the models above (traced graphs, :mod:`clnp.core.graph_net`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..core.network import CLNPNet, build_model
from .alexnet import alexnet
from .resnet import resnet18


def _resnet18(arg: str | None, input_shape: Sequence[int]) -> nn.Module:
    nf = 20
    if arg is not None:
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f"resnet18:NF needs NF a positive integer (base filters), got {arg!r}")
        nf = int(arg)
    return resnet18(nf, in_channels=input_shape[0])


def _alexnet(arg: str | None, input_shape: Sequence[int]) -> nn.Module:
    if arg is not None:
        raise ValueError(f"alexnet takes no argument, got {arg!r}")
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"alexnet needs square images (channels, side, side), got input shape {tuple(input_shape)}")
    return alexnet(in_channels=input_shape[0], input_size=input_shape[1])


MODELS: dict[str, Callable[[str | None, Sequence[int]], nn.Module]] = {
    "resnet18": _resnet18,
    "alexnet": _alexnet,
}
"""Model name -> builder ``(argument after ':' or None, input shape without batch) -> module``."""


SPECS = "mlp:W1,W2,..., cnn:C1,C2,.../D1,..., resnet18, resnet18:NF or alexnet"
"""Every model spec's grammar, for errors and help."""


def build_network(spec: str, input_shape: Sequence[int]) -> CLNPNet:
    """CLNP's network for ``spec``: a stack of layers for ``mlp:``/``cnn:``, a traced graph for the built-in models.

    Raises:
        ValueError: an unknown or malformed spec (the message says what was expected).
    """
    name = spec.strip().partition(":")[0]
    if name in MODELS:
        return CLNPNet(build(spec, input_shape), input_shape)
    if name in ("mlp", "cnn"):
        return build_model(spec, input_shape)
    raise ValueError(f"unknown model spec {spec!r}: expected {SPECS}")


def build(spec: str, input_shape: Sequence[int]) -> nn.Module:
    """The model named by ``spec`` (``resnet18``, ``resnet18:NF``, ``alexnet``) for inputs of ``input_shape``.

    ``input_shape`` is one sample's shape, channels first (``(3, 32, 32)``).

    Raises:
        ValueError: an unknown name, a bad argument or an input shape the model cannot take; the
            message names the spec and what was expected.
    """
    name, sep, arg = spec.strip().partition(":")
    if name not in MODELS:
        raise ValueError(f"unknown model spec {spec!r}: expected {SPECS}")
    if len(input_shape) != 3:
        raise ValueError(f"model spec {spec!r} needs images (channels, height, width), got input shape "
                         f"{tuple(input_shape)}")
    try:
        return MODELS[name](arg if sep else None, tuple(int(d) for d in input_shape))
    except ValueError as err:
        raise ValueError(f"bad model spec {spec!r}: {err}") from None


__all__ = ["MODELS", "SPECS", "alexnet", "build", "build_network", "resnet18"]
