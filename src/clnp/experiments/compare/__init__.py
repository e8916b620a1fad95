"""Side-by-side comparison of methods on one benchmark: same task stream, seeds, network and budget.

``compare(...)`` runs every (method, seed) through :func:`clnp.experiments.runner.run` into
``OUT/METHOD/sSEED`` and writes, after each finished run (so a cut-off comparison still reports what finished):

* ``OUT/comparison.json``: per method, mean and standard deviation over seeds of
  ``average_accuracy``, ``backward_transfer`` and training seconds, the parameter count and the
  bytes needed to store the model for all tasks, the final accuracy per task, the run directories;
* ``OUT/comparison.md``: the same as a Markdown table;
* ``OUT/accuracy_per_task.png``: final test accuracy on every task, one bar per method.

A run directory that already holds a finished run of the same settings is reused, not run again; an
unfinished one with a checkpoint is resumed (the rule is :func:`clnp.experiments.identity.same_run`).

Where the runs execute is a launcher's business (:mod:`clnp.experiments.launchers`): one after another
in this process (``jobs=1``), in ``jobs`` worker processes, or as Slurm jobs through submitit. Every
launcher calls :func:`execute_run` on the same :class:`RunJob`, and the tables are built in grid order
(seed, then method), so they hold the same numbers whichever launcher ran the runs.

With ``tune=TRIALS`` each method first selects its own settings on a tuning stream (the benchmark at
seed 1000, never an evaluation seed), ``TRIALS`` trials each, into ``OUT/tuning/METHOD/trial-K``; see
:mod:`clnp.experiments.tuning`. The chosen settings are used for the evaluation runs and recorded per
method in both tables.

| module | concern |
|---|---|
| :mod:`.config` | :class:`CompareConfig`, checked before anything runs; ``--option`` parsing |
| :mod:`.reuse` | whether a run directory holds the run already (reused) or its unfinished start (resumed) |
| :mod:`.door` | the refusals before anything runs (runs of other settings, a smaller table, links) |
| :mod:`.execution` | one run in whichever process a launcher runs it (:func:`execute_run`) |
| :mod:`.cells` | the grid's runs and the tuning trials as cells; running them with progress lines |
| :mod:`.tune` | ``--tune``: every method's trials, and the choice of its settings |
| :mod:`.aggregate` | mean and spread over seeds, footprint, the summary |
| :mod:`.tables` | ``comparison.md`` |
| :mod:`.plot` | ``accuracy_per_task.png``, in the report's style |
| :mod:`.output` | the comparison's file names; writing them |
| :mod:`.comparison` | :func:`compare` |
"""

from ..identity import differences, same_run
from .aggregate import aggregate, footprint
from .comparison import compare
from .config import EXECUTION_FIELDS, CompareConfig, parse_options
from .execution import ExecuteRun, RunJob, execute_run
from .output import JSON_NAME, MARKDOWN_NAME, PLOT_NAME
from .plot import plot
from .tables import markdown_table, settings_lines

__all__ = ["EXECUTION_FIELDS", "JSON_NAME", "MARKDOWN_NAME", "PLOT_NAME", "CompareConfig", "ExecuteRun", "RunJob",
           "aggregate", "compare", "differences", "execute_run", "footprint", "markdown_table", "parse_options",
           "plot", "same_run", "settings_lines"]
