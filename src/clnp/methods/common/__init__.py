"""What several baselines share, not a method itself (the registry skips this package).

* :mod:`.plain_net`: :class:`~.plain_net.PlainNet`, the plain multi-head network of the baselines;
* :mod:`.sequential`: :class:`~.sequential.SequentialLearner`, sequential multi-head training with hooks, the
  base of every baseline, and the helpers of their saved state;
* :mod:`.quadratic`: the weight-elasticity penalty and importance estimates of EWC, online EWC, SI and MAS.
"""
