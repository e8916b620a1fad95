import torch

from clnp.core.partition import FREE, cut_mask, expand_owner, live_units


def test_cut_rule_follows_the_weight_partition_table():
    owner_in = torch.tensor([0, 1, FREE, 0])
    owner_out = torch.tensor([0, 1, FREE])
    cut = cut_mask(owner_in, owner_out)
    # unit owned by task 0 reads only task-0 inputs; task 1 reads tasks 0 and 1; free units read all.
    assert cut.tolist() == [
        [False, True, True, False],
        [False, False, True, False],
        [False, False, False, False],
    ]


def test_network_inputs_are_never_cut():
    assert not cut_mask(None, torch.tensor([0, FREE, 2])).any()


def test_flattened_conv_features_belong_to_their_channel():
    assert expand_owner(torch.tensor([0, FREE]), 6).tolist() == [0, 0, 0, FREE, FREE, FREE]


def test_live_units_of_a_task_are_its_own_and_earlier_ones():
    owner = torch.tensor([0, 1, 2, FREE])
    assert live_units(owner, 1).tolist() == [True, True, False, False]
