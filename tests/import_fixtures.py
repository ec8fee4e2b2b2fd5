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


def small_convnext() -> torch.nn.Module:
    """torchvision's own ConvNeXt class at a size the suite can afford: CNBlocks with their
    channels-last LayerNorm and Linear layers, layer_scale and stochastic depth."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    torch.manual_seed(3)
    model = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)], stochastic_depth_prob=0.1, num_classes=7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layer_scale"):
                parameter.uniform_(0.5, 1.5)  # not the 1e-6 it starts at, so the residual branch counts
    return model
