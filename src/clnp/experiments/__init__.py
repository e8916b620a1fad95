"""Experiments: run configurations, runs and their directories, checkpoints, comparisons.

| module | idea |
|---|---|
| :mod:`.config` | :class:`~.config.RunConfig`: its defaults and its checks |
| :mod:`.config_sources` | presets, YAML files and flags, and the order they combine in; ``config.yaml`` |
| :mod:`.runner` | ``run``/``resume``: a benchmark, a model and a method, evaluated after every task |
| :mod:`.run_state` | what a run's checkpoint holds: saved after every task, checked and loaded back on resume |
| :mod:`.progress` | each epoch's row to ``log.csv`` and ``on_epoch``; the progress lines on stderr |
| :mod:`.run_files` | every file name of a run directory, and which files clnp owns there |
| :mod:`.results` | ``RunResults``: ``results.json`` built, written, read (finished, or from the checkpoint), checked |
| :mod:`.environment` | what a run ran on (versions, processor, CPU kernels, threads, device), in ``results.json`` |
| :mod:`.identity` | when two runs are the same run (reuse, resume, refusal of other settings) |
| :mod:`.rundir` | whether a run may go into a directory; ``--overwrite`` removes exactly clnp's files |
| :mod:`.links`, :mod:`.run_lock` | no write through a symbolic link; the lock while a run writes its directory |
| :mod:`.epoch_log` | ``log.csv``, one row per epoch, written and read |
| :mod:`.checkpoint` | data-only, checksummed, atomic checkpoints (and the atomic write every file goes through) |
| :mod:`.compare` | methods x seeds on one stream, tabulated and plotted (a package, one module per concern) |
| :mod:`.launchers` | where a comparison's runs execute: this process, worker processes, Slurm |
| :mod:`.tuning` | ``--tune``'s spaces, trials and criterion |
| :mod:`.plotting` | the one style of every plot (report and comparison) |
| :mod:`.metrics` | ACC and BWT of an accuracy matrix |

The consistency checks of a CLNP state are the method's own: :mod:`clnp.methods.clnp.integrity`.
"""
