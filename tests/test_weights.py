"""cnnspec.weights: carrying another implementation's state_dict into a compiled spec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnspec.compile import build_model
from cnnspec.spec.model import parse_spec
from cnnspec.weights import WeightMappingError, load_state_dict, map_state_dict

SPEC = """\
name: small
input: {channels: 3, height: 8, width: 8}
layers:
  - {type: conv2d, name: stem, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: batchnorm2d, name: stem_bn}
  - {type: relu}
  - {type: conv2d, name: head, out_channels: 5, kernel_size: 1}
  - {type: global_avgpool, name: pool}
"""


class Source(nn.Module):
    """The same network written another way: different names, the 1x1 conv as a Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean([2, 3]))


@pytest.fixture()
def models():
    torch.manual_seed(0)
    source = Source().eval()
    source.features[1].running_mean.normal_()
    source.features[1].running_var.uniform_(0.5, 2)
    return source, build_model(parse_spec(SPEC)).eval()


def test_ordered_matching_carries_the_function(models):
    source, model = models
    load_state_dict(model, source.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), atol=1e-6)
    # the Linear's [5, 4] weight became the 1x1 conv's [5, 4, 1, 1]
    assert torch.equal(model.head.weight.flatten(1), source.fc.weight)


def test_key_map_renames_before_ordered_matching(models):
    source, model = models
    state = dict(source.state_dict())
    state = {"fc.weight": state.pop("fc.weight"), "fc.bias": state.pop("fc.bias"), **state}  # out of order
    mapped = map_state_dict(state, model.state_dict(), [(r"fc\.(weight|bias)", r"head.\1")])
    assert torch.equal(mapped["head.bias"], source.fc.bias)
    assert torch.equal(mapped["stem.weight"], source.features[0].weight)


def test_key_map_can_drop_a_head(models):
    source, model = models
    state = {**source.state_dict(), "aux.weight": torch.zeros(7, 3)}
    with pytest.raises(WeightMappingError):
        map_state_dict(state, model.state_dict())
    assert "stem.weight" in map_state_dict(state, model.state_dict(), [(r"aux\..*", "")])


def test_a_shape_mismatch_names_both_sides(models):
    source, model = models
    state = dict(source.state_dict())
    state["features.0.weight"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(WeightMappingError) as caught:
        map_state_dict(state, model.state_dict())
    assert str(caught.value) == (
        "source 'features.0.weight' [4, 3, 5, 5] does not fit spec 'stem.weight' [4, 3, 3, 3] (tensor 0 in "
        "order); list the spec's layers in the source's order or add a key_map rule")


def test_a_missing_tensor_names_the_first_without_a_partner(models):
    source, model = models
    state = dict(source.state_dict())
    del state["fc.bias"]
    with pytest.raises(WeightMappingError) as caught:
        map_state_dict(state, model.state_dict())
    assert str(caught.value) == (
        "the spec has 1 more tensors than the source (8 source and 9 spec tensors left to match in order); "
        "the first without a partner is spec 'head.bias' [5]")  # conv 2 + batchnorm 5 (3 buffers) + fc 2


def test_a_rule_to_an_unknown_key_is_an_error(models):
    source, model = models
    with pytest.raises(WeightMappingError) as caught:
        map_state_dict(source.state_dict(), model.state_dict(), [(r"fc\.weight", "fc.weight")])
    assert str(caught.value) == "key_map renames source 'fc.weight' to 'fc.weight', which the spec's module does not have"
