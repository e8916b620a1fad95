"""The mechanism of CLNP: unit partition, masked layers, networks, sparsity, activity and pruning.

Nothing here knows of files, data sets, methods, the CLI or plots.

| module | idea |
|---|---|
| :mod:`.partition` | owner vectors (unit -> task or ``FREE``) and the masks they imply |
| :mod:`.layers` | masked ``Linear``/``Conv2d``/batch norm: masks as buffers, frozen values out of reach |
| :mod:`.network` | :class:`~.network.CLNPNet`: stem, prunable blocks, one head per task; ``mlp``, ``cnn`` |
| :mod:`.graph` | any traceable ``nn.Module`` read as CLNP units: prunable layers, unit groups, input maps (torch.fx) |
| :mod:`.graph_net` | :class:`~.graph_net.GraphNet`: the ``CLNPNet`` of a traced model (unit sets, taps, column cuts) |
| :mod:`.sparsity` | the L1 penalty on hidden activations |
| :mod:`.activity` | unit activity statistics, accuracy of a head, the search's cache |
| :mod:`.modes` | evaluation mode for a while (the one save-and-restore of a module's training mode) |
| :mod:`.pruning` | the choice of units to prune under the graceful-forgetting margin |
| :mod:`.capacity` | the capacity plan (tasks to plan for, each layer's budget) and the forecast |
"""
