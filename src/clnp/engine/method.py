"""A method as one declared object: everything the CLI, the config checks, tuning and export ask of it.

In the manner of timm's model registry: each method's module declares one ``METHOD = Method(...)``
(name, constructor, options with ranges and help, tuning space, the shared settings it reads, what it
can do), and :mod:`clnp.methods` collects them. Nothing outside a method's own file needs to know a
method by name. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .options import Option

if TYPE_CHECKING:
    from .config import TrainConfig
    from .learner import Learner

Build = Callable[[str, Sequence[int], "TrainConfig", dict], "Learner"]
"""``build(model_spec, input_shape, train_config, options) -> learner`` on a fresh network; ``options`` are
the method's own settings, already checked against its declared :class:`Option` s."""

StateCheck = Callable[[Mapping[str, Any], dict, str, Sequence[int], Sequence[int], str], None]
"""``check(tensors, learner_meta, model, input_shape, n_classes, source)``: refuse (``ValueError``) a saved
learner state that does not fit, before it is loaded."""


@dataclass(frozen=True)
class Method:
    """One continual-learning method, declared once in its own module."""

    name: str
    """What ``--method`` and ``--methods`` call it."""
    build: Build
    summary: str
    """One line: what the method is (the CLI's and the docs' table)."""
    options: Mapping[str, Option] = field(default_factory=dict)
    """Its own settings (``--option NAME=VALUE``), each with its range and help: the only declaration."""
    tuning: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    """The grid of its own settings that ``clnp compare --tune`` searches (the learning rate is added for every
    method); a name is one of :attr:`options` or of :attr:`run_settings`."""
    reads: tuple[str, ...] = ()
    """The shared run settings that only some methods read (``finetune_epochs``, ``l1``, ...) that this one
    reads; given to a method that does not read it, such a setting is refused (it would be ignored)."""
    run_settings: tuple[str, ...] = ()
    """Of :attr:`reads`, those that are passed to :attr:`build` among the options (CLNP's ``l1``, ``margin``,
    ``grow``): flags of ``clnp run`` that are this method's own settings."""
    settings: type | None = None
    """The dataclass of the method's settings (a :class:`~clnp.engine.config.TrainConfig` subclass), where the
    defaults of its :attr:`run_settings` are declared, and where it may give a shared setting that it :attr:`reads`
    a default of its own (CLNP's ``finetune_epochs``); None: it has none."""
    benchmark_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per benchmark, run settings this method takes there unless given (none today: one default serves all)."""
    exports: bool = False
    """Whether ``clnp export`` can cut a task's network out of a run of this method."""
    capacity: bool = False
    """Whether its learner reports unit capacity (``capacity``, ``capacity_forecast``, ``width_advice``)."""
    check_state: StateCheck | None = None
    """A consistency check of a saved learner state, run before loading it (resume, export); None: only that
    no floating tensor holds NaN or infinity (``clnp.engine.learner.check_finite_state``)."""
    revision: int = 0
    """Raised by one whenever a change to the method's code or defaults changes its results: a run recorded at
    another revision is not the same run (``clnp compare`` does not reuse it, ``--resume`` refuses it), so results
    of two versions never mix in one table or one run."""
    after_training: str = ""
    """A progress line after a task's training epochs, formatted with the run's settings (``{margin:g}``)."""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip() or "," in self.name or "." in self.name:
            raise ValueError(f"a method name must be a non-empty word without ',' or '.', got {self.name!r}")
        unknown = set(self.tuning) - set(self.options) - set(self.run_settings) - {"lr"}
        if unknown:
            raise ValueError(f"method {self.name}: tuning names unknown settings {sorted(unknown)}")
        if not set(self.run_settings) <= set(self.reads):
            raise ValueError(f"method {self.name}: run_settings must be among the settings it reads")


__all__ = ["Build", "Method", "StateCheck"]
