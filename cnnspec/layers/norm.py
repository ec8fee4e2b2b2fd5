"""batchnorm2d: per-channel normalisation with learnable scale and shift."""


from typing import Any, Literal

from pydantic import Field

from .base import Example, Layer, PositiveInt, Shape, fmt


class BatchNorm2d(Layer):
    """Batch normalisation over each channel of a feature map (pointwise at inference)."""

    type: Literal["batchnorm2d"] = "batchnorm2d"
    num_features: PositiveInt | None = Field(None, description="Optional; inferred (the input's channels). If written it must match.")
    eps: float = Field(1e-5, strict=True, gt=0, description="Added to the variance for numerical stability.")
    momentum: float | None = Field(0.1, strict=True, ge=0, le=1, description="Running-statistics update rate; null = cumulative average.")
    affine: bool = Field(True, description="Learn a scale (weight) and shift (bias) per channel.")

    needs = "feature_map"
    explains_buffers = True
    examples = (Example((4, 8, 8)), Example((3, 5, 6), num_features=3, eps=1e-3, momentum=None, affine=False))

    def output_shape(self, shapes: list[Shape]) -> Shape:
        self.check_declared("num_features", self.num_features, shapes[0][0])
        return shapes[0]

    def params(self, shapes: list[Shape]) -> int:
        return 2 * shapes[0][0] if self.affine else 0

    def buffers(self, shapes: list[Shape]) -> int:
        """running_mean and running_var per channel, plus the num_batches_tracked scalar."""
        return 2 * shapes[0][0] + 1

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        channels = shapes[0][0]
        params = f"2 * {channels} = {fmt(2 * channels)} (weight and bias)" if self.affine else "0 (affine: false)"
        return [
            f"params = {params}",
            f"buffers = 2 * {channels} + 1 = {fmt(2 * channels + 1)} (running mean and variance, batch counter)",
        ]

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.BatchNorm2d(shapes[0][0], self.eps, self.momentum, self.affine)
