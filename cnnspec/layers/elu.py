"""elu: the exponential linear unit (Clevert et al. 2016), PyTorch's nn.ELU."""


from typing import Any, Literal

from pydantic import Field

from .base import Example, Layer, Shape


class ELU(Layer):
    """x if x > 0 else alpha * (exp(x) - 1): smooth below zero, saturating at -alpha."""

    type: Literal["elu"] = "elu"
    alpha: float = Field(1.0, strict=True, gt=0, description="The value -alpha that negative inputs approach.")

    examples = (Example((4, 8, 8)), Example((5,), alpha=0.5))

    imports_torch = ("torch.nn.ELU", "torch.nn.functional.elu")
    imports_onnx = ("Elu",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return call.module_fields(cls)
        return {"alpha": float(call.arg(1, "alpha", 1.0))}

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        return {"alpha": float(call.attribute("alpha", 1.0))}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.ELU(self.alpha)
