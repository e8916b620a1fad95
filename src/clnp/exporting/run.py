"""Export a task of a finished CLNP run directory (``clnp export``): the network rebuilt from the run's
configuration and checkpoint, the task's compact model written beside it."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.network import CLNPNet
from .compact import export, n_parameters, used_units
from .files import FORMATS, SUFFIXES, save_export


def export_run(run_dir: str | Path, task: int, fmt: str, output: str | Path | None = None,
               fold_batch_norm: bool = True) -> dict:
    """Export task ``task`` of the CLNP run in ``run_dir`` (from its ``checkpoint/``); return a summary.

    The network is rebuilt from the run's configuration and checkpoint; the file goes to ``output``
    (default ``run_dir/export/task-K.pt|.pt2|.onnx|.safetensors``).
    """
    from dataclasses import fields

    from ..data.benchmarks import get_benchmark
    from ..experiments.checkpoint import has_checkpoint, load_checkpoint
    from ..experiments.config import RunConfig
    from ..experiments.run_files import CHECKPOINT_DIR
    from ..experiments.run_state import load_checked
    from ..experiments.rundir import refuse_link
    from ..methods import build_method

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if output is None:  # the run directory's own export/: never a link to a folder elsewhere
        refuse_link(run_dir / "export")
    ckpt = run_dir / CHECKPOINT_DIR
    if not has_checkpoint(ckpt):
        method = _results_method(run_dir)
        if method is not None and not _exports(method):
            raise ValueError(f"{run_dir} is a run of method {method!r}; only {_exporters()} networks can be exported")
        raise FileNotFoundError(f"no checkpoint in {ckpt}: expected a run directory written by 'clnp run --out'"
                                + (" (this run wrote none)" if method else ""))
    tensors, meta, _ = load_checkpoint(ckpt)
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in meta.get("config", {}).items() if k in names}).resolved()
    if not _exports(cfg.method):
        raise ValueError(f"{run_dir} is a run of method {cfg.method!r}; only {_exporters()} networks can be exported")
    n_done = len(meta.get("tasks", []))
    if not 0 <= task < n_done:
        raise ValueError(f"task {task} is not a finished task of {run_dir}: expected 0..{n_done - 1}")
    shape = meta.get("input_shape")
    if shape is None:  # older checkpoints: read it off the benchmark's first task
        shape = get_benchmark(cfg.benchmark, n_tasks=1, seed=cfg.seed, data_dir=cfg.data_dir)[0].input_shape
    assert cfg.model is not None
    learner = build_method(cfg.method, cfg.model, tuple(shape), cfg.train_config(), cfg.method_options())
    # The same consistency checks as a resume: owners, heads and shapes must fit the model and each other.
    load_checked(learner, tensors, meta.get("learner"), cfg.method, cfg.model, tuple(shape),
                 [int(t.get("n_classes", 0)) for t in meta.get("tasks", []) if isinstance(t, dict)], str(ckpt))
    net: CLNPNet = learner.net  # type: ignore[attr-defined]
    net.eval()
    model = export(net, task, fold_batch_norm=fold_batch_norm)
    path = Path(output) if output is not None else run_dir / "export" / f"task-{task}{SUFFIXES[fmt]}"
    files = save_export(model, path, fmt, net.input_shape)
    kept = [int(k.sum()) for k in used_units(net, task)]
    full = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("heads.")) + n_parameters(
        net.heads[task])
    return {"task": task, "format": fmt, "files": [str(f) for f in files], "units_kept": kept,
            "units": [o.numel() for o in net.owners], "parameters": n_parameters(model), "parameters_full": full}


def _exports(method: str) -> bool:
    """Whether the registry says runs of ``method`` can be exported (a network of :class:`CLNPNet` units)."""
    from ..methods import METHODS

    return method in METHODS and METHODS[method].exports


def _exporters() -> str:
    from ..methods import METHODS

    return " and ".join(name.upper() for name, method in METHODS.items() if method.exports)


def _results_method(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / "results.json").read_text())["method"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

