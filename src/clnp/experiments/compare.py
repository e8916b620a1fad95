"""Side-by-side comparison of methods on one benchmark: same task stream, seeds, network and budget.

``compare(...)`` runs every (method, seed) through :func:`clnp.runner.run` into ``OUT/METHOD/sSEED``
and writes, after each finished run (so a cut-off comparison still reports what finished):

* ``OUT/comparison.json``: per method, mean and standard deviation over seeds of
  ``average_accuracy``, ``backward_transfer`` and training seconds, the parameter count and the
  bytes needed to store the model for all tasks, the final accuracy per task, the run directories;
* ``OUT/comparison.md``: the same as a Markdown table;
* ``OUT/accuracy_per_task.png``: final test accuracy on every task, one bar per method.

A run directory that already holds a ``results.json`` with the same configuration is reused, not
run again; an unfinished run of the same configuration with a checkpoint (CLNP) is resumed.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..methods.clnp import CapacityError
from .checkpoint import CheckpointError
from .runner import RunConfig, resume, run, unfinished_run

JSON_NAME = "comparison.json"
MARKDOWN_NAME = "comparison.md"
PLOT_NAME = "accuracy_per_task.png"
OWNER_BYTES = 1
"""Bytes to store one owner id (a task id fits a byte up to 255 tasks)."""


@dataclass
class CompareConfig:
    """What a comparison runs: every method on every seed, the rest shared by all runs."""

    benchmark: str = "split-digits"
    methods: list[str] = field(default_factory=lambda: ["clnp", "finetune", "ewc"])
    seeds: int = 1
    """Seeds 0..seeds-1."""
    tasks: int | None = None
    model: str | None = None
    epochs: int | None = None
    finetune_epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    l1: float | list[float] | None = None
    """CLNP's L1 coefficient, or one per hidden layer (other methods ignore it)."""
    margin: float | None = None
    """CLNP's graceful-forgetting margin, in accuracy points (other methods ignore it)."""
    data_dir: str | None = None
    device: str = "auto"
    precision: str = "32"
    options: dict[str, dict] = field(default_factory=dict)
    """Per method, options for its factory, e.g. ``{"ewc": {"lambda": 1000}}``."""
    run_missing: bool = True
    """False: tabulate the runs already finished in the output directory, run nothing."""
    overwrite: bool = False
    """Replace runs of other settings in the output directory, and let a table with fewer runs replace a
    larger one; without it both are refused before anything runs."""

    def __post_init__(self) -> None:
        from ..methods import METHODS

        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if not self.methods:
            raise ValueError("no method to compare; expected e.g. --methods clnp,ewc,si")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(METHODS))}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"a method is named twice in {self.methods}")
        stray = [m for m in self.options if m not in self.methods]
        if stray:
            raise ValueError(f"options given for {', '.join(stray)}, which is not among the compared methods")

    def run_config(self, method: str, seed: int) -> RunConfig:
        return RunConfig(benchmark=self.benchmark, method=method, tasks=self.tasks, model=self.model,
                         epochs=self.epochs, finetune_epochs=self.finetune_epochs, batch_size=self.batch_size,
                         optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, l1=self.l1,
                         margin=self.margin, seed=seed, data_dir=self.data_dir, progress=False,
                         device=self.device, precision=self.precision,
                         extra=dict(self.options.get(method, {})))

    def check(self) -> dict[str, RunConfig]:
        """Every method's settings checked (options included) before anything runs; the resolved config per method."""
        return {m: self.run_config(m, 0).check() for m in self.methods}


def parse_options(items: Sequence[str]) -> dict[str, dict]:
    """``["ewc.lambda=1000", "packnet.prune=0.5"]`` -> ``{"ewc": {"lambda": 1000.0}, ...}``."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise ValueError(f"bad option {item!r}; expected METHOD.NAME=VALUE, e.g. ewc.lambda=1000")
        try:
            parsed: float | str = float(value)
        except ValueError:
            parsed = value
        out.setdefault(method, {})[name] = parsed
    return out


NOT_RESULTS = ("progress", "data_dir", "device")
"""Configuration fields that do not change a run's results."""
CLNP_ONLY = ("l1", "margin")
"""Fields only CLNP reads: a baseline's run is the same run whatever they are."""
FINETUNE_READERS = ("clnp", "packnet")
"""Methods that read ``finetune_epochs``."""


def _ignored(config: dict) -> set[str]:
    ignored = set(NOT_RESULTS)
    if config.get("method") != "clnp":
        ignored.update(CLNP_ONLY)
    if config.get("method") not in FINETUNE_READERS:
        ignored.add("finetune_epochs")
    return ignored


def same_run(config: dict, other: dict) -> bool:
    """Whether two resolved run configurations (dicts) give the same results, for their method."""
    ignored = _ignored(config)
    return all(other.get(k) == v for k, v in config.items() if k not in ignored)


def run_differences(config: dict, other: dict) -> str:
    """The settings in which run ``other`` differs from ``config`` (``epochs 1 there, 2 here``)."""
    ignored = _ignored(config)
    diff = [f"{k} {other.get(k)!r} there, {v!r} here" for k, v in config.items()
            if k not in ignored and other.get(k) != v]
    return ", ".join(diff[:3]) + (", ..." if len(diff) > 3 else "")


def _theirs(directory: Path) -> dict | None:
    """The resolved configuration of the run in ``directory`` (finished or not), or None without one."""
    from .config import read_run_config

    results = directory / "results.json"
    if results.is_file():
        try:
            data = json.loads(results.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            return data["config"]
    if (directory / "config.yaml").is_file():
        try:
            return asdict(read_run_config(directory / "config.yaml").resolved())
        except (OSError, ValueError):
            return None
    return None


def _door(config: CompareConfig, resolved: dict[str, RunConfig], out: Path) -> None:
    """Refuse, before anything runs, to replace runs of other settings or a table with more runs."""
    conflicts = []
    for seed in range(config.seeds):
        for method in config.methods:
            directory = out / method / f"s{seed}"
            theirs = _theirs(directory)
            ours = asdict(dataclasses.replace(resolved[method], seed=seed))
            if theirs is not None and not same_run(ours, theirs):
                conflicts.append(f"{directory} holds a run with other settings ({run_differences(ours, theirs)})")
    if conflicts and not config.overwrite:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ValueError(f"{conflicts[0]}{more}: choose another --out to keep both, or --overwrite to replace them")
    planned = {(m, s) for m in config.methods for s in range(config.seeds)}
    if config.run_missing:  # with --no-run nothing runs: refused at the end, if the table would shrink
        _refuse_smaller_table(out, planned, config.overwrite)


def _refuse_smaller_table(out: Path, kept: set[tuple[str, int]], overwrite: bool) -> None:
    dropped = sorted(_tabulated(out) - kept)
    if dropped and not overwrite:
        names = ", ".join(f"{m} seed {s}" for m, s in dropped[:4]) + (" ..." if len(dropped) > 4 else "")
        raise ValueError(f"{out / JSON_NAME} tabulates runs this comparison leaves out ({names}): give the same "
                         "--methods and --seeds, choose another --out, or --overwrite to write the smaller table")


def _tabulated(out: Path) -> set[tuple[str, int]]:
    """(method, seed) of every run in the comparison table already in ``out``."""
    path = out / JSON_NAME
    if not path.is_file():
        return set()
    try:
        summary = json.loads(path.read_text())
        return {(m, int(s)) for m, info in summary.get("methods", {}).items() for s in info.get("seeds", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def _reusable(path: Path, config: RunConfig) -> dict | None:
    """The results in ``path`` if they were produced by the same run as ``config``."""
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return results if same_run(asdict(config.resolved()), results.get("config", {})) else None


def _resumable(directory: Path, config: RunConfig) -> bool:
    """Whether ``directory`` holds an unfinished run of ``config`` that can continue from a checkpoint."""
    from .config import read_run_config

    if not unfinished_run(directory):
        return False
    try:
        theirs = asdict(read_run_config(directory / "config.yaml").resolved())
    except (OSError, ValueError):
        return False
    return same_run(asdict(config.resolved()), theirs)


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
    from ..core.network import build_model

    net = build_model(results["model"], input_shape)
    n = sum(p.numel() for p in net.parameters()) + sum(net.feature_dim * k + k for k in n_classes)
    units = sum(block.layer.n_units for block in net.blocks) if results["method"] == "clnp" else 0
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


def markdown_table(summary: dict) -> str:
    """The comparison as a Markdown table (accuracies and BWT in points)."""
    several = any(m["average_accuracy"]["n"] > 1 for m in summary["methods"].values())
    spread = "mean ± std over seeds" if several else "one seed"
    head = (f"Benchmark `{summary['benchmark']}`, model `{summary['model']}`, {summary['n_tasks']} tasks, "
            f"{summary['epochs']} epochs per task, seeds {summary['seeds']}. ACC and BWT in % ({spread}); "
            "seconds: training time per run.\n\n")
    lines = ["| method | ACC (%) | BWT (points) | train s | parameters | storage (MB) | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for method, m in summary["methods"].items():
        acc, bwt, sec = m["average_accuracy"], m["backward_transfer"], m["train_seconds"]

        def spread(stat: dict) -> str:  # no "± 0.00" for a single seed: there is no spread to show
            return f" ± {100 * stat['std']:.2f}" if stat["n"] > 1 else ""

        lines.append(
            f"| {method} | {100 * acc['mean']:.2f}{spread(acc)} | {100 * bwt['mean']:+.2f}{spread(bwt)} | "
            f"{sec['mean']:.0f} | {m['parameters']:,} | {m['storage_bytes'] / 1e6:.2f} | {acc['n']} |")
    per_task = ["", "Final test accuracy per task (%, mean over seeds):", "",
                "| method | " + " | ".join(f"T{j}" for j in range(summary["n_tasks"])) + " |",
                "|---|" + "---:|" * summary["n_tasks"]]
    for method, m in summary["methods"].items():
        per_task.append(f"| {method} | " + " | ".join(f"{100 * v:.1f}" for v in m["final_accuracy_per_task"]) + " |")
    failed = [f"- `{m}` seed {f['seed']} stopped: {f['error']}" for m, fs in summary.get("failures", {}).items()
              for f in fs]
    if failed:
        per_task += ["", "Runs that could not finish (left out of the tables):", "", *failed]
    return head + "\n".join(lines + per_task) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Grouped bars from 0 %: final test accuracy per task (x) for every method (colour), with the standard
    deviation over seeds as error bars where there are several seeds; the legend sits above the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary["methods"])
    n_tasks = summary["n_tasks"]
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * n_tasks + 2), 4.4))
    seeds = 1
    for k, method in enumerate(methods):
        m = summary["methods"][method]
        values = [100 * v for v in m["final_accuracy_per_task"]]
        n = m["average_accuracy"]["n"]
        seeds = max(seeds, n)
        std = [100 * v for v in m.get("final_accuracy_per_task_std", [0.0] * n_tasks)] if n > 1 else None
        ax.bar([j - 0.4 + width * (k + 0.5) for j in range(n_tasks)], values, width, yerr=std, capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"}, label=f"{method} (n={n})" if n > 1 else method)
    ax.set_ylim(0, 105)
    ax.set_xticks(range(n_tasks), [f"T{j}" for j in range(n_tasks)])
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy after the last task (%)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    note = f"mean over {seeds} seeds, bars: ± 1 std" if seeds > 1 else "one seed"
    ax.set_title(f"{summary['benchmark']}: final accuracy per task ({note})", fontsize=10, pad=28)
    if methods:
        ax.legend(fontsize="small", ncol=min(6, len(methods)), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def compare(config: CompareConfig, out: str | Path, log: Callable[[str], None] | None = None) -> dict:
    """Run every method on every seed; write comparison.json/.md and the plot into ``out``; return the summary.

    Before anything runs, every method's settings and options are checked, and a directory of ``out``
    holding a run of other settings, or a table of runs this comparison leaves out, is refused
    (``ValueError``) unless ``config.overwrite``. Progress goes to ``log``: runs done of the total,
    method and seed, time elapsed and an estimate of the time left.
    """
    from ..data.benchmarks import get_benchmark

    out = Path(out)
    log = log or (lambda _msg: None)
    checked = config.check()
    resolved = checked[config.methods[0]]
    _door(config, checked, out)
    stream = get_benchmark(config.benchmark, n_tasks=config.tasks, seed=0, data_dir=config.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    input_shape = tuple(stream[0].train.x.shape[1:])
    n_classes = [t.n_classes for t in stream]
    runs: dict[str, list[dict]] = {m: [] for m in config.methods}
    footprints: dict[str, dict] = {}
    summary: dict = {}
    failures: dict[str, list[dict]] = {}
    old_table = _tabulated(out)
    total = config.seeds * len(config.methods)
    done = 0
    began = time.perf_counter()
    ran_seconds: list[float] = []

    def progress() -> str:
        elapsed = time.perf_counter() - began
        left = total - done
        if ran_seconds and left:
            eta = f", about {_clock(left * sum(ran_seconds) / len(ran_seconds))} left"
        else:
            eta = ""
        return f"[{done}/{total} done, {_clock(elapsed)} elapsed{eta}]"

    def write() -> None:
        nonlocal summary
        summary = _summary(config, resolved, len(stream), runs, footprints, out, failures)
        now = {(m, r["seed"]) for m, rs in runs.items() for r in rs}
        if now >= old_table or config.overwrite:  # never replace a table by one with fewer runs mid-way
            _write(summary, out)

    for seed in range(config.seeds):  # seed-major: a cut-off comparison still has every method's first seeds
        for method in config.methods:
            rc = config.run_config(method, seed)
            directory = out / method / f"s{seed}"
            results = _reusable(directory / "results.json", rc)
            if results is None and not config.run_missing:
                done += 1
                log(f"{progress()} {method} seed {seed}: no finished run in {directory}, left out")
                continue
            if results is None:
                t0 = time.perf_counter()
                replace = config.overwrite and _theirs(directory) is not None
                if _resumable(directory, rc):
                    log(f"{progress()} {method} seed {seed}: resuming the unfinished run in {directory}")
                    try:
                        results = resume(directory, progress=False)
                    except (CheckpointError, ValueError) as exc:
                        log(f"{method} seed {seed}: cannot resume ({exc}); running it again")
                        results = run(rc, directory, overwrite=True)
                else:
                    log(f"{progress()} {method} seed {seed}: running into {directory}"
                        + (" (replacing the run of other settings there)" if replace else ""))
                    try:
                        results = run(rc, directory, overwrite=True) if replace else run(rc, directory)
                    except (CapacityError, FloatingPointError) as exc:
                        # The method cannot finish this stream; record why and go on with the others.
                        done += 1
                        ran_seconds.append(time.perf_counter() - t0)
                        log(f"{method} seed {seed}: stopped: {exc}")
                        failures.setdefault(method, []).append({"seed": seed, "error": str(exc)})
                        write()
                        continue
                ran_seconds.append(time.perf_counter() - t0)
                done += 1
                log(f"{progress()} {method} seed {seed}: ACC {100 * results['average_accuracy']:.2f}%, "
                    f"BWT {100 * results['backward_transfer']:+.2f} ({time.perf_counter() - t0:.0f} s)")
            else:
                done += 1
                log(f"{progress()} {method} seed {seed}: reusing {directory / 'results.json'}")
            runs[method].append(results)
            footprints[method] = footprint(results, input_shape, n_classes)
            write()
    if not summary:
        raise FileNotFoundError(f"no finished run of these methods and seeds in {out}: nothing to tabulate")
    now = {(m, r["seed"]) for m, rs in runs.items() for r in rs}
    if not config.run_missing:
        _refuse_smaller_table(out, now, config.overwrite)
    if not now >= old_table:
        lost = ", ".join(f"{m} seed {s}" for m, s in sorted(old_table - now))
        log(f"note: {out / JSON_NAME} now leaves out {lost}, which the previous table held (not finished here)")
        _write(summary, out)
    return summary


def _summary(config: CompareConfig, resolved: RunConfig, n_tasks: int, runs: dict[str, list[dict]],
             footprints: dict[str, dict], out: Path, failures: dict[str, list[dict]]) -> dict:
    return {
        "benchmark": config.benchmark, "model": resolved.model, "n_tasks": n_tasks,
        "epochs": resolved.epochs, "seeds": list(range(config.seeds)),
        "config": asdict(config), "methods": aggregate(runs, footprints),
        "runs": {m: [str(out / m / f"s{r['seed']}") for r in rs] for m, rs in runs.items() if rs},
        "finished": sum(len(rs) for rs in runs.values()), "planned": len(config.methods) * config.seeds,
        "failures": failures,
    }


def _write(summary: dict, out: Path) -> None:
    tmp = out / (JSON_NAME + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / JSON_NAME)
    (out / MARKDOWN_NAME).write_text(markdown_table(summary))
    plot(summary, out / PLOT_NAME)
