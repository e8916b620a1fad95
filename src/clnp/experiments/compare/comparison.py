"""``compare``: every method on every seed, run (or reused) and tabulated after each finished run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..launchers import InProcess, make_launcher
from .aggregate import footprint, summarize
from .cells import grid_cells, run_cells
from .config import CompareConfig
from .door import refuse_before_running, refuse_smaller_table, refuse_unbuildable
from .output import JSON_NAME, tabulated, write_outputs
from .tune import tune, tuning_plans, untuned


def compare(config: CompareConfig, out: str | Path, log: Callable[[str], None] | None = None) -> dict:
    """Run every method on every seed; write comparison.json/.md and the plot into ``out``; return the summary.

    Before anything runs, every method's settings and options are checked, and a directory of ``out``
    holding a run of other settings, or a table of runs this comparison leaves out, is refused
    (``ValueError``) unless ``config.overwrite``. With ``config.tune`` the tuning trials run first and
    the evaluation runs' directories are checked once their settings are chosen. Progress goes to
    ``log``: runs done of the total, method and seed, time elapsed and an estimate of the time left.
    """
    from ...data.benchmarks import get_benchmark

    out = Path(out)
    log = log or (lambda _msg: None)
    checked = config.check()
    resolved = checked[config.methods[0]]
    launcher = make_launcher(config.launcher, config.jobs, config.slurm_settings(out)) if config.run_missing \
        else InProcess()  # --no-run: nothing is launched
    plans = tuning_plans(config, out) if config.tune else {}
    known = [m for m in config.methods if not plans.get(m, {}).get("trials")]  # settings known before tuning
    refuse_before_running(config, [c for p in plans.values() for c in p.get("cells", [])]
                          + grid_cells(config, out, known, {}), out)
    stream = get_benchmark(config.benchmark, n_tasks=config.tasks, seed=0, data_dir=config.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    input_shape = stream[0].input_shape
    n_classes = [t.n_classes for t in stream]
    refuse_unbuildable(grid_cells(config, out, config.methods, {}), input_shape)

    record, chosen = tune(config, plans, launcher, log, len(stream)) if config.tune else (untuned(config), {})
    cells = grid_cells(config, out, [m for m in config.methods if not record[m].get("left_out")], chosen)
    if len(known) < len(config.methods):  # the runs whose settings the tuning chose
        refuse_before_running(config, [c for c in cells if c.key[0] not in known], out, table=False)
    found: dict[tuple, dict] = {}
    failed: dict[tuple, str] = {}
    footprints: dict[tuple, dict] = {}
    summary: dict = {}
    old_table = tabulated(out)

    def write() -> None:
        nonlocal summary
        runs = {m: [found[(m, s)] for s in range(config.seeds) if (m, s) in found] for m in config.methods}
        last_footprint = {m: footprints[(m, rs[-1]["seed"])] for m, rs in runs.items() if rs}
        failures: dict[str, list[dict]] = {}
        for seed in range(config.seeds):  # grid order, whatever order the runs finished in
            for method in config.methods:
                if (method, seed) in failed:
                    failures.setdefault(method, []).append({"seed": seed, "error": failed[(method, seed)]})
        summary = summarize(config, resolved, len(stream), runs, last_footprint, out, failures, record)
        if set(found) >= old_table or config.overwrite:  # never replace a table by one with fewer runs mid-way
            write_outputs(summary, out)

    for cell, results, error in run_cells(cells, launcher, config, log):
        if error is not None:
            failed[cell.key] = error
        else:
            assert results is not None  # run_cells yields a run's results or its error
            found[cell.key] = results
            footprints[cell.key] = footprint(results, input_shape, n_classes)
        write()
    if not summary:
        raise FileNotFoundError(f"no finished run of these methods and seeds in {out}: nothing to tabulate")
    now = set(found)
    if not config.run_missing:
        refuse_smaller_table(out, now, config.overwrite)
    if not now >= old_table:
        lost = ", ".join(f"{m} seed {s}" for m, s in sorted(old_table - now))
        log(f"note: {out / JSON_NAME} now leaves out {lost}, which the previous table held (not finished here)")
        write_outputs(summary, out)
    return summary
