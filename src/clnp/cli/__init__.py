"""The ``clnp`` command line (``clnp run``, ``benchmarks``, ``report``, ``compare``, ``export``).

* :mod:`.parser`: :func:`build_parser`, every subcommand's arguments and help; imports no torch (``clnp --help``);
* :mod:`.commands`: what each subcommand does (``cmd_run``, ...), and :class:`UsageError`;
* :mod:`.entry`: :func:`main`, the entry point: the subcommand run, errors as one line and an exit code;
* :mod:`.__main__`: ``python -m clnp.cli``.
"""

from .commands import UsageError
from .entry import Terminated, main
from .parser import BENCHMARK_NAMES, EXPORT_FORMATS, METHOD_NAMES, PRESET_NAMES, build_parser

__all__ = ["BENCHMARK_NAMES", "EXPORT_FORMATS", "METHOD_NAMES", "PRESET_NAMES", "Terminated", "UsageError",
           "build_parser", "main"]
