"""The layer registry: type name -> layer class.

Adding a layer type is one class (its own file) plus one line here: each import line below
registers the layer classes it names, in the order written, which is the order of
``cnnspec layers`` and of README's layer reference. Nothing else lists layer types.
"""
# isort: skip_file
# ruff: noqa: F401 (the imports below are the registry: they are used by being bound)

from typing import Any

from .base import Example, Layer, Shape
from .receptive_field import ReceptiveField

# -- the registry: one line per layer file --------------------------------------------------------
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .linear import Linear
from .pooling import MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool
from .norm import BatchNorm2d, LayerNorm2d, LayerScale
from .shape import Dropout, Dropout2d, StochasticDepth
from .activation import ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Hardswish, Hardsigmoid, Softmax
from .elu import ELU
from .shape import Flatten, Identity
from .channels import ChannelShuffle, ChannelSlice
from .upsample import Upsample
from .merge import Add, Concat, Mul
# -------------------------------------------------------------------------------------------------


def layer_type(value: Any) -> str | None:
    """The ``type`` name of a concrete layer class (``type: Literal["x"] = "x"``), else None."""
    if not (isinstance(value, type) and issubclass(value, Layer)):
        return None
    name = value.model_fields["type"].default
    return name if isinstance(name, str) else None


LAYER_TYPES: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Enrol a layer class under its ``type``; a duplicate name is a programming error."""
    name = layer_type(cls)
    if name is None:
        raise ValueError(f"{cls.__name__} has no type name: declare type: Literal['name'] = 'name'")
    if LAYER_TYPES.get(name, cls) is not cls:
        raise ValueError(f"layer type {name!r} is registered twice")
    LAYER_TYPES[name] = cls
    return cls


for _value in list(globals().values()):  # binding order = the order of the import lines
    if layer_type(_value) is not None:
        register(_value)

__all__ = ["Example", "LAYER_TYPES", "Layer", "ReceptiveField", "Shape", "layer_type", "register"]
