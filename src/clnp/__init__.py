"""clnp: continual learning via neural pruning (Golkar, Kagan & Cho, arXiv 1903.04476).

A fixed-size network learns tasks in sequence. An L1 penalty makes most units idle; idle units are
pruned and stay free for later tasks; the rest are frozen, and their interference weights cut, so
earlier tasks' outputs never change: zero forgetting, bit for bit.
"""

__version__ = "0.1.0"

from .benchmarks import get_benchmark, permuted_digits, split_digits
from .export import export
from .metrics import average_accuracy, backward_transfer
from .network import CLNPNet, build_model, cnn, mlp
from .partition import FREE
from .tasks import Split, Task
from .trainer import CLNP, CapacityError, CLNPConfig, TaskReport

__all__ = [
    "CLNP", "CLNPConfig", "CLNPNet", "CapacityError", "FREE", "Split", "Task", "TaskReport",
    "average_accuracy", "backward_transfer", "build_model", "cnn", "export", "get_benchmark", "mlp",
    "permuted_digits", "split_digits",
]
