"""The ``clnp`` command line: ``clnp run``, ``clnp benchmarks``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .engine.precision import PRECISIONS
from .methods import DEFAULT_METHOD, add_plugins, builtin_names
from .version import __version__


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled as an interrupt (the task in progress is rolled back), exit code 143."""


BENCHMARK_NAMES = ("permuted-digits", "permuted-fashion-mnist", "permuted-mnist", "split-cifar10-100", "split-digits",
                   "split-digits-loader", "split-fashion-mnist", "split-mnist")
PRESET_NAMES = ("paper-pmnist", "split-cifar")
EXPORT_FORMATS = ("torchscript", "onnx", "state_dict")
METHOD_NAMES = builtin_names()
"""The names the parser offers, from the method registry's file names: building the parser imports no torch."""

_RUN_DIR: list[Path | None] = [None]
"""The run directory of the command being run, for the messages of an interrupt."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``clnp run: error: ... (see 'clnp run --help')``, exit code 2, no usage."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self._fail(self.prog, message)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # name the subcommand whose arguments they are not
            command = getattr(parsed, "command", None)
            self._fail(f"{self.prog} {command}" if command else self.prog,
                       f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _fail(self, prog: str, message: str) -> NoReturn:
        self.exit(2, f"{prog}: error: {message} (see '{prog} --help')\n")


def _os_error_text(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    path = exc.filename if exc.filename is not None else ""
    if exc.filename2:
        path = f"{path} -> {exc.filename2}"
    return f"{path}: {what}" if path else what


def _resume_hint(command: str) -> str:
    if command == "compare":
        return "; run the same 'clnp compare' again to continue (finished runs are reused, the interrupted one resumed)"
    out = _RUN_DIR[0]
    if command != "run" or out is None:
        return ""
    meta = out / "checkpoint" / "meta.json"
    try:
        import json

        step = json.loads(meta.read_text())["step"] if meta.is_file() else 0
    except (OSError, ValueError, KeyError, TypeError):
        step = 0
    kept = f"{step} finished task{'s' if step != 1 else ''} kept in {out / 'checkpoint'}" if step else \
        "no task had finished"
    return f" ({kept}); continue with: clnp run --resume {out}"


def _l1(text: str) -> float | list[float]:
    """``--l1``: one coefficient, or one per hidden layer (``3e-3,1e-2``)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or numbers separated by commas, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file with the same keys as these flags (snake_case); flags override it")
    p.add_argument("--preset", choices=PRESET_NAMES,
                   help="a published setting (overridden by --config, then by flags)")
    p.add_argument("--resume", metavar="OUT",
                   help="continue the run in directory OUT from its last finished task (reads OUT/config.yaml)")
    p.add_argument("--benchmark", default=None, metavar="NAME",
                   help=f"task stream, one of: {', '.join(BENCHMARK_NAMES)} (default: split-digits)")
    p.add_argument("--method", default=None, metavar="METHOD",
                   help=f"continual-learning method, one of: {', '.join(METHOD_NAMES)} (default: {DEFAULT_METHOD})")
    p.add_argument("--tasks", type=int, help="number of tasks (permuted benchmarks; a prefix of split ones)")
    p.add_argument("--model", help="network spec, e.g. mlp:256,256 or cnn:32,32,64,64/512[:bn]")
    p.add_argument("--epochs", type=int, help="training epochs per task")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs after pruning")
    p.add_argument("--batch-size", type=int, help="training minibatch size")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="optimiser (a fresh one per task and phase)")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--finetune-lr", type=float, help="learning rate of the fine-tuning after pruning (default: --lr)")
    p.add_argument("--weight-decay", type=float, help="weight decay (L2)")
    p.add_argument("--l1", type=_l1, help="per-unit L1 coefficient on hidden activations; one number, "
                   "or one per hidden layer separated by commas (e.g. 3e-3,1e-2)")
    p.add_argument("--margin", type=float, help="graceful-forgetting margin, in validation accuracy points")
    p.add_argument("--grow", action="store_true", default=None,
                   help="clnp: before a task, add free units to a layer that would not fit it (earlier tasks stay "
                        "bit-identical); --option max_growth=4 caps a layer at 4x its width")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--option", action="append", metavar="[METHOD.]NAME=VALUE",
                   help="a method option, e.g. lambda=1000 for --method ewc (repeatable; overrides 'extra:' of "
                        "--config; checked against the method's options before anything runs)")
    _add_plugin_argument(p)
    p.add_argument("--data-dir", help="directory holding downloaded data sets")
    p.add_argument("--out", help="run directory for results.json (default: runs/BENCHMARK-METHOD-sSEED); it must be "
                   "new or empty unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run (finished or not) in --out: removes only the files clnp wrote there")
    _add_device_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_plugin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", metavar="MODULE",
                   help="import MODULE first: a module that registers a method of its own (METHOD = "
                        "clnp.methods.register(Method(...))); repeatable; also read from $CLNP_PLUGINS")


def _add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="auto (default: CUDA when available, else the CPU), cpu, cuda, cuda:N or mps; under "
                        "torchrun, auto and cuda mean each rank's own GPU")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS),
                   help="32 (default), bf16-mixed or 16-mixed: autocast in training and evaluation")


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiments.config import from_namespace
    from .experiments.runner import finished_run, finished_run_of, resume, run
    from .report import summary

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
        _RUN_DIR[0] = out
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
        _RUN_DIR[0] = out
        same = None if args.overwrite else finished_run_of(out, config)
        if same is not None:  # the same run again: its results exist, nothing is run or rewritten
            print(summary(same))
            print(f"\n{out} already holds this run, finished, with the same settings: nothing was run or rewritten "
                  f"(results in {out / 'results.json'}; --overwrite runs it again)")
            return 0
        results = run(config, out, overwrite=args.overwrite)
    from .engine import distributed

    if not distributed.is_main():  # under torchrun rank 0 speaks for the run
        return 0
    print(summary(results))
    print(f"\nresults written to {out / 'results.json'}")
    return 0


def _run_options(items: Sequence[str], method: str) -> dict:
    """``--option lambda=5`` or ``--option ewc.lambda=5`` for a run of ``method``: ``{"lambda": 5.0}``."""
    from .experiments.compare import parse_options

    out: dict = {}
    for item in items:
        key = item.partition("=")[0]
        parsed = parse_options([item if "." in key else f"{method}.{item}"])
        for name, options in parsed.items():
            if name != method:
                raise UsageError(f"--option {item}: an option of {name}, but this run's method is {method}")
            out.update(options)
    return out


def _cmd_benchmarks(args: argparse.Namespace) -> int:
    from .data.benchmarks import BENCHMARKS

    if args.download:
        from .data.benchmarks import fetch_data

        for name in args.download:
            print(f"{name}: data ready ({', '.join(fetch_data(name, args.data_dir))})")
        return 0
    print(f"{'benchmark':<24}{'data here':<11}description / how to get the data / defaults of a run")
    for spec in BENCHMARKS.values():
        present = "yes" if spec.data_present(args.data_dir) else "no"
        print(f"{spec.name:<24}{present:<11}{spec.description}")
        print(f"{'':<35}get: {spec.how_to_get()}")
        print(f"{'':<35}defaults: {_defaults_text(spec)}")
    from .experiments.config import shared_defaults

    shared = " ".join(_flag(k, v) for k, v in shared_defaults().items() if v is not None)
    print(f"\nevery benchmark (a benchmark sets only its model, epochs and batch size): {shared}\n"
          "CLNP plans its capacity over the stream (--tasks): each task may keep an equal share of the free units "
          "of every layer\nand spends the margin only where it must to stay within that share (docs/design.md, "
          "'Capacity is a budget').")
    return 0


def _flag(key: str, value: object) -> str:
    return f"--{key.replace('_', '-')} {value:g}" if isinstance(value, float) else f"--{key.replace('_', '-')} {value}"


def _defaults_text(spec: object) -> str:
    """A benchmark's default run settings as flags (what `clnp run --benchmark NAME` uses unless told)."""
    values = dict(spec.defaults)  # type: ignore[attr-defined]
    parts = [f"--tasks {spec.length()} (at most {spec.max_tasks})"]  # type: ignore[attr-defined]
    parts += [_flag(k, v) for k, v in values.items()]
    return " ".join(parts)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import load_results, plots_text, read_log, report_text, write_plots

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


def _cmd_compare(args: argparse.Namespace) -> int:
    from .experiments.compare import JSON_NAME, MARKDOWN_NAME, PLOT_NAME, CompareConfig, compare, parse_options
    from .experiments.config import combine

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


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run several methods on the same stream and seeds; tabulate and plot them")
    p.add_argument("--config", metavar="FILE.yaml",
                   help="YAML file with the shared settings (the keys of 'clnp run --config'); flags override it")
    p.add_argument("--preset", choices=PRESET_NAMES,
                   help="a published setting (overridden by --config, then by flags)")
    p.add_argument("--benchmark", default=None, metavar="NAME",
                   help=f"task stream, one of: {', '.join(BENCHMARK_NAMES)} (default: split-digits)")
    p.add_argument("--methods", default="clnp,finetune,ewc,si",
                   help=f"comma-separated methods, of: {', '.join(METHOD_NAMES)} (default: clnp,finetune,ewc,si)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, 0..N-1 (default: 1)")
    p.add_argument("--out", help="output directory (default: runs/compare-BENCHMARK)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs of other settings in --out, and a table of more runs by this one")
    p.add_argument("--tasks", type=int, help="number of tasks")
    p.add_argument("--model", help="network spec shared by every method, e.g. mlp:1000,1000")
    p.add_argument("--epochs", type=int, help="training epochs per task, for every method")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs after pruning (clnp, packnet)")
    p.add_argument("--batch-size", type=int, help="training minibatch size, for every method")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="optimiser for every method")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--finetune-lr", type=float,
                   help="learning rate of the fine-tuning after pruning (clnp, packnet; default: --lr)")
    p.add_argument("--weight-decay", type=float, help="weight decay (L2) for every method")
    p.add_argument("--l1", type=_l1, help="CLNP's L1 coefficient, or one per hidden layer separated by commas "
                   "(other methods ignore it)")
    p.add_argument("--margin", type=float, help="CLNP's graceful-forgetting margin in points (others ignore it)")
    p.add_argument("--data-dir", help="directory holding downloaded data sets")
    _add_device_arguments(p)
    p.add_argument("--option", action="append", metavar="METHOD.NAME=VALUE",
                   help="a method option, e.g. ewc.lambda=1000 or packnet.prune=0.5 (repeatable; checked for every "
                        "method before anything runs)")
    _add_plugin_argument(p)
    p.add_argument("--no-run", action="store_true",
                   help="tabulate the runs already finished in --out; run nothing (e.g. after a cut-off)")
    p.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                   help="first select each method's own settings and learning rate, TRIALS trials per method from "
                        "its shipped search space, on a tuning stream (the benchmark at seed 1000) by validation "
                        "accuracy; the chosen settings are used and recorded (default: 0, no tuning)")
    p.add_argument("--tune-tasks", type=int, metavar="K",
                   help="tune on the first K tasks of the tuning stream (default: as many as evaluated; "
                        "3 is the protocol of Chaudhry et al. 2019)")
    g = p.add_argument_group("where the runs execute (the results do not depend on it)")
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="run N runs at once in worker processes on this machine (default: 1); each uses "
                        "cpu_count/N threads unless OMP_NUM_THREADS is set, and with --device cuda its own GPU")
    g.add_argument("--launcher", choices=("local", "slurm", "local-submitit"), default=None,
                   help="local (default): this machine; slurm: one Slurm job per run through submitit "
                        "(pip install 'clnp[slurm]'), waited for here; local-submitit: the slurm code path with "
                        "local processes instead of sbatch (for testing)")
    g.add_argument("--slurm-partition", metavar="NAME", help="Slurm partition of the jobs")
    g.add_argument("--slurm-time", type=int, metavar="MINUTES",
                   help="time limit of each job (default: 60); a run that reaches it is requeued and resumes")
    g.add_argument("--slurm-gpus-per-run", type=int, metavar="N", help="GPUs per job")
    g.add_argument("--slurm-cpus-per-run", type=int, metavar="N", help="CPU cores per job")
    g.add_argument("--slurm-log-dir", metavar="DIR", help="submitit's job files and logs (default: OUT/slurm-logs)")
    p.set_defaults(func=_cmd_compare)


def _cmd_export(args: argparse.Namespace) -> int:
    from .exporting import export_run

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


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write one task's units as a plain, compact model (no masks)")
    p.add_argument("run_dir", help="run directory written by 'clnp run --out' (reads its checkpoint/)")
    p.add_argument("--task", type=int, required=True, help="task id (0-based) to export")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript", help="file format (default: torchscript)")
    p.add_argument("--output", help="file to write (default: RUN_DIR/export/task-K.pt|.onnx|.safetensors)")
    p.add_argument("--keep-batch-norm", action="store_true",
                   help="keep batch norm as plain BatchNorm layers instead of folding it into the layer before")
    p.set_defaults(func=_cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=__name__.split(".")[0],
        description="Continual learning via neural pruning: zero-forgetting task-incremental training.")
    parser.add_argument("--version", action="version", version=f"clnp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="learn a benchmark's tasks in order and report accuracy and capacity")
    _add_run_arguments(p_run)
    p_run.set_defaults(func=_cmd_run)
    p_b = sub.add_parser("benchmarks", help="list the benchmarks")
    p_b.add_argument("--data-dir", help="directory holding downloaded data sets (default: $CLNP_DATA_DIR or ./data)")
    p_b.add_argument("--download", nargs="+", metavar="BENCHMARK",
                     help="download (and checksum) the data these benchmarks need into --data-dir")
    p_b.set_defaults(func=_cmd_benchmarks)
    p_r = sub.add_parser("report", help="print the tables of a finished run and plot them as PNG files")
    p_r.add_argument("run_dir", help="run directory written by 'clnp run --out' (or its results.json)")
    p_r.add_argument("--plots-dir", help="where to write the PNG plots (default: the run directory)")
    p_r.add_argument("--no-plots", action="store_true", help="print the tables only")
    p_r.set_defaults(func=_cmd_report)
    _add_compare_parser(sub)
    _add_export_parser(sub)
    return parser


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _RUN_DIR[0] = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    clean = False
    try:
        code = int(args.func(args))
        clean = True
        return code
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"clnp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"clnp {args.command}: terminated (SIGTERM){_resume_hint(args.command)}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"clnp {args.command}: interrupted{_resume_hint(args.command)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`clnp report RUN | head`): not an error. Point stdout at
        # /dev/null so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The file system refused (a read-only or full disk, a path through a file): one line, exit code 2;
        # writes are atomic, so what was there before (the last checkpoint) is intact.
        hint = _resume_hint(args.command) if args.command == "run" and _RUN_DIR[0] is not None and \
            (_RUN_DIR[0] / "checkpoint" / "meta.json").is_file() else ""
        print(f"clnp {args.command}: error: cannot write or read {_os_error_text(exc)}{hint}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Loaded only when something went wrong: `clnp --help` does not import torch.
        from .engine.devices import DeviceUnavailableError
        from .engine.learner import CapacityError

        if isinstance(exc, DeviceUnavailableError):
            print(f"clnp {args.command}: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, (CapacityError, FloatingPointError)):
            # The input was fine but the run cannot go on (a layer is full, the loss diverged): exit code 3.
            print(f"clnp {args.command}: stopped: {exc}", file=sys.stderr)
            return 3
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if "torch.distributed" in sys.modules:  # maybe a torchrun rank: leave the process group cleanly
            from .engine import distributed

            distributed.shutdown(clean=clean)


if __name__ == "__main__":
    sys.exit(main())
