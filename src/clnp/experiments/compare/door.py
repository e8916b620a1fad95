"""What a comparison refuses before anything runs: replacing runs of other settings, a table with fewer runs,
a method that cannot learn on the model, and a symbolic link where it or one of its runs writes (never written
through)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ..identity import differences, same_run
from ..links import refuse_link, refuse_links
from ..results import recorded_config
from .cells import Cell
from .config import CompareConfig
from .output import JSON_NAME, OUTPUT_NAMES, tabulated


def refuse_before_running(config: CompareConfig, cells: Sequence[Cell], out: Path, table: bool = True) -> None:
    """Refuse (``ValueError``), before these cells run, to replace runs of other settings (and with ``table``
    a larger table), and a symbolic link where the comparison or one of its runs writes."""
    for name in OUTPUT_NAMES:
        refuse_link(out / name)
    conflicts = []
    for cell in cells:
        refuse_links(cell.directory)
        theirs = recorded_config(cell.directory)
        ours = asdict(cell.config.check())
        if theirs is not None and not same_run(ours, theirs):
            conflicts.append(f"{cell.directory} holds a run with other settings ({differences(ours, theirs)})")
    if conflicts and not config.overwrite:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ValueError(f"{conflicts[0]}{more}: choose another --out to keep both, or --overwrite to replace them")
    planned = {(m, s) for m in config.methods for s in range(config.seeds)}
    if table and config.run_missing:  # with --no-run nothing runs: refused at the end, if the table would shrink
        refuse_smaller_table(out, planned, config.overwrite)


def refuse_unbuildable(cells: Sequence[Cell], input_shape: Sequence[int]) -> None:
    """Refuse (``ValueError``), before anything runs, a method that cannot learn on this model: each method's
    learner is built once on the comparison's network (HAT refuses batch norm, CLNP's weight sparsity a graph),
    so that the refusal does not come after the other methods' runs."""
    from ...methods import build_method

    seen = set()
    for cell in cells:
        if cell.config.method in seen:
            continue
        seen.add(cell.config.method)
        cfg = cell.config.resolved()  # the benchmark's model where none is given
        assert cfg.model is not None
        try:
            build_method(cfg.method, cfg.model, tuple(input_shape), cfg.train_config(), cfg.method_options())
        except ValueError as err:
            raise ValueError(f"{cfg.method} cannot run on --model {cfg.model}: {err}") from None


def refuse_smaller_table(out: Path, kept: set[tuple[str, int]], overwrite: bool) -> None:
    """Refuse (``ValueError``) a table of the runs ``kept`` where ``out`` tabulates more, unless ``overwrite``."""
    dropped = sorted(tabulated(out) - kept)
    if dropped and not overwrite:
        names = ", ".join(f"{m} seed {s}" for m, s in dropped[:4]) + (" ..." if len(dropped) > 4 else "")
        raise ValueError(f"{out / JSON_NAME} tabulates runs this comparison leaves out ({names}): give the same "
                         "--methods and --seeds, choose another --out, or --overwrite to write the smaller table")
