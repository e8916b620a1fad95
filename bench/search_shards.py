"""Time one evaluation of the pruning search under torchrun: shared out over the ranks, against whole.

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc-per-node 2 \
        bench/search_shards.py [--benchmark permuted-fashion-mnist] [--model mlp:1000,1000] [--repeats 20]

Every rank builds the same network (untrained: the time of a forward pass does not depend on the
weights) and task 0 of the benchmark, then times ``repeats`` evaluations of the validation split as
the search makes them (``CLNP._score``, each rank predicting its share of the inputs and all of them
gathered) and as every rank made them before (``predict_with_loss`` on the whole split). Rank 0
prints both, their ratio, and the accuracy each gives (the same but for float round-off in a
near-tie: the ranks hold identical networks). Run alone: the ranks need a core each.
"""

from __future__ import annotations

import argparse
import time

import torch

from clnp import CLNP, CLNPConfig, build_model, get_benchmark
from clnp.core.activity import predict_with_loss
from clnp.engine import distributed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="permuted-fashion-mnist")
    parser.add_argument("--model", default="mlp:1000,1000")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    distributed.init_from_env(torch.device("cpu"))
    task = get_benchmark(args.benchmark, n_tasks=1, seed=0)[0]
    torch.manual_seed(0)
    net = build_model(args.model, task.input_shape)
    learner = CLNP(net, CLNPConfig(device="cpu"))
    net.add_head(task.n_classes)
    keep = [torch.ones(w, dtype=torch.bool) for w in net.widths]

    def timed(fn) -> tuple[float, object]:
        distributed.barrier()
        started = time.perf_counter()
        for _ in range(args.repeats):
            out = fn()
        distributed.barrier()
        return (time.perf_counter() - started) / args.repeats, out

    whole_s, (predicted, _, _) = timed(lambda: predict_with_loss(net, 0, task.val.x, task.val.y, keep))
    shared_s, score = timed(lambda: learner._score(task, 0, keep, None, None, None))
    if distributed.is_main():
        accuracy = float((predicted == task.val.y).sum()) / len(task.val)
        print(f"{args.benchmark} task 0, {args.model}, {len(task.val)} validation inputs, "
              f"{distributed.world_size()} rank(s), {torch.get_num_threads()} thread(s) each")
        print(f"  whole on every rank: {1000 * whole_s:.1f} ms per evaluation")
        print(f"  shared out:          {1000 * shared_s:.1f} ms per evaluation  ({whole_s / shared_s:.2f}x faster)")
        print(f"  accuracy {score.accuracy:.4f} shared out, {accuracy:.4f} whole")
    distributed.shutdown(clean=True)


if __name__ == "__main__":
    main()
