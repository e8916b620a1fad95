"""The numbers of a comparison: per method, mean and spread over seeds, footprint, final accuracy per task."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ...methods import get
from ..environment import UNRECORDED, machine_label, task_machines
from ..runner import RunConfig
from .config import EXECUTION_FIELDS, CompareConfig

OWNER_BYTES = 1
"""Bytes to store one owner id (a task id fits a byte up to 255 tasks)."""


def _mean_std(values: Sequence[float]) -> dict:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def footprint(results: dict, input_shape: Sequence[int], n_classes: Sequence[int]) -> dict:
    """Parameters and storage bytes of a finished run's model, for all its tasks.

    Baselines report their own (last task's report); for CLNP it is the network, one head per
    task and one owner byte per unit.
    """
    last = results["tasks"][-1] if results.get("tasks") else {}
    if "storage_bytes" in last and "parameters" in last:
        return {"parameters": int(last["parameters"]), "storage_bytes": int(last["storage_bytes"])}
    from ...models import build_network

    net = build_network(results["model"], input_shape)
    n = sum(p.numel() for p in net.parameters()) + sum(net.feature_dim * k + k for k in n_classes)
    units = sum(net.widths) if get(results["method"]).capacity else 0
    return {"parameters": int(n), "storage_bytes": int(4 * n + OWNER_BYTES * units)}


def aggregate(runs: dict[str, list[dict]], footprints: dict[str, dict]) -> dict:
    """Per method: mean/std of ACC, BWT and seconds over seeds, footprint, final accuracy per task."""
    methods = {}
    for method, results in runs.items():
        if not results:
            continue
        finals = [[v for v in r["accuracy_matrix"][-1]] for r in results]
        methods[method] = {
            "average_accuracy": _mean_std([r["average_accuracy"] for r in results]),
            "backward_transfer": _mean_std([r["backward_transfer"] for r in results]),
            "train_seconds": _mean_std([r["train_seconds"] for r in results]),
            **footprints[method],
            "final_accuracy_per_task": [statistics.fmean(col) for col in zip(*finals, strict=True)],
            "final_accuracy_per_task_std": [statistics.stdev(col) if len(col) > 1 else 0.0
                                            for col in zip(*finals, strict=True)],
            "seeds": [r["seed"] for r in results],
        }
    return methods


def machines(runs: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Per machine (:func:`~clnp.experiments.environment.machine_label`; ``UNRECORDED`` for runs written before
    runs recorded it), the runs made there as ``method sSEED`` (a run resumed on another machine is listed
    under each machine its tasks were learned on): a table that mixes machines mixes the processors' rounding with
    the methods' differences."""
    where: dict[str, list[str]] = {}
    for method, results in runs.items():
        for r in results:
            for machine in run_machines(r):
                where.setdefault(machine, []).append(f"{method} s{r['seed']}")
    return where


def run_machines(results: dict) -> list[str]:
    """The machines a run's tasks were learned on, in order (:func:`~clnp.experiments.environment.task_machines`);
    a run that lists no task: the run's environment, or ``UNRECORDED``."""
    return list(dict.fromkeys(task_machines(results))) or [machine_label(results.get("environment")) or UNRECORDED]


def summarize(config: CompareConfig, resolved: RunConfig, n_tasks: int, runs: dict[str, list[dict]],
             footprints: dict[str, dict], out: Path, failures: dict[str, list[dict]], tuning: dict[str, dict]) -> dict:
    what = {k: v for k, v in asdict(config).items() if k not in EXECUTION_FIELDS}  # not where the runs ran
    return {
        "benchmark": config.benchmark, "model": resolved.model, "n_tasks": n_tasks,
        "epochs": resolved.epochs, "seeds": list(range(config.seeds)),
        "config": what, "methods": aggregate(runs, footprints), "tuning": tuning,
        "runs": {m: [str(out / m / f"s{r['seed']}") for r in rs] for m, rs in runs.items() if rs},
        "finished": sum(len(rs) for rs in runs.values()), "planned": len(config.methods) * config.seeds,
        "failures": failures, "machines": machines(runs),
    }
