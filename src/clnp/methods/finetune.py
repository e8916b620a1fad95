"""``finetune``: plain sequential training of one multi-head network, nothing against forgetting.

The lower bound: every task trains the whole shared trunk plus its own head, so earlier tasks'
features drift freely.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import TrainConfig
from .plain_net import PlainNet
from .sequential import SequentialLearner


class Finetune(SequentialLearner):
    method = "finetune"


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> Finetune:
    return Finetune(PlainNet(model, input_shape), config)
