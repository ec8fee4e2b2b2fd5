"""linear: the fully connected layer (PyTorch's nn.Linear) on a vector."""


from typing import Any, Literal

from pydantic import Field

from .base import Example, Layer, PositiveInt, Shape, fmt


class Linear(Layer):
    """Fully connected: every output is a weighted sum of every input feature."""

    type: Literal["linear"] = "linear"

    imports_torch = ("torch.nn.Linear",)
    imports_onnx = ("Gemm",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """y = x W^T + b: Gemm with transB = 1 and alpha = beta = 1."""
        weight = call.constant(1)
        if weight is None or call.attribute("transB", 0) != 1 or call.attribute("transA", 0):
            return None
        if call.attribute("alpha", 1.0) != 1.0 or call.attribute("beta", 1.0) != 1.0:
            return None
        return {"out_features": int(weight.shape[0]), "bias": call.constant(2) is not None}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """A vector input only (a Linear over the channels of a map is a 1x1 conv2d)."""
        return call.module_fields(cls) if len(call.input_shapes[0]) == 1 else None
    in_features: PositiveInt | None = Field(None, description="Optional; inferred from the input. If written it must match.")
    out_features: PositiveInt = Field(description="Number of outputs.")
    bias: bool = Field(True, description="Add a learnable bias per output.")

    needs = "vector"
    none_default = {"in_features": "inferred"}
    examples = (Example((4,), out_features=3), Example((12,), in_features=12, out_features=5, bias=False))

    def output_shape(self, shapes: list[Shape]) -> Shape:
        self.check_declared("in_features", self.in_features, shapes[0][0])
        return (self.out_features,)

    def params(self, shapes: list[Shape]) -> int:
        return shapes[0][0] * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, shapes: list[Shape], out: Shape) -> int:
        return shapes[0][0] * self.out_features

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        bias = f" + {self.out_features}" if self.bias else ""
        return [
            f"params = in * out{' + bias' if self.bias else ''} = {shapes[0][0]} * {self.out_features}{bias} = {fmt(self.params(shapes))}",
            f"MACs = in * out = {shapes[0][0]} * {self.out_features} = {fmt(self.macs(shapes, out))}",
        ]

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Linear(shapes[0][0], self.out_features, self.bias)
