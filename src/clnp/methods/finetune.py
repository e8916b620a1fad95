"""``finetune``: plain sequential training of one multi-head network, nothing against forgetting.

The lower bound: every task trains the whole shared trunk plus its own head, so earlier tasks'
features drift freely.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine.config import TrainConfig
from ..engine.method import Method
from .common.plain_net import PlainNet
from .common.sequential import SequentialLearner


class Finetune(SequentialLearner):
    method = "finetune"


def build(model: str, input_shape: Sequence[int], config: TrainConfig, options: dict) -> Finetune:
    return Finetune(PlainNet(model, input_shape), config)


METHOD = Method(
    name="finetune", build=build, summary="sequential training, nothing against forgetting (lower bound)",
    # Sequential training: no own setting, the learning rate only.
)
