"""The layer registry: type name -> layer class. Adding a layer type is one class plus one line here."""


from .activation import GELU, Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, SiLU, Sigmoid, Softmax, Tanh
from .base import Example, Layer, Shape
from .channels import ChannelShuffle, ChannelSlice
from .conv import Conv2d
from .linear import Linear
from .merge import Add, Concat, Mul
from .norm import BatchNorm2d, LayerNorm2d, LayerScale
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool, MaxPool2d
from .receptive_field import ReceptiveField
from .shape import Dropout, Dropout2d, Flatten, Identity, StochasticDepth

LAYER_TYPES: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Enrol a layer class under its ``type``; a duplicate name is a programming error."""
    name = cls.model_fields["type"].default
    if name in LAYER_TYPES:
        raise ValueError(f"layer type {name!r} is registered twice")
    LAYER_TYPES[name] = cls
    return cls


for _cls in (
    Conv2d, Linear, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool, BatchNorm2d, LayerNorm2d, LayerScale,
    Dropout, Dropout2d, StochasticDepth, ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Hardswish, Hardsigmoid,
    Softmax, Flatten, Identity, ChannelShuffle, ChannelSlice, Add, Concat, Mul,
):
    register(_cls)

__all__ = ["Example", "LAYER_TYPES", "Layer", "ReceptiveField", "Shape", "register"]
