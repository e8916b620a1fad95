"""What a comparison runs (:class:`CompareConfig`), checked before anything runs; ``--option`` parsing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from ...methods import DEFAULT_METHOD
from .. import tuning as tuning_
from ..config import READ_ONLY_BY
from ..launchers import LAUNCHERS, SlurmSettings
from ..runner import RunConfig


@dataclass
class CompareConfig:
    """What a comparison runs: every method on every seed, the rest shared by all runs."""

    benchmark: str = "split-digits"
    methods: list[str] = field(default_factory=lambda: [DEFAULT_METHOD, "finetune", "ewc"])
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
        from ...data.benchmarks import BENCHMARKS
        from ...methods import METHODS

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
        """The run of ``method`` at ``seed``: every setting the comparison shares with a run (:func:`shared_with_runs`)
        as given here, the method's options as its ``extra``, no progress bar (the comparison reports progress)."""
        return RunConfig(**{name: getattr(self, name) for name in shared_with_runs()}, method=method, seed=seed,
                         progress=False, extra=dict(self.options.get(method, {})))

    def check(self) -> dict[str, RunConfig]:
        """Every method's settings checked (options included) before anything runs; the resolved config per method."""
        return {m: self.run_config(m, 0).check() for m in self.methods}

    def slurm_settings(self, out: Path) -> SlurmSettings:
        return SlurmSettings(partition=self.slurm_partition, time_min=self.slurm_time,
                             gpus_per_run=self.slurm_gpus_per_run, cpus_per_run=self.slurm_cpus_per_run,
                             log_dir=self.slurm_log_dir or str(out / "slurm-logs"))


RUN_ONLY_FIELDS = ("method", "seed", "grow", "method_revision", "progress", "extra")
"""RunConfig fields a comparison does not share with its runs: it sets them per run (the method, the seed, its
options as ``extra``, no progress bar) or leaves them to the run (the method's revision), and it does not offer
``grow`` (every method is compared on the same network, of a fixed size)."""


def shared_with_runs() -> list[str]:
    """The settings a comparison passes as given to every run: the RunConfig fields it declares too (every field of
    RunConfig but :data:`RUN_ONLY_FIELDS`; ``tests/test_compare.py`` holds the two classes to that)."""
    declared = {f.name for f in fields(CompareConfig)}
    return [f.name for f in fields(RunConfig) if f.name in declared]


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
