"""Small modules for tests/test_import.py's `package.module:callable` sources."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet()


class WithPixelShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(x)


def with_pixel_shuffle() -> nn.Module:
    return WithPixelShuffle()


def not_a_module() -> dict:
    return {}
