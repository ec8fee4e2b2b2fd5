"""The torchvision zoo: which spec in ``specs/torchvision/`` describes which torchvision model.

Each entry names the torchvision builder and the keyword arguments that give the graph the spec
describes (``aux_logits=False`` where the builder would add training-only heads), and the
``key_map`` rules (see weights.py) that carry torchvision's state_dict into the compiled spec.
Most specs list their layers in torchvision's registration order and need no rules.
Torch-free: torchvision is imported by whoever builds the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .weights import KeyMap


@dataclass(frozen=True)
class ZooModel:
    """One family: its spec file (under specs/torchvision/), torchvision's name and arguments."""

    family: str
    torchvision: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    key_map: KeyMap = ()

    @property
    def spec(self) -> str:
        return f"specs/torchvision/{self.family}.yaml"


ZOO: tuple[ZooModel, ...] = (
    ZooModel("resnext", "resnext50_32x4d"),
    ZooModel("wide_resnet", "wide_resnet50_2"),
    ZooModel("vgg_bn", "vgg16_bn"),
    ZooModel("densenet", "densenet121"),
    ZooModel("squeezenet", "squeezenet1_1"),
    ZooModel("googlenet", "googlenet", {"aux_logits": False, "transform_input": False, "init_weights": False}),
    ZooModel("inception_v3", "inception_v3", {"aux_logits": False, "transform_input": False, "init_weights": False}),
    ZooModel("mnasnet", "mnasnet1_0"),
    ZooModel("regnet_x", "regnet_x_400mf"),
)


def build_torchvision(entry: ZooModel) -> Any:
    """torchvision's model for ``entry``, untrained (weights=None), in eval mode."""
    import torchvision

    return torchvision.models.get_model(entry.torchvision, weights=None, **entry.kwargs).eval()
