"""Tasks, data sets and benchmark streams.

| module | idea |
|---|---|
| :mod:`.tasks` | :class:`~.tasks.Task` and :class:`~.tasks.Split`, checked at the door |
| :mod:`.datasets` | data sets (digits, MNIST, Fashion-MNIST, CIFAR, Tiny ImageNet): where each is and how to get it |
| :mod:`.files` | data files read and fetched with checks: IDX, CIFAR pickles, JPEGs, MD5-checked downloads, safe tar |
| :mod:`.streams` | a data set as a task stream: class groups, pixel permutations, the validation split |
| :mod:`.benchmarks` | named task streams (split-*, permuted-*, split-cifar10-100), a run's defaults on each |
"""
