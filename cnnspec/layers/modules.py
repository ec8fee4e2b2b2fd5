"""The few torch modules cnnspec needs that torch.nn does not have (merges of several inputs)."""

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
