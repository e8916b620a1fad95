"""The subcommands: each ``cmd_*`` takes the parsed arguments and returns the exit code; what the user got
wrong is a :class:`UsageError` (one line, exit code 2). Every heavy import (torch) is inside the command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..methods import add_plugins


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


RUN_DIR: list[Path | None] = [None]
"""The run directory of the command being run, for the messages of an interrupt."""


def cmd_run(args: argparse.Namespace) -> int:
    from ..experiments.config_sources import from_namespace
    from ..experiments.runner import finished_run, finished_run_of, resume, run
    from ..report import summary

    add_plugins(args.plugin or [])
    if args.resume:
        given = [k for k, v in vars(args).items()
                 if v not in (None, False)
                 and k not in ("resume", "no_progress", "data_dir", "device", "command", "func", "plugin")]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"--resume takes its settings from OUT/config.yaml; drop {flags} "
                             "(only --data-dir, --device, --no-progress and --plugin may change)")
        out = Path(args.resume)
        RUN_DIR[0] = out
        was_finished = finished_run(out) is not None
        results = resume(out, progress=False if args.no_progress else None, data_dir=args.data_dir,
                         device=args.device)
        if was_finished:
            print(summary(results))
            print(f"\n{out} holds a finished run: nothing to resume ({out / 'results.json'} left as it was)")
            return 0
    else:
        config, out_given = from_namespace(args)
        if args.option:
            config.extra = {**config.extra, **_run_options(args.option, config.method)}
        out = Path(out_given or f"runs/{config.benchmark}-{config.method}-s{config.seed}")
        RUN_DIR[0] = out
        same = None if args.overwrite else finished_run_of(out, config)
        if same is not None:  # the same run again: its results exist, nothing is run or rewritten
            print(summary(same))
            print(f"\n{out} already holds this run, finished, with the same settings: nothing was run or rewritten "
                  f"(results in {out / 'results.json'}; --overwrite runs it again)")
            return 0
        results = run(config, out, overwrite=args.overwrite)
    from ..engine import distributed

    if not distributed.is_main():  # under torchrun rank 0 speaks for the run
        return 0
    print(summary(results))
    print(f"\nresults written to {out / 'results.json'}")
    return 0


def _run_options(items: Sequence[str], method: str) -> dict:
    """``--option lambda=5`` or ``--option ewc.lambda=5`` for a run of ``method``: ``{"lambda": 5.0}``."""
    from ..experiments.compare import parse_options

    out: dict = {}
    for item in items:
        key = item.partition("=")[0]
        parsed = parse_options([item if "." in key else f"{method}.{item}"])
        for name, options in parsed.items():
            if name != method:
                raise UsageError(f"--option {item}: an option of {name}, but this run's method is {method}")
            out.update(options)
    return out


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from ..data.benchmarks import BENCHMARKS

    if args.download:
        from ..data.benchmarks import fetch_data

        for name in args.download:
            print(f"{name}: data ready ({', '.join(fetch_data(name, args.data_dir))})")
        return 0
    print(f"{'benchmark':<24}{'data here':<11}description / how to get the data / defaults of a run")
    for spec in BENCHMARKS.values():
        present = "yes" if spec.data_present(args.data_dir) else "no"
        print(f"{spec.name:<24}{present:<11}{spec.description}")
        print(f"{'':<35}get: {spec.how_to_get()}")
        print(f"{'':<35}defaults: {_defaults_text(spec)}")
    from ..experiments.config import method_defaults, shared_defaults
    from ..methods import names

    shared = " ".join(_flag(k, v) for k, v in shared_defaults().items() if v is not None)
    own_defaults = {name: method_defaults(name) for name in names()}
    own = "".join(f"\n{name} takes its own: {' '.join(_flag(k, v) for k, v in values.items())}"
                  for name, values in own_defaults.items() if values)
    print(f"\nevery benchmark (a benchmark sets only its model, epochs and batch size): {shared}{own}\n"
          "CLNP plans its capacity over the stream (--tasks): each task may keep an equal share of the free units "
          "of every layer,\nprunes its least active units towards that share between training epochs, and spends "
          "the margin only on\nwhat costs accuracy (docs/design.md, 'Capacity is a budget'); it fine-tunes for its "
          "own epochs (above) at\n0.3 x lr (unless --finetune-lr is given), falling to 0 along a cosine. Why these "
          "defaults (L1 on activations\nat 3e-3 times each layer's free share, relaxed where earlier tasks left their "
          "budgets unused, equal shares,\nannealing, the fine-tuning's rate, decay and length): bench/RESULTS.md, "
          "'The capacity plan'.")
    return 0


def _flag(key: str, value: object) -> str:
    return f"--{key.replace('_', '-')} {value:g}" if isinstance(value, float) else f"--{key.replace('_', '-')} {value}"


def _defaults_text(spec: object) -> str:
    """A benchmark's default run settings as flags (what `clnp run --benchmark NAME` uses unless told)."""
    values = dict(spec.defaults)  # type: ignore[attr-defined]
    parts = [f"--tasks {spec.length()} (at most {spec.max_tasks})"]  # type: ignore[attr-defined]
    parts += [_flag(k, v) for k, v in values.items()]
    return " ".join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import load_results, plots_text, read_log, report_text, write_plots

    results, run_dir = load_results(args.run_dir)
    print(report_text(results))
    if not args.no_plots:
        out = Path(args.plots_dir) if args.plots_dir else run_dir
        try:
            plots = write_plots(results, out, read_log(run_dir))
        except OSError as exc:
            raise UsageError(f"cannot write plots into {out}: {exc.strerror or exc}") from None
        print("\n" + plots_text(plots))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import JSON_NAME, MARKDOWN_NAME, PLOT_NAME, CompareConfig, compare, parse_options
    from ..experiments.config_sources import combine

    add_plugins(args.plugin or [])
    shared = ("benchmark", "tasks", "model", "epochs", "finetune_epochs", "batch_size", "optimizer", "lr",
              "finetune_lr", "weight_decay", "l1", "margin", "data_dir", "device", "precision")
    flags = {k: getattr(args, k) for k in shared if getattr(args, k) is not None}
    base, _ = combine(args.preset, args.config, flags)  # preset < config file < flags, checked as for `run`
    execution = ("jobs", "launcher", "slurm_partition", "slurm_time", "slurm_gpus_per_run", "slurm_cpus_per_run",
                 "slurm_log_dir")
    config = CompareConfig(
        methods=[m.strip() for m in args.methods.split(",") if m.strip()], seeds=args.seeds,
        **{k: getattr(base, k) for k in shared}, options=parse_options(args.option or []),
        run_missing=not args.no_run, overwrite=args.overwrite, tune=args.tune, tune_tasks=args.tune_tasks,
        **{k: getattr(args, k) for k in execution if getattr(args, k) is not None},
    )
    out = Path(args.out or f"runs/compare-{config.benchmark}")
    compare(config, out, log=lambda msg: print(msg, flush=True))
    print()
    print((out / MARKDOWN_NAME).read_text())
    print(f"written: {out / JSON_NAME}, {out / MARKDOWN_NAME}, {out / PLOT_NAME}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..exporting import export_run

    try:
        info = export_run(args.run_dir, args.task, args.format, args.output, fold_batch_norm=not args.keep_batch_norm)
    except RuntimeError as exc:  # e.g. the onnx packages are not installed
        raise UsageError(str(exc)) from None
    kept = ", ".join(f"{k}/{n}" for k, n in zip(info["units_kept"], info["units"], strict=True))
    print(f"task {info['task']}: units kept per layer {kept}; parameters {info['parameters']:,} "
          f"of {info['parameters_full']:,} ({info['parameters'] / info['parameters_full']:.1%})")
    for f in info["files"]:
        print(f"written {f}")
    return 0
