"""A comparison's tuning (``--tune TRIALS``): every method's trials on the tuning stream, one launch for all,
and the choice of its settings (:mod:`clnp.experiments.tuning` holds the spaces, trials and criterion)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from .. import tuning as tuning_
from ..launchers import Launcher
from .cells import Cell, run_cells
from .config import CompareConfig


def untuned(config: CompareConfig) -> dict[str, dict]:
    """Per method, the record of settings not tuned: the options given."""
    return {m: {"tuned": False, "options": dict(config.options.get(m, {}))} for m in config.methods}


def tuning_plans(config: CompareConfig, out: Path) -> dict[str, dict]:
    """Per method: the space searched, the settings kept, the trial settings and their run directories."""
    plans = {}
    for method in config.methods:
        fixed = tuning_.fixed_settings(method, config.lr, config.l1, config.margin, config.options.get(method, {}))
        space = tuning_.search_space(method, fixed)
        trials = tuning_.trial_settings(method, space, config.tune)
        base = config.run_config(method, tuning_.TUNING_SEED)
        if config.tune_tasks is not None:
            base = dataclasses.replace(base, tasks=config.tune_tasks)
        cells = [Cell((method, "trial", k), f"{method} trial {k} ({tuning_.describe(values)})",
                       tuning_.with_settings(base, values), out / "tuning" / method / f"trial-{k}")
                 for k, values in enumerate(trials)]
        plans[method] = {"space": space, "fixed": fixed, "trials": trials, "cells": cells}
    return plans


def tune(config: CompareConfig, plans: dict[str, dict], launcher: Launcher, log: Callable[[str], None],
          n_tasks: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """Run every method's trials (one launch for all), score them on the tuning stream's validation splits and
    choose (trials whose capacity forecast cannot last the ``n_tasks`` evaluation tasks last); return the record
    per method (for the tables) and the chosen settings per tuned method."""
    cells = [c for p in plans.values() for c in p["cells"]]
    small = [f"{m} ({len(p['trials'])})" for m, p in plans.items() if 0 < len(p["trials"]) < config.tune]
    if small:
        log(f"tuning: {', '.join(small)} {'has' if len(small) == 1 else 'have'} fewer settings to try than "
            f"--tune {config.tune}: all of them are tried")
    finished: dict[tuple, dict] = {}
    errors: dict[tuple, str] = {}
    for cell, results, error in run_cells(cells, launcher, config, log, what="tuning "):
        if error is not None:
            errors[cell.key] = error
        else:
            assert results is not None  # run_cells yields a run's results or its error
            finished[cell.key] = results
    record: dict[str, dict] = {}
    chosen: dict[str, dict] = {}
    streams: dict = {}
    for method in config.methods:
        plan = plans[method]
        space, trials = plan["space"], plan["trials"]
        entry: dict = {"tuned": False, "options": dict(config.options.get(method, {})), "fixed": plan["fixed"],
                       "space": {k: list(v) for k, v in space.items()}, "space_size": tuning_.grid_size(space),
                       "trials_asked": config.tune, "trials": len(trials), "seed": tuning_.TUNING_SEED,
                       "tasks": config.tune_tasks,
                       "criterion": tuning_.CRITERION}
        record[method] = entry
        if not trials:
            entry["reason"] = "nothing to tune: " + (f"{', '.join(plan['fixed'])} given" if plan["fixed"] else
                                                     "no setting to search")
            continue
        scored = []
        for k, (values, cell) in enumerate(zip(trials, plan["cells"], strict=True)):
            row: dict = {"trial": k, "values": values, "run": str(cell.directory)}
            if cell.key in finished:
                row["validation_accuracy"] = tuning_.validation_accuracy(cell.directory, streams)
                row["test_accuracy"] = finished[cell.key]["average_accuracy"]
                fits = tuning_.fits_stream(finished[cell.key], n_tasks)
                if fits is not None:
                    row["fits_evaluation"] = fits
                scored.append((fits is not False, row["validation_accuracy"], -k))
            else:
                row["error"] = errors.get(cell.key, "not finished (--no-run)")
            entry.setdefault("results", []).append(row)
        missing = [r for r in entry["results"] if "error" in r and r["error"].startswith("not finished")]
        if missing:
            entry["reason"] = (f"tuning incomplete: {len(trials) - len(missing)} of {len(trials)} trials finished "
                               "(run without --no-run to finish it); its runs are left out")
            entry["left_out"] = True
            log(f"tuning {method}: {entry['reason']}")
            continue
        if not scored:
            entry["reason"] = f"every one of its {len(trials)} trials failed: it runs with its defaults"
            log(f"tuning {method}: {entry['reason']}")
            continue
        best = -max(scored)[2]
        entry.update(tuned=True, chosen=trials[best], chosen_trial=best,
                     chosen_validation_accuracy=entry["results"][best]["validation_accuracy"])
        chosen[method] = trials[best]
        log(f"tuning {method}: chose {tuning_.describe(trials[best])} (trial {best} of {len(trials)}, validation "
            f"ACC {100 * entry['chosen_validation_accuracy']:.2f}% on the seed-{tuning_.TUNING_SEED} stream)")
    return record, chosen
