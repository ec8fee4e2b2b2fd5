"""The torchvision zoo: every spec in specs/torchvision/ is its torchvision model, exactly.

For each family: parameters, MACs and output shape equal torchvision's, measured on torchvision's
own module (MACs = FlopCounterMode's FLOPs / 2, the convention the analysis uses); with
torchvision's weights loaded by cnnspec.weights (and non-trivial BatchNorm statistics), the compiled
spec computes torchvision's output. Each model is built once (module-scoped fixture).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnspec.analysis import analyze
from cnnspec.compile import build_model
from cnnspec.spec.model import load_spec
from cnnspec.weights import load_state_dict
from cnnspec.zoo import ZOO, build_torchvision, randomize_normalization

ROOT = Path(__file__).resolve().parents[1]
#: the heaviest pairs (over 4 GMACs, or EfficientNetV2's 500 layers): marked slow, still run in CI
HEAVY = {"vgg_bn", "wide_resnet", "inception_v3", "convnext", "resnext", "efficientnet_v2"}


class Pair:
    """One family: the spec's analysis, and torchvision's model run once on one random image
    under FlopCounterMode (its output serves the function check too: one reference forward)."""

    def __init__(self, entry):
        torch.manual_seed(0)
        self.entry = entry
        self.analysis = analyze(load_spec(ROOT / entry.spec))
        self.reference = build_torchvision(entry)
        randomize_normalization(self.reference, 1)
        self.x = torch.randn(1, *self.analysis.input_shape, generator=torch.Generator().manual_seed(2))
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            self.expected = self.reference(self.x)
        self.flops = counter.get_total_flops()


@pytest.fixture(scope="module", params=[
    pytest.param(entry, id=entry.family, marks=[pytest.mark.slow] if entry.family in HEAVY else [])
    for entry in ZOO
])
def pair(request):
    return Pair(request.param)


def test_counts_equal_torchvision(pair):
    totals = pair.analysis.totals()
    assert totals["params"] == sum(p.numel() for p in pair.reference.parameters())
    assert totals["macs"] * 2 == pair.flops
    assert list(pair.analysis.output_shape) == list(pair.expected.shape[1:])


def test_function_equals_torchvision_with_its_weights(pair):
    model = build_model(pair.analysis).eval()
    load_state_dict(model, pair.reference.state_dict(), pair.entry.key_map)
    with torch.no_grad():
        got = model(pair.x)
    difference = (pair.expected - got).abs().max().item()
    assert difference <= 1e-5, difference
    assert pair.expected.abs().max().item() > 1e-2  # a dead output would compare equal too


def _torchvision_settings(model: torch.nn.Module) -> dict[str, list]:
    from torchvision.ops import StochasticDepth

    modules = list(model.modules())
    return {
        "batchnorm (eps, momentum)": [(m.eps, m.momentum) for m in modules if isinstance(m, torch.nn.BatchNorm2d)],
        "layernorm eps": [m.eps for m in modules if isinstance(m, torch.nn.LayerNorm)],
        "dropout p": [m.p for m in modules if isinstance(m, torch.nn.Dropout)],
        # a block's StochasticDepth acts only where the block adds its input back
        "stochastic depth (p, mode)": [
            (m.stochastic_depth.p, m.stochastic_depth.mode) for m in modules
            if isinstance(getattr(m, "stochastic_depth", None), StochasticDepth) and getattr(m, "use_res_connect", True)
        ],
    }


def _spec_settings(analysis) -> dict[str, list]:
    layers = [report.node.layer for report in analysis.layers]
    return {
        "batchnorm (eps, momentum)": [(l.eps, l.momentum) for l in layers if l.type == "batchnorm2d"],
        "layernorm eps": [l.eps for l in layers if l.type == "layernorm2d"],
        "dropout p": [l.p for l in layers if l.type == "dropout"],
        "stochastic depth (p, mode)": [(l.p, l.mode) for l in layers if l.type == "stochastic_depth"],
    }


def test_training_settings_equal_torchvision(pair):
    """What the function check at inference cannot see: BatchNorm momentum, dropout and the
    per-block stochastic-depth probabilities (EfficientNet's and ConvNeXt's linear ramps), in order."""
    assert _spec_settings(pair.analysis) == _torchvision_settings(pair.reference)


def test_inception_v3_receptive_field_is_the_published_one():
    """Araujo, Norris & Sim (Distill 2019), TF-Slim inception_v3 Mixed_7c: 1311 pixels, jump 32."""
    analysis = analyze(load_spec(ROOT / "specs/torchvision/inception_v3.yaml"))
    field = analysis.layer("Mixed_7c_concat").receptive_field
    assert (field.height.size, field.height.jump, field.width.size, field.width.jump) == (1311, 32, 1311, 32)


def test_readme_table_lists_every_family_with_its_counts():
    """The README's zoo table is the analysis of each spec (whose counts the tests above tie to
    torchvision), one row per family."""
    readme = (ROOT / "README.md").read_text()
    for entry in ZOO:
        totals = analyze(load_spec(ROOT / entry.spec)).totals()
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{entry.family}.yaml` |"))
        assert row.endswith(f"| {totals['params']:,} | {totals['macs']:,} |"), row


def test_every_zoo_spec_is_listed_and_says_what_it_teaches():
    shipped = {path.stem for path in (ROOT / "specs" / "torchvision").glob("*.yaml")}
    assert shipped == {entry.family for entry in ZOO} and len(shipped) == 16
    for entry in ZOO:
        text = (ROOT / entry.spec).read_text()
        assert text.startswith("# ") and "Teaches:" in text.split("\nname:")[0], entry.spec
