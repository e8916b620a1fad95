"""Experiments: run configurations, runs and their directories, checkpoints, comparisons.

| module | idea |
|---|---|
| :mod:`.config` | :class:`~.config.RunConfig`, YAML files, presets |
| :mod:`.runner` | ``run``/``resume``: a benchmark, a model and a method, evaluated after every task |
| :mod:`.checkpoint` | data-only, checksummed, atomic checkpoints |
| :mod:`.compare` | methods x seeds on one stream, tabulated and plotted |
| :mod:`.metrics` | ACC and BWT of an accuracy matrix |
"""
