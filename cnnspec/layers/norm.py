"""Normalisation and scaling per channel: batchnorm2d, layernorm2d (ConvNeXt) and layer_scale."""


from typing import Any, Literal

from pydantic import Field

from .base import Example, Layer, PositiveInt, Shape, fmt


class BatchNorm2d(Layer):
    """Batch normalisation over each channel of a feature map (pointwise at inference)."""

    type: Literal["batchnorm2d"] = "batchnorm2d"

    imports_torch = ("torch.nn.BatchNorm2d",)
    imports_onnx = ("BatchNormalization",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """ONNX's momentum weighs the old statistics (0.9), PyTorch's the new batch (0.1)."""
        return {"eps": float(call.attribute("epsilon", 1e-5)), "momentum": round(1.0 - float(call.attribute("momentum", 0.9)), 6)}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """Only with running statistics (what inference uses)."""
        return call.module_fields(cls) if call.module.track_running_stats else None
    num_features: PositiveInt | None = Field(None, description="Optional; inferred (the input's channels). If written it must match.")
    eps: float = Field(1e-5, strict=True, gt=0, description="Added to the variance for numerical stability.")
    momentum: float | None = Field(0.1, strict=True, ge=0, le=1, description="Running-statistics update rate; null = cumulative average.")
    affine: bool = Field(True, description="Learn a scale (weight) and shift (bias) per channel.")

    needs = "feature_map"
    explains_buffers = True
    none_default = {"num_features": "inferred"}
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


class LayerNorm2d(Layer):
    """LayerNorm over the channels at every position, as torchvision's ConvNeXt LayerNorm2d:
    y = (x - mean_c(x)) / sqrt(var_c(x) + eps) * weight + bias, mean and (biased) variance over
    the C values of each pixel; no running statistics. Pointwise in H, W."""

    type: Literal["layernorm2d"] = "layernorm2d"
    eps: float = Field(1e-6, strict=True, gt=0, description="Added to the variance (1e-6 as torchvision's ConvNeXt).")
    elementwise_affine: bool = Field(True, description="Learn a scale (weight) and shift (bias) per channel.")

    needs = "feature_map"
    examples = (Example((4, 5, 5)), Example((3, 2, 6), eps=1e-5, elementwise_affine=False))

    def params(self, shapes: list[Shape]) -> int:
        return 2 * shapes[0][0] if self.elementwise_affine else 0

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        channels = shapes[0][0]
        if not self.elementwise_affine:
            return ["params = 0 (elementwise_affine: false); normalised over the C values of each pixel"]
        return [f"params = 2 * C = 2 * {channels} = {fmt(2 * channels)} (weight and bias); "
                "normalised over the C values of each pixel"]

    imports_torch = ("torchvision.models.convnext.LayerNorm2d", "torch.nn.LayerNorm")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """torchvision's LayerNorm2d, and nn.LayerNorm over the channels of a channels-last map
        (inside ConvNeXt's CNBlock, between two permutes)."""
        module = call.module
        if type(module).__name__ == "LayerNorm" and (call.layout != "NHWC" or
                                                     tuple(module.normalized_shape) != (call.input_shapes[0][0],)):
            return None
        return {"eps": float(module.eps), "elementwise_affine": bool(module.elementwise_affine)}

    def to_torch(self, shapes: list[Shape]) -> Any:
        from .modules import LayerNorm2d as LayerNorm2dModule

        return LayerNorm2dModule(shapes[0][0], eps=self.eps, elementwise_affine=self.elementwise_affine)


class LayerScale(Layer):
    """A learned scale per channel, y = x * layer_scale with a [C, 1, 1] parameter that starts at
    init_value (ConvNeXt's CNBlock). The state_dict key is ``<name>.layer_scale``, shape
    [C, 1, 1], so torchvision's ``features.i.j.layer_scale`` maps onto it one to one."""

    type: Literal["layer_scale"] = "layer_scale"
    init_value: float = Field(1e-6, strict=True, description="Initial value of every channel's scale.")

    needs = "feature_map"
    examples = (Example((4, 5, 5)), Example((3, 1, 1), init_value=0.5))

    def params(self, shapes: list[Shape]) -> int:
        return shapes[0][0]

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        return [f"params = C = {fmt(shapes[0][0])} (one scale per channel, shape [{shapes[0][0]}, 1, 1]); "
                "MACs = 0 (the MAC convention counts conv2d and linear only)"]

    imports_torch = ("_operator.mul", "torch.mul", "Tensor.mul")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """A tensor times a [C, 1, 1] parameter of the module (ConvNeXt's ``self.layer_scale * x``)."""
        if len(call.input_shapes) != 1 or len(call.constants) != 1:
            return None
        return {} if tuple(call.constants[0].shape) == (call.input_shapes[0][0], 1, 1) else None

    def to_torch(self, shapes: list[Shape]) -> Any:
        from .modules import LayerScale as LayerScaleModule

        return LayerScaleModule(shapes[0][0], self.init_value)
