"""Layers that reshape or pass data through: flatten, identity, dropout, dropout2d, stochastic_depth."""


from typing import Any, Literal

from pydantic import Field

from .base import Example, Layer, Probability, Shape, prod, show


class Flatten(Layer):
    """[C, H, W] -> the vector [C*H*W] (a vector passes unchanged)."""

    type: Literal["flatten"] = "flatten"

    examples = (Example((4, 8, 8)), Example((7,)))

    imports_torch = ("torch.nn.Flatten", "torch.flatten", "Tensor.flatten")
    imports_onnx = ("Flatten", "Reshape")

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """Flatten with axis 1, or a Reshape to [N, -1] / [N, C*H*W]."""
        if call.op_type == "Flatten":
            return {} if call.attribute("axis", 1) == 1 else None
        shape = call.constant(1)
        return {} if shape is not None and len(shape) == 2 and len(call.output_shape) == 1 else None

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """Everything after the batch axis: start_dim 1, end_dim -1."""
        if call.module is not None:
            start, end = call.module.start_dim, call.module.end_dim
        else:
            start, end = call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1)
        return {} if start == 1 and end in (-1, len(call.input_shapes[0])) else None

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return (prod(shapes[0]),)

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        return [f"{show(shapes[0])} -> {' * '.join(map(str, shapes[0]))} = {out[0]:,} features"]

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Flatten(1)


class Identity(Layer):
    """Passes its input through unchanged (a named tap point in the graph)."""

    type: Literal["identity"] = "identity"

    examples = (Example((4, 8, 8)), Example((7,)))

    imports_torch = ("torch.nn.Identity", "torch.cat")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """nn.Identity, and a concatenation of one tensor (DenseNet's first layer of a block)."""
        return {} if call.module is not None or len(call.input_shapes) == 1 else None

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Identity()


class Dropout(Layer):
    """Zeroes each element with probability p during training (and scales the rest by 1/(1-p))."""

    type: Literal["dropout"] = "dropout"

    imports_torch = ("torch.nn.Dropout", "torch.nn.functional.dropout")
    imports_onnx = ("Dropout",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        ratio = call.constant(1)
        return {"p": float(ratio) if ratio is not None else float(call.attribute("ratio", 0.5))}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return call.module_fields(cls)
        return {"p": float(call.arg(1, "p", 0.5))}
    p: Probability = Field(0.5, description="Probability of zeroing an element.")

    examples = (Example((4, 8, 8), p=0.2), Example((10,)))

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Dropout(self.p)


class Dropout2d(Layer):
    """Zeroes whole channels with probability p during training."""

    type: Literal["dropout2d"] = "dropout2d"

    imports_torch = ("torch.nn.Dropout2d",)
    p: Probability = Field(0.5, description="Probability of zeroing a channel.")

    needs = "feature_map"
    examples = (Example((4, 8, 8)), Example((3, 5, 6), p=0.1))

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Dropout2d(self.p)


class StochasticDepth(Layer):
    """torchvision.ops.StochasticDepth: in training, zero the whole input of a sample (mode 'row')
    or of the whole batch (mode 'batch') with probability p and scale survivors by 1/(1-p); the
    identity at inference. Put it on a residual branch, before the add."""

    type: Literal["stochastic_depth"] = "stochastic_depth"
    p: Probability = Field(description="Probability of dropping the input (EfficientNet, ConvNeXt: 0 to about 0.5).")
    mode: Literal["row", "batch"] = Field("row", description="'row' drops per sample, 'batch' the whole batch at once.")

    examples = (Example((4, 5, 5), p=0.2), Example((6,), p=0.5, mode="batch"))

    imports_torch = ("torchvision.ops.StochasticDepth", "torchvision.ops.stochastic_depth")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return call.module_fields(cls)
        return {"p": float(call.arg(1, "p")), "mode": call.arg(2, "mode")}

    def to_torch(self, shapes: list[Shape]) -> Any:
        from torchvision.ops import StochasticDepth as StochasticDepthModule

        return StochasticDepthModule(self.p, self.mode)
