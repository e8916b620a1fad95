"""Continual-learning metrics (Lopez-Paz & Ranzato 2017) over an accuracy matrix.

``R[i][j]`` is the test accuracy on task ``j`` after learning task ``i`` (``None`` for ``j > i``).
"""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]


def _last_row(matrix: Matrix) -> list[float]:
    if not matrix:
        raise ValueError("the accuracy matrix is empty")
    row = [v for v in matrix[-1] if v is not None]
    if len(row) != len(matrix):
        raise ValueError(f"the last row must hold {len(matrix)} accuracies, got {len(row)}")
    return row


def average_accuracy(matrix: Matrix) -> float:
    """ACC: mean accuracy over all tasks after the last one is learned."""
    row = _last_row(matrix)
    return sum(row) / len(row)


def backward_transfer(matrix: Matrix) -> float:
    """BWT: mean over earlier tasks of (final accuracy - accuracy right after learning it).

    Negative values are forgetting; 0.0 for a single task. Exact differences are summed, so a
    method that forgets nothing scores exactly 0.0.
    """
    last = _last_row(matrix)
    t = len(matrix)
    if t < 2:
        return 0.0
    diffs = [last[j] - matrix[j][j] for j in range(t - 1)]  # type: ignore[operator]
    return sum(diffs) / (t - 1)


def lower_triangle(rows: Sequence[Sequence[float]], n_tasks: int) -> list[list[float | None]]:
    """Pad rows of growing length to a square matrix with ``None`` above the diagonal."""
    return [list(r) + [None] * (n_tasks - len(r)) for r in rows]
