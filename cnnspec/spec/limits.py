"""Bounds on what one spec file may ask for, so that hostile or careless input ends in a located
error within a second or two and well under 1 GB of memory, instead of a hang, a crash or a
10^30-element tensor.

Each bound is a default with an environment override (``CNNSPEC_MAX_SPEC_BYTES`` and friends), read
whenever a spec is loaded. The two size bounds are PyTorch's own and have no setting: a size
(a kernel, a padding, a channel count, an output height) is at most 2**31 - 1, and a tensor holds at
most 2**63 - 1 elements (``numel`` is an int64).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UsageError

#: the largest size (channels, kernel, padding, stride, height, ...) a spec may give or produce
MAX_SIZE = 2**31 - 1
#: the most elements one tensor (an output, a weight) may hold: PyTorch's int64 numel
MAX_ELEMENTS = 2**63 - 1


@dataclass(frozen=True)
class Limit:
    """One bound: its environment variable, its default, and the words an error uses for it."""

    variable: str
    default: int
    unit: str

    def value(self) -> int:
        """The bound in force: the environment variable when set (a positive integer), else the default."""
        text = os.environ.get(self.variable)
        if text is None or not text.strip():
            return self.default
        try:
            number = int(text.replace("_", ""))
        except ValueError:
            number = 0
        if number <= 0:
            raise UsageError(f"{self.variable}={text!r} is not a positive integer",
                             [f"unset it to use the default, {self.default:,} {self.unit}"])
        return number


#: size of a spec file (or text); the largest shipped spec is under 8 KB, `cnnspec import` of
#: densenet201 writes 133 KB, and PyYAML composes roughly 130 KB per CPU-second, so this bounds
#: loading to about two CPU-seconds
SPEC_BYTES = Limit("CNNSPEC_MAX_SPEC_BYTES", 256 * 1024, "bytes")
#: values in the document after YAML aliases and merge keys are expanded (an alias repeats its target)
SPEC_VALUES = Limit("CNNSPEC_MAX_SPEC_VALUES", 100_000, "values")
#: nesting of mappings and lists, the innermost value counted as a level (a spec needs at most 7:
#: the file, blocks, a block, its layers, a layer, a [h, w] pair, a number)
SPEC_DEPTH = Limit("CNNSPEC_MAX_SPEC_DEPTH", 64, "levels")
#: layers after every block use and repeat is expanded (ResNet-50 has 174)
MODEL_LAYERS = Limit("CNNSPEC_MAX_LAYERS", 10_000, "layers")


def setting_hint(limit: Limit) -> str:
    """The hint every limit error ends with: how to raise the bound when the input is legitimate."""
    return f"if this spec is legitimate, raise the limit with {limit.variable}"
