"""clnp: continual learning via neural pruning (Golkar, Kagan & Cho, arXiv 1903.04476).

A fixed-size network learns tasks in sequence. An L1 penalty makes most units idle; idle units are
pruned and stay free for later tasks; the rest are frozen, and their interference weights cut, so
earlier tasks' outputs never change: zero forgetting, bit for bit.

The packages, bottom to top (no import runs upwards):

* :mod:`clnp.core`: the mechanism (unit partition, masked layers, networks, sparsity, activity,
  pruning); knows nothing of files, data sets, the CLI or plots;
* :mod:`clnp.data`: tasks, data sets, benchmark streams;
* :mod:`clnp.methods`: CLNP and the baselines behind one interface, the one training loop;
* :mod:`clnp.experiments`: run configs, runs and run directories, checkpoints, comparisons;
* :mod:`clnp.report`, :mod:`clnp.export`, :mod:`clnp.cli`: on top.
"""

from .core.network import CLNPNet, build_model, cnn, mlp
from .core.partition import FREE
from .data.benchmarks import get_benchmark, permuted_digits, split_digits
from .data.tasks import Split, Task
from .experiments.metrics import average_accuracy, backward_transfer
from .export import export
from .methods.clnp import CLNP, CapacityError, CLNPConfig, TaskReport
from .methods.config import TrainConfig
from .version import __version__

__all__ = [
    "CLNP", "CLNPConfig", "CLNPNet", "CapacityError", "FREE", "Split", "Task", "TaskReport", "TrainConfig",
    "average_accuracy", "backward_transfer", "build_model", "cnn", "export", "get_benchmark", "mlp",
    "permuted_digits", "split_digits", "__version__",
]
