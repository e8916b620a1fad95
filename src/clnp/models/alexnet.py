"""The 5-layer AlexNet with batch norm of GPM (Saha et al. 2021) and WSN (Kang et al. 2022), as a feature extractor.

GPM's ``main_cifar100.py``: conv 64 (4x4), conv 128 (3x3), conv 256 (2x2), no padding, each followed
by batch norm, ReLU, dropout (0.2, 0.2, 0.5) and 2x2 max pooling; then fc 2048 and fc 2048, each with
batch norm, ReLU and dropout 0.5; one bias-free linear head per task. Layers carry no bias, as there.
Deviations: batch norm tracks running statistics (GPM's uses ``track_running_stats=False``, i.e.
batch statistics even at test time; clnp freezes running statistics per unit, which needs them),
the heads are left to clnp (the model returns ``[batch, 2048]``), and the input size is a parameter
(``input_size``, 32 in GPM) from which the first fc's width is computed (256 x 2 x 2 on 32x32).
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv_stage(in_channels: int, out_channels: int, kernel: int, dropout: float) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.Dropout(dropout), nn.MaxPool2d(2),
    ]


class AlexNet(nn.Module):
    """GPM/WSN's AlexNet without its heads: ``[batch, in_channels, S, S] -> [batch, 2048]``."""

    def __init__(self, in_channels: int = 3, input_size: int = 32):
        super().__init__()
        side = input_size
        for kernel in (4, 3, 2):
            side = (side - kernel + 1) // 2
        if side < 1:
            raise ValueError(f"alexnet needs inputs of at least 22x22 pixels, got {input_size}x{input_size}")
        self.features = nn.Sequential(
            *_conv_stage(in_channels, 64, 4, 0.2), *_conv_stage(64, 128, 3, 0.2), *_conv_stage(128, 256, 2, 0.5),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * side * side, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(2048, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(), nn.Dropout(0.5),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def alexnet(in_channels: int = 3, input_size: int = 32) -> nn.Module:
    """GPM/WSN's 5-layer AlexNet with batch norm, returning ``[batch, 2048]`` features."""
    return AlexNet(in_channels, input_size)
