"""The L1 activity penalty's gradient, added in place during the backward pass, is the penalty's true gradient."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import clnp
from clnp.core.sparsity import l1_activity_penalty, l1_unit_weights

NETWORKS = {
    "mlp_relu": lambda: clnp.mlp(64, (32, 24), input_shape=(1, 8, 8)),
    "mlp_tanh": lambda: clnp.CLNPNet([nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 24), nn.Tanh()],
                                     input_shape=(1, 8, 8)),
    "cnn_bn": lambda: clnp.cnn((1, 8, 8), channels=(8, 8), dense=(16,), batch_norm=True),
}


@pytest.mark.parametrize("arch", NETWORKS)
def test_fused_l1_gradient_equals_the_gradient_of_the_penalty(arch):
    torch.manual_seed(0)
    net = NETWORKS[arch]()
    net.add_head(3)
    net.assign_units_(0, [torch.rand(o.numel()) < 0.4 for o in net.owners])  # task 0 owns some units
    net.add_head(4)
    net.train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    coefs = [3e-2] * len(net.blocks)
    trainable = [b.layer.train_rows for b in net.blocks]
    nonneg = net.nonnegative_activity()
    params = net.trainable_parameters(1)
    state = {k: v.clone() for k, v in net.state_dict().items()}

    logits, acts = net.forward_with_activity(x, 1)
    reference = F.cross_entropy(logits, y) + l1_activity_penalty(acts, coefs, trainable, nonneg)
    expected = torch.autograd.grad(reference, params)

    net.load_state_dict(state)  # the same batch-norm statistics for the second pass
    logits, acts = net.forward_with_activity(x, 1, l1_weights=l1_unit_weights(coefs, trainable))
    with torch.no_grad():
        penalty = l1_activity_penalty(acts, coefs, trainable, nonneg)
    fused = F.cross_entropy(logits, y) + penalty
    got = torch.autograd.grad(fused, params)

    assert torch.allclose(fused, reference)
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-6, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in got)
