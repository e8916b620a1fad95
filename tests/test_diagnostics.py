import torch

import clnp

from .conftest import quick_config


def test_capacity_diagnostics_add_up_per_layer(digit_tasks):
    torch.manual_seed(0)
    net = clnp.mlp(64, (64, 64), input_shape=(1, 8, 8))
    learner = clnp.CLNP(net, quick_config())
    for task in digit_tasks:
        learner.learn(task)
    for row in learner.capacity():
        assert len(row["owned_by_task"]) == len(digit_tasks)
        assert row["units"] - sum(row["owned_by_task"]) == row["free_after_task"][-1]
        assert row["reused_by_task"][0] == 0  # the first task has no old units to reuse
        for t in range(1, len(digit_tasks)):
            assert 0 <= row["reused_by_task"][t] <= row["units"] - row["free_after_task"][t - 1]


def test_state_dict_round_trip_restores_every_task(digit_tasks):
    torch.manual_seed(0)
    net = clnp.cnn((1, 8, 8), channels=(16, 16), dense=(16,), batch_norm=True)
    learner = clnp.CLNP(net, quick_config(epochs=4, margin=20.0))
    for task in digit_tasks[:2]:
        learner.learn(task)
    copy = clnp.cnn((1, 8, 8), channels=(16, 16), dense=(16,), batch_norm=True)
    copy.add_head(2)
    copy.add_head(2)
    copy.load_state_dict(net.state_dict())
    net.eval()
    copy.eval()
    x = torch.rand(20, 1, 8, 8)
    for t in range(2):
        assert torch.equal(net(x, t), copy(x, t))
    assert [o.tolist() for o in copy.owners] == [o.tolist() for o in net.owners]
