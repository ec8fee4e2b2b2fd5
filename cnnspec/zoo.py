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
    ZooModel("shufflenet_v2", "shufflenet_v2_x1_0"),
    ZooModel("mobilenet_v3_small", "mobilenet_v3_small"),
    ZooModel("mobilenet_v3_large", "mobilenet_v3_large"),
    ZooModel("efficientnet", "efficientnet_b0"),
    ZooModel("efficientnet_v2", "efficientnet_v2_s"),
    ZooModel("regnet_y", "regnet_y_400mf"),
    # CNBlock registers its layer_scale parameter before its convs (features.<2s+1>.<i>.layer_scale
    # for stage s+1); by name, then everything else in order
    ZooModel("convnext", "convnext_tiny", key_map=tuple(
        (rf"features\.{2 * stage - 1}\.(\d+)\.layer_scale", rf"stage{stage}_\1_layer_scale.layer_scale")
        for stage in (1, 2, 3, 4)
    )),
)


def randomize_normalization(model: Any, seed: int) -> None:
    """Non-trivial normalisation and biases for a function check: random BatchNorm running
    statistics, random scales of BatchNorm and LayerNorm, random biases everywhere (torchvision
    starts them at 0, 1, 1, 0 and zero biases, which would hide a swapped mean and variance or a
    dropped bias)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                channels = module.num_features
                module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(channels, generator=generator) * 0.5 + 0.75)
            weight = getattr(module, "weight", None)
            if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)) and weight is not None:
                weight.copy_(torch.rand(weight.shape, generator=generator) * 0.5 + 0.75)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.copy_(torch.randn(bias.shape, generator=generator) * 0.1)


def build_torchvision(entry: ZooModel) -> Any:
    """torchvision's model for ``entry``, untrained (weights=None), in eval mode."""
    import torchvision

    return torchvision.models.get_model(entry.torchvision, weights=None, **entry.kwargs).eval()
