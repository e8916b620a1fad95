"""``clnp``'s entry point: :func:`main` parses the command line, runs the subcommand, and turns what went wrong
into one line on stderr and an exit code (2: bad input or a refused file; 3: the run cannot go on; 130/143: an
interrupt or SIGTERM, with how to continue)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from .commands import RUN_DIR, UsageError
from .parser import build_parser


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled as an interrupt (the task in progress is rolled back), exit code 143."""


def _os_error_text(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    path = exc.filename if exc.filename is not None else ""
    if exc.filename2:
        path = f"{path} -> {exc.filename2}"
    return f"{path}: {what}" if path else what


def _resume_hint(command: str) -> str:
    if command == "compare":
        return "; run the same 'clnp compare' again to continue (finished runs are reused, the interrupted one resumed)"
    out = RUN_DIR[0]
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


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    RUN_DIR[0] = None
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
        hint = _resume_hint(args.command) if args.command == "run" and RUN_DIR[0] is not None and \
            (RUN_DIR[0] / "checkpoint" / "meta.json").is_file() else ""
        print(f"clnp {args.command}: error: cannot write or read {_os_error_text(exc)}{hint}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Loaded only when something went wrong: `clnp --help` does not import torch.
        from ..engine.devices import DeviceUnavailableError
        from ..engine.learner import CapacityError

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
            from ..engine import distributed

            distributed.shutdown(clean=clean)
