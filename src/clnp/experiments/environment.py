"""What a run ran on: library versions, the processor or accelerator, threads and ranks, for ``results.json``.

The same code, settings and seed give bit-identical results on one machine, but not across machines: the kernels
torch picks for a processor's vector instructions round differently. Measured (bench/RESULTS.md, "The capacity
plan", thirteenth session): ``clnp run --benchmark split-digits --seed 0``, one thread, scored 99.82 % on the
machine of the twelfth session and 100.00 % on the thirteenth's, with the same commit. So a run records where it
ran, and a comparison of figures from two machines can be told from one of two settings: ``results.json`` holds the
environment of the process that finished the run, and each task's report the :func:`machine_label` of the process
that learned it (a run resumed on another machine learns its later tasks there).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

from ..version import __version__


def processor_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows), or ``""``."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels use here (``AVX512``, ``AVX2``, ``DEFAULT``...), or ``""``
    where this torch cannot say."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return ""


def describe_environment(device: torch.device | str, world_size: int = 1) -> dict:
    """The environment of this process as a JSON object: versions (clnp, torch, Python), platform, processor and
    torch's CPU kernels, threads, the device (with the accelerator's name) and the number of ranks."""
    device = torch.device(device)
    accelerator = ""
    if device.type == "cuda" and torch.cuda.is_available():
        accelerator = torch.cuda.get_device_name(device)
    return {
        "clnp": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform} {platform.machine()}",
        "processor": processor_name(),
        "cpu_capability": cpu_capability(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "accelerator": accelerator,
        "world_size": world_size,
    }


UNRECORDED = "an unrecorded machine"
"""Where results written before runs recorded their environment were made."""


def machine_label(environment: object) -> str | None:
    """What decides a run's numbers beyond its settings: the accelerator, or the processor with torch's CPU kernels;
    and torch's version. None for results written before runs recorded their environment."""
    if not isinstance(environment, dict) or not environment:
        return None
    accelerator = environment.get("accelerator")
    where = accelerator or environment.get("processor") or "an unnamed processor"
    capability = environment.get("cpu_capability")
    if capability and not accelerator:
        where += f" ({capability} kernels)"
    return f"{where}, torch {environment.get('torch', '?')}"


def task_machines(results: dict) -> list[str]:
    """Per task of a run's results, the machine that learned it (``UNRECORDED`` where the task does not say)."""
    return [str(t.get("machine") or UNRECORDED) if isinstance(t, dict) else UNRECORDED
            for t in results.get("tasks") or []]


__all__ = ["UNRECORDED", "cpu_capability", "describe_environment", "machine_label", "processor_name", "task_machines"]
