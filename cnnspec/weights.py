"""Loading another implementation's weights (a torchvision state_dict) into a compiled spec.

The spec names its layers in its own words (``layer2_0_conv1``), the source in its own
(``layer2.0.conv1``), so keys cannot be compared as text. The mapping is made in two steps:

1. ``key_map`` rules (``(regex, replacement)`` pairs, the first rule whose regex matches the whole
   source key wins) rename source keys into spec keys; a key renamed to a spec key is matched by
   name, a key renamed to ``""`` is dropped (a head the spec does not have).
2. The remaining tensors are matched in order: the i-th remaining source tensor (in state_dict
   order, i.e. module registration order) to the i-th remaining tensor of the spec's module
   (in the spec's layer order). A spec written in the source's order needs no rules.

Every pair must have the same shape, or shapes that differ only by trailing 1s (a ``Linear``
written as a 1x1 ``conv2d``: ``[out, in]`` -> ``[out, in, 1, 1]``), which is reshaped. Any
mismatch is a WeightMappingError naming both sides. torch is imported by the caller's tensors only.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from .errors import CnnspecError

KeyMap = Sequence[tuple[str, str]]


class WeightMappingError(CnnspecError):
    """The source's tensors do not fit the spec's: says which source key and which spec key."""


def _shape(tensor: Any) -> list[int]:
    return list(tensor.shape)


def _fits(source: list[int], target: list[int]) -> bool:
    """Equal, or equal after dropping trailing 1s from the longer shape."""
    def strip(shape: list[int]) -> list[int]:
        while len(shape) > 1 and shape[-1] == 1:
            shape = shape[:-1]
        return shape

    return source == target or strip(source) == strip(target)


def _rename(key: str, key_map: KeyMap) -> str | None:
    for pattern, replacement in key_map:
        if re.fullmatch(pattern, key):
            return re.sub(f"^(?:{pattern})$", replacement, key)
    return None


def map_state_dict(source: Mapping[str, Any], target: Mapping[str, Any], key_map: KeyMap = ()) -> dict[str, Any]:
    """A state_dict with ``target``'s keys and ``source``'s tensors (reshaped where they only differ
    by trailing 1s), by the two steps in the module docstring."""
    mapped: dict[str, Any] = {}
    pending: list[str] = []
    for key in source:
        renamed = _rename(key, key_map)
        if renamed == "":
            continue
        if renamed is None:
            pending.append(key)
            continue
        if renamed not in target:
            raise WeightMappingError(
                f"key_map renames source '{key}' to '{renamed}', which the spec's module does not have")
        if renamed in mapped:
            raise WeightMappingError(f"two source tensors map to spec '{renamed}' (the second is '{key}')")
        mapped[renamed] = _checked(key, source[key], renamed, target[renamed])
    remaining = [key for key in target if key not in mapped]
    for index, (key, name) in enumerate(zip(pending, remaining)):
        mapped[name] = _checked(key, source[key], name, target[name], index)
    if len(pending) != len(remaining):
        extra = pending[len(remaining):] or remaining[len(pending):]
        side = "source" if len(pending) > len(remaining) else "spec"
        other = "spec" if side == "source" else "source"
        first = extra[0]
        shape = _shape((source if side == "source" else target)[first])
        raise WeightMappingError(
            f"the {side} has {len(extra)} more tensors than the {other} ({len(pending)} source and "
            f"{len(remaining)} spec tensors left to match in order); the first without a partner is {side} "
            f"'{first}' {shape}")
    return mapped


def _checked(source_key: str, tensor: Any, target_key: str, like: Any, index: int | None = None) -> Any:
    if not _fits(_shape(tensor), _shape(like)):
        where = f" (tensor {index} in order)" if index is not None else ""
        raise WeightMappingError(
            f"source '{source_key}' {_shape(tensor)} does not fit spec '{target_key}' {_shape(like)}{where}; "
            "list the spec's layers in the source's order or add a key_map rule")
    return tensor.reshape(like.shape)


def load_state_dict(model: Any, source: Mapping[str, Any], key_map: KeyMap = ()) -> None:
    """Copy ``source``'s tensors into ``model`` (a CompiledModel or any torch module), strictly."""
    model.load_state_dict(map_state_dict(source, model.state_dict(), key_map), strict=True)
