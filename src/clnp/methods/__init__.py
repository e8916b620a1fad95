"""Continual-learning methods behind one interface, selectable by name (``clnp run --method``).

Every method sees the same task stream, the same network spec and the same training settings
(:class:`~clnp.methods.config.TrainConfig`), trains through the same loop
(:func:`clnp.methods.loop.fit`) and is evaluated by the same runner, so a comparison compares
methods and nothing else. A factory has the signature ``(model_spec, input_shape, train_config,
options) -> learner``; ``options`` are the method's own settings (CLNP's ``l1``, ``margin``,
``activity``; EWC's ``lambda``, ...).

| name | module | what it is |
|---|---|---|
| ``clnp`` | :mod:`.clnp` | continual learning via neural pruning: unit partition, zero forgetting |
| ``finetune`` | :mod:`.finetune` | sequential training, nothing against forgetting (lower bound) |
| ``independent`` | :mod:`.independent` | a separate network per task (ceiling at this width, T x parameters) |
| ``joint`` | :mod:`.joint` | one network trained on all tasks seen so far at once (shared-network upper bound) |
| ``ewc``, ``online-ewc`` | :mod:`.ewc`, :mod:`.online_ewc` | Fisher-weighted quadratic penalty |
| ``si`` | :mod:`.si` | path-integral importance (Synaptic Intelligence) |
| ``mas`` | :mod:`.mas` | output-sensitivity importance (Memory Aware Synapses) |
| ``packnet`` | :mod:`.packnet` | weight-level magnitude pruning, per-task weight masks |
| ``hat`` | :mod:`.hat` | unit-level hard attention masks |
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from torch import Tensor

from ..core.activity import ACTIVITY_MEASURES
from ..core.capacity import SHARES
from ..core.network import build_model
from ..data.tasks import Task
from . import ewc, finetune, hat, independent, joint, mas, online_ewc, packnet, si
from .clnp import CLNP, CLNPConfig
from .config import TrainConfig


class ContinualLearner(Protocol):
    """What the runner needs of a method."""

    def learn(self, task: Task) -> Any:
        """Learn the next task; return a report with ``to_dict()`` (or a dict)."""

    def accuracy(self, task_id: int, x: Tensor, y: Tensor) -> float:
        """Test accuracy (fraction) of an already learned task."""

    def capacity(self) -> list[dict]:
        """Per-layer unit diagnostics (an empty list where the notion does not apply)."""


MethodFactory = Callable[[str, Sequence[int], TrainConfig, dict], ContinualLearner]
"""``factory(model_spec, input_shape, train_config, options) -> learner``."""

CLNP_OPTIONS = ("l1", "margin", "activity", "sparsity", "min_gain", "grow", "grow_min", "max_growth", "plan",
                "share")
"""CLNP's own settings, given as options (``RunConfig.l1``/``margin`` or ``--option clnp.activity=...``)."""


def _clnp(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> ContinualLearner:
    # A CLNPConfig given as the training settings keeps its own CLNP settings; options override them.
    own = {k: getattr(config, k) for k in CLNP_OPTIONS} if isinstance(config, CLNPConfig) else {}
    own.update({k: v for k, v in options.items() if k in CLNP_OPTIONS})
    return CLNP(build_model(model, input_shape), CLNPConfig(**asdict(config.training()), **own))


@dataclass(frozen=True)
class Option:
    """One of a method's own settings (``--option METHOD.NAME=VALUE``, ``extra:`` in YAML): its kind and range."""

    kind: str
    """``number``, ``int``, ``bool`` or ``choice``."""
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def range_text(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        what = "an integer" if self.kind == "int" else "a finite number"
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return what + (f" {bounds}" if bounds else "")

    def check(self, method: str, name: str, value: Any) -> Any:
        """The value, converted (``"5"`` -> 5.0); ``ValueError`` with the allowed range when it does not fit."""
        bad = ValueError(f"option {method}.{name} must be {self.range_text()}, got {value!r}")
        if self.kind == "choice":
            if value not in self.choices:
                raise bad
            return value
        if self.kind == "bool":
            words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
                     "off": False}
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() not in words:
                raise bad
            return words[str(value).strip().lower()]
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise bad
        if self.kind == "int":
            if number != int(number):
                raise bad
            number = int(number)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise bad
        if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
            raise bad
        return number


_STRENGTH = "strength of the penalty"
OPTIONS: dict[str, dict[str, Option]] = {
    "clnp": {"activity": Option("choice", "mean_abs", choices=ACTIVITY_MEASURES,
                                help="unit activity measure"),
             "sparsity": Option("choice", "activations", choices=("activations", "weights"),
                                help="where the L1 penalty goes: hidden activations or the units' incoming weights"),
             "share": Option("choice", "equal", choices=SHARES,
                             help="how the plan divides free units among the tasks to come: equal, or declining "
                                  "(more for the first tasks; for streams whose later tasks reuse old units)"),
             "plan": Option("bool", True, help="plan capacity over the stream (false: the greedy search that "
                                               "spends the whole margin on every task)"),
             "min_gain": Option("number", 0.1, low=0, high=1,
                                help="how far from chance towards 100 % a task must train before it is frozen"),
             "grow_min": Option("int", 1, low=1, help="with --grow: the fewest free units a layer must have"),
             "max_growth": Option("number", 4.0, low=1,
                                  help="with --grow: a layer grows to at most this many times its width")},
    "finetune": {},
    "independent": {},
    "joint": {},
    "ewc": {"lambda": Option("number", ewc.DEFAULT_STRENGTH, low=0, help=_STRENGTH)},
    "online-ewc": {"lambda": Option("number", online_ewc.DEFAULT_STRENGTH, low=0, help=_STRENGTH),
                   "gamma": Option("number", online_ewc.DEFAULT_GAMMA, low=0, high=1, help="Fisher decay")},
    "si": {"lambda": Option("number", si.DEFAULT_STRENGTH, low=0, help=_STRENGTH),
           "xi": Option("number", si.DEFAULT_DAMPING, low=0, low_open=True, help="damping")},
    "mas": {"lambda": Option("number", mas.DEFAULT_STRENGTH, low=0, help=_STRENGTH),
            "samples": Option("int", 1024, low=1, help="inputs for the importance estimate")},
    "packnet": {"prune": Option("number", packnet.DEFAULT_PRUNE, low=0, high=1, low_open=True, high_open=True,
                                help="fraction of a task's free weights pruned")},
    "hat": {"smax": Option("number", hat.DEFAULT_SMAX, low=1, help="largest gate slope"),
            "c": Option("number", hat.DEFAULT_C, low=0, help="strength of the capacity regulariser")},
}
"""Per method, the options its factory reads, with defaults and allowed ranges (checked before any run)."""


def check_options(method: str, options: dict) -> dict:
    """Refuse an unknown option of ``method`` (a misspelling would silently run the default) or a value out
    of its range, naming the option, the allowed range or names; return the options converted."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(sorted(METHODS))}")
    if method not in OPTIONS:  # a method registered from outside, without a declared option list
        return dict(options)
    known = OPTIONS[method]
    checked = {}
    for name, value in options.items():
        if name not in known:
            close = difflib.get_close_matches(str(name), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(known) if known else "none"
            raise ValueError(f"unknown option {method}.{name}{hint}; {method} options: {allowed}")
        checked[name] = known[name].check(method, name, value)
    return checked


METHODS: dict[str, MethodFactory] = {
    "clnp": _clnp,
    "finetune": finetune.build,
    "independent": independent.build,
    "joint": joint.build,
    "ewc": ewc.build,
    "online-ewc": online_ewc.build,
    "si": si.build,
    "mas": mas.build,
    "packnet": packnet.build,
    "hat": hat.build,
}
"""Method name -> factory."""


def build_method(name: str, model: str, input_shape: Sequence[int], config: TrainConfig,
                 options: dict | None = None) -> ContinualLearner:
    """The learner of method ``name`` on a fresh network built from ``model``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](model, input_shape, config, options or {})


__all__ = ["CLNP_OPTIONS", "METHODS", "OPTIONS", "ContinualLearner", "MethodFactory", "Option", "TrainConfig",
           "build_method", "check_options"]
