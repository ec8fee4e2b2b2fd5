"""Print the torchvision zoo table: family | params | MACs | max output diff | spec lines.

Run from the repository root: ``python scripts/zoo_table.py [family ...]``. Params and MACs are
torchvision's own (FlopCounterMode FLOPs / 2), next to cnnspec's static analysis; the output
difference is measured as tests/test_zoo.py does (torchvision's weights in the compiled spec,
random BatchNorm statistics, eval mode, one random image).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnspec.analysis import analyze  # noqa: E402
from cnnspec.compile import build_model  # noqa: E402
from cnnspec.spec.model import load_spec  # noqa: E402
from cnnspec.weights import load_state_dict  # noqa: E402
from cnnspec.zoo import ZOO, build_torchvision, randomize_normalization  # noqa: E402


def row(entry) -> str:
    torch.manual_seed(0)
    spec_path = ROOT / entry.spec
    analysis = analyze(load_spec(spec_path))
    reference = build_torchvision(entry)
    randomize_normalization(reference, 1)
    x = torch.randn(1, *analysis.input_shape, generator=torch.Generator().manual_seed(2))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        expected = reference(x)
    params = sum(p.numel() for p in reference.parameters())
    macs = counter.get_total_flops() // 2
    model = build_model(analysis).eval()
    load_state_dict(model, reference.state_dict(), entry.key_map)
    with torch.no_grad():
        difference = (model(x) - expected).abs().max().item()
    totals = analysis.totals()
    same = "" if (totals["params"], totals["macs"]) == (params, macs) else " MISMATCH"
    lines = len(spec_path.read_text().splitlines())
    return f"| {entry.family} ({entry.torchvision}) | {params:,} | {macs:,} | {difference:.2e} | {lines} |{same}"


def main() -> None:
    wanted = set(sys.argv[1:])
    print("| family | params | MACs | max output diff | spec lines |")
    print("|---|---:|---:|---:|---:|")
    for entry in ZOO:
        if not wanted or entry.family in wanted:
            print(row(entry), flush=True)


if __name__ == "__main__":
    main()
