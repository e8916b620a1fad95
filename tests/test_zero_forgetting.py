"""The central promise: learning later tasks never changes an earlier task's outputs, bit for bit."""

import pytest
import torch

import clnp
from clnp.core.layers import MaskedBatchNorm
from clnp.core.partition import cut_mask, expand_owner

from .conftest import quick_config

NETWORKS = {
    "mlp": lambda: clnp.mlp(64, (64, 48), input_shape=(1, 8, 8)),
    "mlp_bn_dropout": lambda: clnp.mlp(64, (64, 48), batch_norm=True, dropout=0.1, input_shape=(1, 8, 8)),
    "cnn": lambda: clnp.cnn((1, 8, 8), channels=(16, 16), dense=(32,)),
    "cnn_bn": lambda: clnp.cnn((1, 8, 8), channels=(16, 16), dense=(32,), batch_norm=True),
}
OPTIMISERS = {
    "sgd_momentum_wd": dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam_wd": dict(optimizer="adam", lr=1e-3, weight_decay=1e-3),
}


@pytest.mark.parametrize("opt", OPTIMISERS)
@pytest.mark.parametrize("arch", NETWORKS)
def test_earlier_tasks_outputs_are_bit_identical_after_later_tasks(arch, opt, digit_tasks):
    torch.manual_seed(0)
    net = NETWORKS[arch]()
    learner = clnp.CLNP(net, quick_config(epochs=4, **OPTIMISERS[opt]))
    probe = torch.rand(50, 1, 8, 8)
    recorded = []
    for t, task in enumerate(digit_tasks):
        learner.learn(task)
        net.eval()
        with torch.no_grad():
            recorded.append(net(probe, t).clone())
            for earlier in range(t):
                assert torch.equal(net(probe, earlier), recorded[earlier]), f"task {earlier} changed after task {t}"


def test_frozen_parameters_and_batchnorm_statistics_never_move(digit_tasks):
    net = NETWORKS["cnn_bn"]()
    learner = clnp.CLNP(net, quick_config(epochs=3, optimizer="sgd", lr=0.05, weight_decay=1e-2))
    learner.learn(digit_tasks[0])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    owned = [o == 0 for o in net.owners]
    learner.learn(digit_tasks[1])
    for i, block in enumerate(net.blocks):
        rows = owned[i]
        w_key = f"blocks.{i}.layer.weight"
        assert torch.equal(net.state_dict()[w_key][rows], before[w_key][rows])
        for bn in block.batch_norms():
            assert isinstance(bn, MaskedBatchNorm)
            prefix = next(name for name, m in net.named_modules() if m is bn)
            for stat in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(getattr(bn, stat)[rows], before[f"{prefix}.{stat}"][rows]), stat


def test_cut_weights_are_exactly_zero_after_every_task(digit_tasks):
    net = NETWORKS["cnn"]()
    learner = clnp.CLNP(net, quick_config(epochs=3))
    for task in digit_tasks:
        learner.learn(task)
        owner_in = None
        for block in net.blocks:
            layer = block.layer
            oin = None if owner_in is None else expand_owner(owner_in, layer.in_features_count())
            cut = cut_mask(oin, layer.owner)
            w = layer.weight if layer.weight.dim() == 2 else layer.weight.flatten(2).abs().sum(2)
            assert not w[cut.expand_as(w)].any()
            owner_in = layer.owner
        for head in net.heads:
            cut = cut_mask(expand_owner(owner_in, net.feature_dim), head.owner)
            assert not head.weight[cut.expand_as(head.weight)].any()


def test_forward_does_not_mutate_weights(digit_tasks):
    net = NETWORKS["mlp"]()
    learner = clnp.CLNP(net, quick_config(epochs=2))
    learner.learn(digit_tasks[0])
    net.add_head(2)
    net.train()
    before = [p.clone() for p in net.parameters()]
    net(torch.rand(8, 1, 8, 8), 1).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_gradients_of_frozen_weights_are_zero(digit_tasks):
    net = NETWORKS["mlp"]()
    learner = clnp.CLNP(net, quick_config(epochs=8))  # long enough to learn: an untrained task keeps no unit
    learner.learn(digit_tasks[0])
    net.reset_free_units_()
    net.add_head(2)
    assert all(p.grad is None for p in net.parameters())
    net(torch.rand(8, 1, 8, 8), 1).sum().backward()
    for block in net.blocks:
        owned = block.layer.owner != clnp.FREE
        assert owned.any()
        assert not block.layer.weight.grad[owned].any()
        assert not block.layer.bias.grad[owned].any()
