"""Data-parallel training over ``torch.distributed``: what the one loop and the methods need of it.

A run under ``torchrun`` is one process per rank, each holding the whole task stream and an
identical network. The loop (:func:`clnp.engine.loop.fit`) wraps the trained module in
:class:`~torch.nn.parallel.DistributedDataParallel` and reads each rank's share of every epoch
through a :class:`~torch.utils.data.distributed.DistributedSampler`; DDP all-reduces the gradients,
so every rank takes the same optimiser step. Everything else keeps the ranks identical by
construction, with torch.distributed's own collectives:

* every rank holds the whole validation set; the pruning search, which evaluates it many times,
  shares each evaluation out (each rank predicts its :func:`shard` of the inputs, and
  :func:`gather_rows` gives every rank all the predictions), as does CLNP's validation after each
  epoch; the one-off evaluations run whole on every rank; a decision that evaluations drive
  (CLNP's pruning masks, its fine-tuning check) is taken from rank 0 with :func:`agree` and
  :func:`agree_tensors_`, so float noise between devices can never split the partition;
* batch-norm running statistics are broadcast from rank 0 at the end of every phase;
* after every task the runner compares a digest of every rank's learned state (:func:`check_in_step`).

Nothing here runs without an initialised process group: a single process takes none of these paths.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    """Whether this process is one rank of an initialised process group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0, or a single process: the one that writes files and prints results."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher) set ``WORLD_SIZE`` > 1 for this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK")
    return None if value is None else int(value)


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (``nccl`` on CUDA, else ``gloo``)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def shutdown(*, clean: bool) -> None:
    """Leave the process group, if this process joined one.

    After a clean finish every rank first waits for the others (rank 0 still writes the results), and
    lingering DDP wrappers are collected, so no gloo or nccl work is alive when the group goes: a rank
    that left first and was torn down with such work pending aborted at exit ("terminate called
    without an active exception"). After an error the ranks may be out of step, so nobody waits.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def agree(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object without tensors); ``value`` itself alone."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree_tensors_(tensors: Sequence[Tensor]) -> None:
    """Overwrite ``tensors`` in place with rank 0's (booleans travel as bytes; gloo cannot reduce bools)."""
    if not is_distributed():
        return
    for t in tensors:
        if t.dtype == torch.bool:
            carrier = t.to(torch.uint8)
            dist.broadcast(carrier, src=0)
            t.copy_(carrier.bool())
        else:
            dist.broadcast(t, src=0)


def _share(n: int, r: int, w: int) -> slice:
    """Rank ``r``'s contiguous share of ``n`` rows among ``w`` ranks."""
    return slice(r * n // w, (r + 1) * n // w)


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (every row in a single process)."""
    if not is_distributed():
        return slice(0, n)
    return _share(n, rank(), world_size())


def gather_rows(part: Tensor, n: int, device: torch.device) -> Tensor:
    """Every rank's :func:`shard` of ``n`` rows, in rank order, on every rank (``part`` itself alone).

    The collective runs on ``device`` (NCCL needs the GPU); the result comes back where ``part`` was.
    """
    if not is_distributed():
        return part
    w = world_size()
    sizes = [share.stop - share.start for share in (_share(n, r, w) for r in range(w))]
    if part.shape[0] != sizes[rank()]:
        raise ValueError(f"rank {rank()} holds {part.shape[0]} rows; its shard of {n} is {sizes[rank()]}")
    padded = torch.zeros((max(sizes), *part.shape[1:]), dtype=part.dtype, device=device)
    padded[:part.shape[0]] = part.to(device)
    pieces = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)]).to(part.device)


def sum_scalar(value: Tensor) -> Tensor:
    """The sum of a 0-d tensor over the ranks (once per epoch: the loss for the log and the NaN check)."""
    if is_distributed():
        value = value.clone()
        dist.all_reduce(value)
    return value


@torch.no_grad()
def agree_batch_norm_(module: nn.Module) -> None:
    """Rank 0's batch-norm running statistics on every rank (each rank saw only its share of the batches)."""
    if not is_distributed():
        return
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            agree_tensors_([t for t in (m.running_mean, m.running_var, m.num_batches_tracked) if t is not None])


def digest(tensors: dict[str, Tensor]) -> str:
    """A SHA-256 of named tensors' bytes (their order, names, dtypes and shapes included)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim: a 1-vector
    return h.hexdigest()


def check_in_step(tensors: dict[str, Tensor], what: str) -> None:
    """Raise ``RuntimeError`` on every rank if the ranks' ``tensors`` are not bit-identical."""
    if not is_distributed():
        return
    mine = digest(tensors)
    every: list[str | None] = [None] * world_size()
    dist.all_gather_object(every, mine)
    if len(set(every)) != 1:
        raise RuntimeError(f"{what}: the ranks' states differ (digests {', '.join(str(d)[:12] for d in every)}); "
                           "data-parallel training must keep them identical")


__all__ = ["agree", "agree_batch_norm_", "agree_tensors_", "barrier", "check_in_step", "digest", "init_from_env",
           "is_distributed", "is_main", "launched_by_torchrun", "local_rank", "rank", "shutdown", "sum_scalar",
           "world_size"]
