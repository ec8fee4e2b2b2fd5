"""The few torch modules cnnspec needs that torch.nn does not have: merges of several inputs, and
ConvNeXt's channel LayerNorm and layer scale, a channel slice."""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    """Element-wise sum of all inputs."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        total = inputs[0]
        for tensor in inputs[1:]:
            total = total + tensor
        return total


class Concat(nn.Module):
    """Concatenation along dim 1 (channels of a map, features of a vector)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, dim=1)


class Mul(nn.Module):
    """Element-wise product of all inputs (a [C, 1, 1] gate broadcasts over the map)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        total = inputs[0]
        for tensor in inputs[1:]:
            total = total * tensor
        return total


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: nn.LayerNorm over dim 1 of an N x C x H x W tensor
    (the same parameters, weight and bias [C], so state_dicts load across)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """x * layer_scale, a [C, 1, 1] parameter (named as in torchvision's CNBlock)."""

    def __init__(self, channels: int, init_value: float):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.layer_scale


class ChannelSlice(nn.Module):
    """Channels start..end-1 of dim 1 (both already resolved to 0 <= start < end <= C)."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.end]

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"
