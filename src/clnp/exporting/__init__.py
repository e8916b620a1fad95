"""Compact per-task models: the units one task uses, as a plain ``nn.Sequential`` without masks.

* :mod:`.compact`: :func:`export` (a task of a :class:`~clnp.core.network.CLNPNet` to a compact model),
  :func:`used_units`, :func:`n_parameters`;
* :mod:`.graph`: :func:`export_graph`, a task of a traced graph network as a plain ``GraphModule`` and head;
* :mod:`.files`: :func:`save_export` (a ``torch.export`` program, TorchScript, ONNX or data only) and
  :func:`load_state_dict_export`, the layer list :func:`describe` / :func:`build`;
* :mod:`.run`: :func:`export_run`, a task of a run directory (``clnp export``).

``clnp.export(net, task)`` is :func:`export` (the package's public function, from :mod:`clnp`'s lazy map).
"""

from .compact import export, n_parameters, used_units
from .files import FORMATS, build, describe, load_state_dict_export, save_export
from .run import export_run

__all__ = ["FORMATS", "build", "describe", "export", "export_run", "load_state_dict_export", "n_parameters",
           "save_export", "used_units"]
