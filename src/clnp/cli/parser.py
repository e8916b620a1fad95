"""The parser of the ``clnp`` command line: every subcommand's arguments and help, one-line errors.

Building it imports no torch (``clnp --help``): the names it offers come from tables and the method registry's
file names."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from ..engine.precision import PRECISIONS
from ..methods import DEFAULT_METHOD, builtin_names
from ..version import __version__
from .commands import cmd_benchmarks, cmd_compare, cmd_export, cmd_report, cmd_run

BENCHMARK_NAMES = ("permuted-digits", "permuted-fashion-mnist", "permuted-mnist", "split-cifar10-100", "split-cifar100",
                   "split-digits", "split-digits-loader", "split-fashion-mnist", "split-mnist", "split-tinyimagenet")
PRESET_NAMES = ("paper-pmnist", "split-cifar")
EXPORT_FORMATS = ("torchscript", "exported_program", "onnx", "state_dict")
DEFAULT_EXPORT_FORMAT = "exported_program"
"""``clnp export``'s format when ``--format`` is not given: a ``torch.export`` program, TorchScript's successor
(``torch.jit.load`` is deprecated in recent torch and warns; TorchScript stays a choice)."""
METHOD_NAMES = builtin_names()
"""The names the parser offers, from the method registry's file names: building the parser imports no torch."""


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
    _add_training_arguments(p, every_method=False)
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


def _add_training_arguments(p: argparse.ArgumentParser, every_method: bool) -> None:
    """The stream and training flags ``run`` and ``compare`` share (``every_method``: compare's texts say who reads
    each one)."""
    def who(run_text: str, compare_text: str) -> str:
        return compare_text if every_method else run_text

    p.add_argument("--tasks", type=int, help="number of tasks (permuted benchmarks; a prefix of split ones)")
    p.add_argument("--model", help=who("network spec", "network spec shared by every method") + ": mlp:256,256, "
                   "cnn:32,32,64,64/512[:bn], resnet18[:NF] (GEM's reduced ResNet-18, NF=20 base filters) or alexnet "
                   "(GPM's, with batch norm)")
    p.add_argument("--epochs", type=int, help="training epochs per task" + who("", ", for every method"))
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs after pruning (" + who("", "clnp, packnet; ")
                   + "default: 10 for clnp, 5 for packnet)")
    p.add_argument("--batch-size", type=int, help="training minibatch size" + who("", ", for every method"))
    p.add_argument("--optimizer", choices=["adam", "sgd"],
                   help="optimiser " + who("(a fresh one per task and phase)", "for every method (a fresh one per "
                                                                               "task and phase)"))
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--finetune-lr", type=float, help="learning rate of the fine-tuning after pruning (" +
                   who("", "clnp, packnet; ") + "default: 0.3 x --lr for clnp, --lr for packnet)")
    p.add_argument("--weight-decay", type=float, help="weight decay (L2)" + who("", " for every method"))
    p.add_argument("--l1", type=_l1, help=who("per-unit", "CLNP's per-unit") + " L1 coefficient on hidden "
                   "activations; one number, or one per hidden layer separated by commas (e.g. 3e-3,1e-2)" +
                   who("", "; other methods ignore it"))
    p.add_argument("--margin", type=float, help=who("", "CLNP's ") + "graceful-forgetting margin, in validation "
                   "accuracy points" + who("", " (other methods ignore it)"))


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
    _add_training_arguments(p, every_method=True)
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
    p.set_defaults(func=cmd_compare)


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write one task's units as a plain, compact model (no masks)")
    p.add_argument("run_dir", help="run directory written by 'clnp run --out' (reads its checkpoint/)")
    p.add_argument("--task", type=int, required=True, help="task id (0-based) to export")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=DEFAULT_EXPORT_FORMAT,
                   help=f"file format (default: {DEFAULT_EXPORT_FORMAT}, a torch.export program: "
                        "torch.export.load(path).module() is the model)")
    p.add_argument("--output", help="file to write (default: RUN_DIR/export/task-K.pt|.pt2|.onnx|.safetensors)")
    p.add_argument("--keep-batch-norm", action="store_true",
                   help="keep batch norm as plain BatchNorm layers instead of folding it into the layer before")
    p.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=__name__.split(".")[0],
        description="Continual learning via neural pruning: zero-forgetting task-incremental training.")
    parser.add_argument("--version", action="version", version=f"clnp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="learn a benchmark's tasks in order and report accuracy and capacity")
    _add_run_arguments(p_run)
    p_run.set_defaults(func=cmd_run)
    p_b = sub.add_parser("benchmarks", help="list the benchmarks")
    p_b.add_argument("--data-dir", help="directory holding downloaded data sets (default: $CLNP_DATA_DIR or ./data)")
    p_b.add_argument("--download", nargs="+", metavar="BENCHMARK",
                     help="download (and checksum) the data these benchmarks need into --data-dir")
    p_b.set_defaults(func=cmd_benchmarks)
    p_r = sub.add_parser("report", help="print the tables of a finished run and plot them as PNG files")
    p_r.add_argument("run_dir", help="run directory written by 'clnp run --out' (or its results.json)")
    p_r.add_argument("--plots-dir", help="where to write the PNG plots (default: the run directory)")
    p_r.add_argument("--no-plots", action="store_true", help="print the tables only")
    p_r.set_defaults(func=cmd_report)
    _add_compare_parser(sub)
    _add_export_parser(sub)
    return parser
