"""Side-by-side comparison of methods on one benchmark: same task stream, seeds, network and budget.

``compare(...)`` runs every (method, seed) through :func:`clnp.runner.run` into ``OUT/METHOD/sSEED``
and writes, after each finished run (so a cut-off comparison still reports what finished):

* ``OUT/comparison.json``: per method, mean and standard deviation over seeds of
  ``average_accuracy``, ``backward_transfer`` and training seconds, the parameter count and the
  bytes needed to store the model for all tasks, the final accuracy per task, the run directories;
* ``OUT/comparison.md``: the same as a Markdown table;
* ``OUT/accuracy_per_task.png``: final test accuracy on every task, one bar per method.

A run directory that already holds a ``results.json`` with the same configuration is reused, not
run again; an unfinished run of the same configuration with a checkpoint is resumed.

Where the runs execute is a launcher's business (:mod:`clnp.experiments.launchers`): one after another
in this process (``jobs=1``), in ``jobs`` worker processes, or as Slurm jobs through submitit. Every
launcher calls :func:`execute_run` on the same :class:`RunJob`, and the tables are built in grid order
(seed, then method), so they hold the same numbers whichever launcher ran the runs.

With ``tune=TRIALS`` each method first selects its own settings on a tuning stream (the benchmark at
seed 1000, never an evaluation seed), ``TRIALS`` trials each, into ``OUT/tuning/METHOD/trial-K``; see
:mod:`clnp.experiments.tuning`. The chosen settings are used for the evaluation runs and recorded per
method in both tables.
"""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..methods.clnp import CapacityError
from . import tuning as tuning_
from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_text
from .config import READ_ONLY_BY
from .launchers import LAUNCHERS, InProcess, Launcher, SlurmSettings, make_launcher, worker_device
from .rundir import refuse_link, refuse_links
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
    finetune_lr: float | None = None
    """Learning rate of the retraining after pruning (CLNP, PackNet); None: ``lr``."""
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
    tune: int = 0
    """Trials per method of the hyper-parameter selection on the tuning stream (0: no tuning)."""
    tune_tasks: int | None = None
    """Tasks of the tuning stream: its first ``tune_tasks`` tasks (None: as many as the evaluation). Tuning
    on the first 3 tasks is the protocol of Chaudhry et al. 2019 (A-GEM), and a third of the cost on a
    10-task stream; a setting that only fails once a network fills (a weak CLNP L1) can pass it."""
    jobs: int = 1
    """Worker processes of the local launcher (1: the runs one after another in this process)."""
    launcher: str = "local"
    """``local``, ``slurm`` (one Slurm job per run, through submitit) or ``local-submitit`` (the same code
    path with submitit's local executor, for tests)."""
    slurm_partition: str | None = None
    slurm_time: int = 60
    """Time limit of each Slurm job in minutes; a run that reaches it is requeued and resumes."""
    slurm_gpus_per_run: int | None = None
    slurm_cpus_per_run: int | None = None
    slurm_log_dir: str | None = None
    """submitit's folder for job scripts, pickles and logs (default: ``OUT/slurm-logs``)."""

    def __post_init__(self) -> None:
        from ..data.benchmarks import BENCHMARKS
        from ..methods import METHODS

        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        for name, low in (("jobs", 1), ("tune", 0), ("slurm_time", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        for name in ("slurm_gpus_per_run", "slurm_cpus_per_run"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 0, got {value!r}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}; expected one of: {', '.join(LAUNCHERS)}")
        if self.launcher == "local":
            given = [f"--{k.replace('_', '-')}" for k in ("slurm_partition", "slurm_gpus_per_run",
                                                           "slurm_cpus_per_run", "slurm_log_dir")
                     if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with --launcher slurm")
        elif self.jobs != 1:
            raise ValueError(f"--jobs sets this machine's worker processes; with --launcher {self.launcher} every "
                             "run is its own job and the scheduler decides how many run at once: drop --jobs")
        if self.tune_tasks is not None:
            if isinstance(self.tune_tasks, bool) or not isinstance(self.tune_tasks, int) or self.tune_tasks < 1:
                raise ValueError(f"--tune-tasks must be an integer >= 1, got {self.tune_tasks!r}")
            if not self.tune:
                raise ValueError("--tune-tasks sets the tuning stream's length: it needs --tune TRIALS")
            spec = BENCHMARKS.get(self.benchmark)
            evaluated = self.tasks if spec is None else spec.length(self.tasks)
            if evaluated is not None and self.tune_tasks > evaluated:
                raise ValueError(f"--tune-tasks {self.tune_tasks} is more than the {evaluated} tasks evaluated on "
                                 f"{self.benchmark}: use at most {evaluated}")
        if self.tune and self.seeds > tuning_.TUNING_SEED:
            raise ValueError(f"--tune selects settings on seed {tuning_.TUNING_SEED}, which --seeds "
                             f"{self.seeds} would also evaluate: use at most {tuning_.TUNING_SEED} seeds")
        if not self.methods:
            raise ValueError("no method to compare; expected e.g. --methods clnp,ewc,si")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(METHODS))}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"a method is named twice in {self.methods}")
        for name, readers in READ_ONLY_BY.items():  # a setting none of the compared methods would read
            if name != "grow" and getattr(self, name) is not None and not set(readers) & set(self.methods):
                raise ValueError(f"--{name.replace('_', '-')} is read by {' and '.join(readers)} only, which "
                                 f"{'is' if len(readers) == 1 else 'are'} not compared here: drop it")
        stray = [m for m in self.options if m not in self.methods]
        if stray:
            raise ValueError(f"options given for {', '.join(stray)}, which is not among the compared methods")

    def run_config(self, method: str, seed: int) -> RunConfig:
        return RunConfig(benchmark=self.benchmark, method=method, tasks=self.tasks, model=self.model,
                         epochs=self.epochs, finetune_epochs=self.finetune_epochs, batch_size=self.batch_size,
                         optimizer=self.optimizer, lr=self.lr, finetune_lr=self.finetune_lr,
                         weight_decay=self.weight_decay, l1=self.l1, margin=self.margin, seed=seed,
                         data_dir=self.data_dir, progress=False, device=self.device, precision=self.precision,
                         extra=dict(self.options.get(method, {})))

    def check(self) -> dict[str, RunConfig]:
        """Every method's settings checked (options included) before anything runs; the resolved config per method."""
        return {m: self.run_config(m, 0).check() for m in self.methods}

    def slurm_settings(self, out: Path) -> SlurmSettings:
        return SlurmSettings(partition=self.slurm_partition, time_min=self.slurm_time,
                             gpus_per_run=self.slurm_gpus_per_run, cpus_per_run=self.slurm_cpus_per_run,
                             log_dir=self.slurm_log_dir or str(out / "slurm-logs"))


EXECUTION_FIELDS = ("jobs", "launcher", "slurm_partition", "slurm_time", "slurm_gpus_per_run", "slurm_cpus_per_run",
                    "slurm_log_dir")
"""CompareConfig fields that say where the runs execute, not what they compute (left out of comparison.json)."""


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
CLNP_ONLY = ("l1", "margin", "grow")
"""Fields only CLNP reads: a baseline's run is the same run whatever they are."""
FINETUNE_READERS = ("clnp", "packnet")
"""Methods that read ``finetune_epochs`` and ``finetune_lr``."""


def _ignored(config: dict) -> set[str]:
    ignored = set(NOT_RESULTS)
    if config.get("method") != "clnp":
        ignored.update(CLNP_ONLY)
    if config.get("method") not in FINETUNE_READERS:
        ignored.update(("finetune_epochs", "finetune_lr"))
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


def _door(config: CompareConfig, cells: Sequence[_Cell], out: Path, table: bool = True) -> None:
    """Refuse, before these cells run, to replace runs of other settings (and with ``table`` a larger table), and
    a symbolic link where the comparison or one of its runs writes (never written through)."""
    for name in (JSON_NAME, MARKDOWN_NAME, PLOT_NAME):
        refuse_link(out / name)
    conflicts = []
    for cell in cells:
        refuse_links(cell.directory)
        theirs = _theirs(cell.directory)
        ours = asdict(cell.config.check())
        if theirs is not None and not same_run(ours, theirs):
            conflicts.append(f"{cell.directory} holds a run with other settings ({run_differences(ours, theirs)})")
    if conflicts and not config.overwrite:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ValueError(f"{conflicts[0]}{more}: choose another --out to keep both, or --overwrite to replace them")
    planned = {(m, s) for m in config.methods for s in range(config.seeds)}
    if table and config.run_missing:  # with --no-run nothing runs: refused at the end, if the table would shrink
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
    return head + "\n".join(lines + per_task + _settings_lines(summary)) + "\n"


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in values.items())


def _settings_lines(summary: dict) -> list[str]:
    """Whether each method's settings were tuned, and how (space, trials, chosen values)."""
    record = summary.get("tuning") or {}
    if not record:
        return []
    if not any("trials_asked" in r for r in record.values()):
        given = [f"`{m}` {_values(r['options'])}" for m, r in record.items() if r.get("options")]
        return ["", "Settings: not tuned; every method runs with the shared settings above and its own defaults"
                + (f", options given: {'; '.join(given)}." if given else ".")]
    first = next(iter(record.values()))
    length = f", its first {first['tasks']} tasks" if first.get("tasks") else ""
    lines = ["", f"Settings per method, tuned with --tune {first['trials_asked']} on a tuning stream (the benchmark "
             f"at seed {first['seed']}{length}, not an evaluation seed); criterion: {first['criterion']}:", ""]
    for method, r in record.items():
        space = " x ".join(f"{k} {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in r["space"].items())
        how = f"{r['trials']} of the {r['space_size']} settings of {space}" if r["space"] else ""
        kept = f"; kept as given: {', '.join(r['fixed'])}" if r.get("fixed") else ""
        short = [str(row["trial"]) for row in r.get("results", []) if row.get("fits_evaluation") is False]
        if short:
            kept += (f"; trial{'s' if len(short) > 1 else ''} {', '.join(short)} ranked last: "
                     f"{'their' if len(short) > 1 else 'its'} capacity forecast does not last the "
                     f"{summary['n_tasks']} tasks")
        if r.get("tuned"):
            lines.append(f"- `{method}`: tuned, {how}: chose {_values(r['chosen'])} (validation ACC "
                         f"{100 * r['chosen_validation_accuracy']:.2f} %){kept}")
        else:
            lines.append(f"- `{method}`: not tuned ({r.get('reason', '')}){': ' + how if how else ''}{kept}")
    return lines


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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass
class RunJob:
    """One run as a launcher hands it to :func:`execute_run`: its configuration and run directory, and
    whether a run of other settings there may be replaced."""

    config: RunConfig
    directory: str
    overwrite: bool = False


def execute_run(job: RunJob) -> dict:
    """Reuse, resume or run one run in its directory; what every launcher calls, in whichever process.

    What to do is decided from the directory each time it is called (a requeued Slurm job resumes):
    a finished run of the same configuration is reused, an unfinished one resumed, otherwise the run
    starts (replacing a run of other settings only with ``job.overwrite``). Returns ``{"results",
    "error", "did", "notes", "seconds"}``; a run the method cannot finish (``CapacityError``, a diverged
    loss) comes back as ``error``, not as an exception, so that the others go on.
    """
    began = time.perf_counter()
    directory = Path(job.directory)
    rc = job.config
    device = worker_device(rc.device)  # in a pool worker: the worker's own GPU
    if device != rc.device:
        rc = dataclasses.replace(rc, device=device)
    notes: list[str] = []
    did = "ran"
    try:
        results = _reusable(directory / "results.json", rc)
        if results is not None:
            did = "reused"
        elif _resumable(directory, rc):
            did = "resumed"
            try:
                results = resume(directory, progress=False, device=rc.device)
            except (CheckpointError, ValueError) as exc:
                notes.append(f"cannot resume ({exc}); running it again")
                did = "ran"
                results = run(rc, directory, overwrite=True)
        else:
            replace = job.overwrite and _theirs(directory) is not None
            results = run(rc, directory, overwrite=True) if replace else run(rc, directory)
    except (CapacityError, FloatingPointError) as exc:  # the method cannot finish this stream
        return {"results": None, "error": str(exc), "did": did, "notes": notes,
                "seconds": time.perf_counter() - began}
    return {"results": results, "error": None, "did": did, "notes": notes, "seconds": time.perf_counter() - began}


class ExecuteRun:
    """:func:`execute_run` as an object that submitit can requeue: when a Slurm job reaches its time limit,
    submitit calls ``checkpoint`` and submits the same job again, which resumes the run from its last
    finished task (the run directory's checkpoint)."""

    def __call__(self, job: RunJob) -> dict:
        return execute_run(job)

    def checkpoint(self, job: RunJob) -> object:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, job)


@dataclass
class _Cell:
    """One run of the grid or of the tuning: its key, a name for the progress lines, config and directory."""

    key: tuple
    name: str
    config: RunConfig
    directory: Path


class _Progress:
    def __init__(self, total: int, workers: int) -> None:
        self.total, self.workers, self.done = total, workers, 0
        self.began = time.perf_counter()
        self.seconds: list[float] = []

    def __str__(self) -> str:
        elapsed = time.perf_counter() - self.began
        left = self.total - self.done
        eta = ""
        if self.seconds and left and self.workers:
            per_run = sum(self.seconds) / len(self.seconds)
            eta = f", about {_clock(per_run * -(-left // min(self.workers, left)))} left"
        return f"[{self.done}/{self.total} done, {_clock(elapsed)} elapsed{eta}]"


def _intent(cell: _Cell, overwrite: bool) -> str:
    if _resumable(cell.directory, cell.config):
        return f"resuming the unfinished run in {cell.directory}"
    replace = overwrite and _theirs(cell.directory) is not None
    return f"running into {cell.directory}" + (" (replacing the run of other settings there)" if replace else "")


def _run_cells(cells: Sequence[_Cell], launcher: Launcher, config: CompareConfig, log: Callable[[str], None],
               what: str = "") -> Iterator[tuple[_Cell, dict | None, str | None]]:
    """Every cell's results: reused where finished, else (unless ``--no-run``) run through the launcher.

    Yields ``(cell, results, None)`` for a finished run, ``(cell, None, error)`` for one that could not
    finish, as they come (reused ones first); cells left out under ``--no-run`` are not yielded.
    """
    progress = _Progress(len(cells), launcher.workers)
    todo = []
    for cell in cells:
        results = _reusable(cell.directory / "results.json", cell.config)
        if results is not None:
            progress.done += 1
            log(f"{what}{progress} {cell.name}: reusing {cell.directory / 'results.json'}")
            yield cell, results, None
        elif not config.run_missing:
            progress.done += 1
            log(f"{what}{progress} {cell.name}: no finished run in {cell.directory}, left out")
        else:
            todo.append(cell)
    if not todo:
        return
    serial = isinstance(launcher, InProcess)
    if not serial:
        log(f"{what}{len(todo)} run{'s' if len(todo) != 1 else ''} to do, {launcher.describe()}")

    def started(i: int, where: str) -> None:
        if serial:
            log(f"{what}{progress} {todo[i].name}: {_intent(todo[i], config.overwrite)}")
        elif where.startswith("job"):
            log(f"{what}{todo[i].name}: {where} ({_intent(todo[i], config.overwrite)})")

    jobs = [RunJob(cell.config, str(cell.directory), config.overwrite) for cell in todo]
    for i, outcome in launcher.map(execute_run if serial else ExecuteRun(), jobs, started):
        cell = todo[i]
        progress.done += 1
        value = outcome.value if outcome.error is None else {"error": outcome.error, "notes": []}
        for note in value["notes"]:
            log(f"{what}{cell.name}: {note}")
        if "seconds" in value:
            progress.seconds.append(value["seconds"])
        if value["error"] is not None:
            log(f"{what}{progress} {cell.name}: stopped: {value['error']}")
            yield cell, None, value["error"]
            continue
        results = value["results"]
        log(f"{what}{progress} {cell.name}: ACC {100 * results['average_accuracy']:.2f}%, "
            f"BWT {100 * results['backward_transfer']:+.2f} ({value['seconds']:.0f} s)")
        yield cell, results, None


def compare(config: CompareConfig, out: str | Path, log: Callable[[str], None] | None = None) -> dict:
    """Run every method on every seed; write comparison.json/.md and the plot into ``out``; return the summary.

    Before anything runs, every method's settings and options are checked, and a directory of ``out``
    holding a run of other settings, or a table of runs this comparison leaves out, is refused
    (``ValueError``) unless ``config.overwrite``. With ``config.tune`` the tuning trials run first and
    the evaluation runs' directories are checked once their settings are chosen. Progress goes to
    ``log``: runs done of the total, method and seed, time elapsed and an estimate of the time left.
    """
    from ..data.benchmarks import get_benchmark

    out = Path(out)
    log = log or (lambda _msg: None)
    checked = config.check()
    resolved = checked[config.methods[0]]
    launcher = make_launcher(config.launcher, config.jobs, config.slurm_settings(out)) if config.run_missing \
        else InProcess()  # --no-run: nothing is launched
    plans = _tuning_plans(config, out) if config.tune else {}
    known = [m for m in config.methods if not plans.get(m, {}).get("trials")]  # settings known before tuning
    _door(config, [c for p in plans.values() for c in p.get("cells", [])] + _grid_cells(config, out, known, {}), out)
    stream = get_benchmark(config.benchmark, n_tasks=config.tasks, seed=0, data_dir=config.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    input_shape = stream[0].input_shape
    n_classes = [t.n_classes for t in stream]

    record, chosen = _tune(config, plans, launcher, log, len(stream)) if config.tune else (_untuned(config), {})
    cells = _grid_cells(config, out, [m for m in config.methods if not record[m].get("left_out")], chosen)
    if len(known) < len(config.methods):  # the runs whose settings the tuning chose
        _door(config, [c for c in cells if c.key[0] not in known], out, table=False)
    found: dict[tuple, dict] = {}
    failed: dict[tuple, str] = {}
    fitted: dict[tuple, dict] = {}
    summary: dict = {}
    old_table = _tabulated(out)

    def write() -> None:
        nonlocal summary
        runs = {m: [found[(m, s)] for s in range(config.seeds) if (m, s) in found] for m in config.methods}
        footprints = {m: fitted[(m, rs[-1]["seed"])] for m, rs in runs.items() if rs}
        failures: dict[str, list[dict]] = {}
        for seed in range(config.seeds):  # grid order, whatever order the runs finished in
            for method in config.methods:
                if (method, seed) in failed:
                    failures.setdefault(method, []).append({"seed": seed, "error": failed[(method, seed)]})
        summary = _summary(config, resolved, len(stream), runs, footprints, out, failures, record)
        now = set(found)
        if now >= old_table or config.overwrite:  # never replace a table by one with fewer runs mid-way
            _write(summary, out)

    for cell, results, error in _run_cells(cells, launcher, config, log):
        if error is not None:
            failed[cell.key] = error
        else:
            found[cell.key] = results
            fitted[cell.key] = footprint(results, input_shape, n_classes)
        write()
    if not summary:
        raise FileNotFoundError(f"no finished run of these methods and seeds in {out}: nothing to tabulate")
    now = set(found)
    if not config.run_missing:
        _refuse_smaller_table(out, now, config.overwrite)
    if not now >= old_table:
        lost = ", ".join(f"{m} seed {s}" for m, s in sorted(old_table - now))
        log(f"note: {out / JSON_NAME} now leaves out {lost}, which the previous table held (not finished here)")
        _write(summary, out)
    return summary


def _grid_cells(config: CompareConfig, out: Path, methods: Sequence[str], chosen: dict[str, dict]) -> list[_Cell]:
    """The evaluation runs of ``methods``, seed-major (a cut-off comparison still has every method's first seeds)."""
    cells = []
    for seed in range(config.seeds):
        for method in config.methods:
            if method in methods:
                rc = tuning_.with_settings(config.run_config(method, seed), chosen.get(method, {}))
                cells.append(_Cell((method, seed), f"{method} seed {seed}", rc, out / method / f"s{seed}"))
    return cells


def _untuned(config: CompareConfig) -> dict[str, dict]:
    return {m: {"tuned": False, "options": dict(config.options.get(m, {}))} for m in config.methods}


def _tuning_plans(config: CompareConfig, out: Path) -> dict[str, dict]:
    """Per method: the space searched, the settings kept, the trial settings and their run directories."""
    plans = {}
    for method in config.methods:
        fixed = tuning_.fixed_settings(method, config.lr, config.l1, config.margin, config.options.get(method, {}))
        space = tuning_.search_space(method, fixed)
        trials = tuning_.trial_settings(method, space, config.tune)
        base = config.run_config(method, tuning_.TUNING_SEED)
        if config.tune_tasks is not None:
            base = dataclasses.replace(base, tasks=config.tune_tasks)
        cells = [_Cell((method, "trial", k), f"{method} trial {k} ({tuning_.describe(values)})",
                       tuning_.with_settings(base, values), out / "tuning" / method / f"trial-{k}")
                 for k, values in enumerate(trials)]
        plans[method] = {"space": space, "fixed": fixed, "trials": trials, "cells": cells}
    return plans


def _tune(config: CompareConfig, plans: dict[str, dict], launcher: Launcher, log: Callable[[str], None],
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
    for cell, results, error in _run_cells(cells, launcher, config, log, what="tuning "):
        if error is not None:
            errors[cell.key] = error
        else:
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


def _summary(config: CompareConfig, resolved: RunConfig, n_tasks: int, runs: dict[str, list[dict]],
             footprints: dict[str, dict], out: Path, failures: dict[str, list[dict]], tuning: dict[str, dict]) -> dict:
    what = {k: v for k, v in asdict(config).items() if k not in EXECUTION_FIELDS}  # not where the runs ran
    return {
        "benchmark": config.benchmark, "model": resolved.model, "n_tasks": n_tasks,
        "epochs": resolved.epochs, "seeds": list(range(config.seeds)),
        "config": what, "methods": aggregate(runs, footprints), "tuning": tuning,
        "runs": {m: [str(out / m / f"s{r['seed']}") for r in rs] for m, rs in runs.items() if rs},
        "finished": sum(len(rs) for rs in runs.values()), "planned": len(config.methods) * config.seeds,
        "failures": failures,
    }


def _write(summary: dict, out: Path) -> None:
    atomic_write_text(out / JSON_NAME, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / MARKDOWN_NAME, markdown_table(summary))
    plot(summary, out / PLOT_NAME)
