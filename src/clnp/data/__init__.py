"""Tasks, data sets and benchmark streams.

| module | idea |
|---|---|
| :mod:`.tasks` | :class:`~.tasks.Task` and :class:`~.tasks.Split`, checked at the door |
| :mod:`.datasets` | data sets: digits, IDX (MNIST, Fashion-MNIST), CIFAR pickles, checked downloads |
| :mod:`.benchmarks` | named task streams (split-*, permuted-*, split-cifar10-100) |
"""
