"""Pointwise activations. Each keeps the shape and the receptive field of its input."""


from typing import Any, Literal

from pydantic import Field

from .base import Example, Layer, Shape


class ReLU(Layer):
    """max(0, x)."""

    type: Literal["relu"] = "relu"

    examples = (Example((4, 8, 8)), Example((5,)))

    imports_torch = ("torch.nn.ReLU", "torch.nn.functional.relu", "torch.relu", "Tensor.relu", "Tensor.relu_")
    imports_onnx = ("Relu",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.ReLU()


class ReLU6(Layer):
    """min(max(0, x), 6), as in MobileNet."""

    type: Literal["relu6"] = "relu6"

    examples = (Example((4, 8, 8)), Example((5,)))

    imports_torch = ("torch.nn.ReLU6", "torch.nn.functional.relu6")
    imports_onnx = ("Clip",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """Clip to [0, 6] (bounds as inputs since opset 11, attributes before)."""
        low = call.constant(1) if call.constant(1) is not None else call.attribute("min")
        high = call.constant(2) if call.constant(2) is not None else call.attribute("max")
        return {} if low is not None and high is not None and float(low) == 0.0 and float(high) == 6.0 else None

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.ReLU6()


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x."""

    type: Literal["leaky_relu"] = "leaky_relu"

    imports_torch = ("torch.nn.LeakyReLU", "torch.nn.functional.leaky_relu")
    imports_onnx = ("LeakyRelu",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        return {"negative_slope": float(call.attribute("alpha", 0.01))}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return call.module_fields(cls)
        return {"negative_slope": float(call.arg(1, "negative_slope", 0.01))}
    negative_slope: float = Field(0.01, strict=True, description="Slope for negative inputs.")

    examples = (Example((4, 8, 8), negative_slope=0.2), Example((5,)))

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.LeakyReLU(self.negative_slope)


class Sigmoid(Layer):
    """1 / (1 + exp(-x))."""

    type: Literal["sigmoid"] = "sigmoid"

    examples = (Example((4, 8, 8)), Example((5,)))

    imports_torch = ("torch.nn.Sigmoid", "torch.sigmoid", "torch.nn.functional.sigmoid", "Tensor.sigmoid")
    imports_onnx = ("Sigmoid",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Sigmoid()


class Tanh(Layer):
    """Hyperbolic tangent."""

    type: Literal["tanh"] = "tanh"

    examples = (Example((4, 8, 8)), Example((5,)))

    imports_torch = ("torch.nn.Tanh", "torch.tanh", "Tensor.tanh")
    imports_onnx = ("Tanh",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Tanh()


class GELU(Layer):
    """Gaussian error linear unit."""

    type: Literal["gelu"] = "gelu"

    imports_torch = ("torch.nn.GELU", "torch.nn.functional.gelu")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return call.module_fields(cls)
        return {"approximate": call.arg(1, "approximate", "none")}
    approximate: Literal["none", "tanh"] = Field("none", description="'tanh' uses the tanh approximation.")

    examples = (Example((4, 8, 8)), Example((5,), approximate="tanh"))

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.GELU(self.approximate)


class SiLU(Layer):
    """x * sigmoid(x) (swish)."""

    type: Literal["silu"] = "silu"

    examples = (Example((4, 8, 8)), Example((5,)))

    imports_torch = ("torch.nn.SiLU", "torch.nn.functional.silu")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.SiLU()


class Softmax(Layer):
    """exp(x) / sum(exp(x)) over the channel (feature) axis, dim 1 of the batched tensor."""

    type: Literal["softmax"] = "softmax"

    examples = (Example((4, 8, 8)), Example((5,)))

    imports_torch = ("torch.nn.Softmax", "torch.nn.functional.softmax", "torch.softmax", "Tensor.softmax")
    imports_onnx = ("Softmax",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        return {} if call.attribute("axis", -1) % (len(call.input_shapes[0]) + 1) == 1 else None

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """Only over the channel (feature) axis, dim 1 of the batched tensor."""
        dim = call.module.dim if call.module is not None else call.arg(1, "dim")
        rank = len(call.input_shapes[0]) + 1
        return {} if dim is not None and dim % rank == 1 else None

    produces_probabilities = True

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Softmax(dim=1)


class Hardswish(Layer):
    """x * relu6(x + 3) / 6 (PyTorch's nn.Hardswish, MobileNetV3's cheap swish)."""

    type: Literal["hardswish"] = "hardswish"

    examples = (Example((4, 5, 5)), Example((6,)))

    imports_torch = ("torch.nn.Hardswish", "torch.nn.functional.hardswish")
    imports_onnx = ("HardSwish",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Hardswish()


class Hardsigmoid(Layer):
    """relu6(x + 3) / 6 (PyTorch's nn.Hardsigmoid, MobileNetV3's squeeze-and-excitation gate)."""

    type: Literal["hardsigmoid"] = "hardsigmoid"

    examples = (Example((4, 5, 5)), Example((6,)))

    imports_torch = ("torch.nn.Hardsigmoid", "torch.nn.functional.hardsigmoid")
    imports_onnx = ("HardSigmoid",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return {}

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """PyTorch's hardsigmoid is ONNX HardSigmoid with alpha 1/6, beta 0.5."""
        alpha, beta = call.attribute("alpha", 0.2), call.attribute("beta", 0.5)
        return {} if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6 else None

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Hardsigmoid()
