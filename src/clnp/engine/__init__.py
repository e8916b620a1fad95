"""The training engine: what every method trains and is evaluated through, apart from the methods.

* :mod:`.config`: :class:`~.config.TrainConfig` (the shared training settings), the optimiser, type checks;
* :mod:`.options`: :class:`~.options.Option`, a method's own setting with its range, declared once;
* :mod:`.method`: :class:`~.method.Method`, the one object that declares a method (the registry holds these);
* :mod:`.learner`: :class:`~.learner.Learner`, the one base class of every method (per-task seed, RNG fork,
  rollback, state round trip, reports, test accuracy);
* :mod:`.loop`: :func:`~.loop.fit`, the one training loop, and its hooks;
* :mod:`.evaluate`: the one evaluation of a task's outputs (every method's test accuracy);
* :mod:`.precision`: one :class:`~.precision.Precision` object per ``--precision`` name;
* :mod:`.devices`: device names, one table row per device kind, placement;
* :mod:`.distributed`: data-parallel training under ``torchrun``.

Importing the package imports no torch (:mod:`.options`, :mod:`.method` and :mod:`.precision` need none);
the other modules do.
"""
