"""``cnnspec summary``: the static analysis next to what the compiled module really has and does.

For every layer it puts side by side
- the output shape: analysis vs. a real forward pass at batch 1 (observed with forward hooks);
- parameters, trainable parameters and buffers: analysis vs. ``numel`` summed over the submodule;
- MACs: analysis vs. ``torch.utils.flop_counter.FlopCounterMode`` / 2 (it counts 2 FLOPs per
  multiply-accumulate of conv2d and linear, and nothing for the other layers, as the analysis does).

Any disagreement is a bug in cnnspec; the command exits 1 when it finds one. torch is imported
inside the functions only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .analysis import Analysis
from .layers.base import fmt, show

#: the quantities compared per layer, in display order
QUANTITIES = ("output_shape", "params", "trainable_params", "buffers", "macs")


@dataclass(frozen=True)
class Measured:
    """What the compiled module has and does for one layer (at batch 1)."""

    output_shape: tuple[int, ...]
    params: int
    trainable_params: int
    buffers: int
    macs: int


@dataclass(frozen=True)
class Row:
    """One layer: the analysis' numbers, the module's numbers, and whether they agree."""

    name: str
    type: str
    analysis: Measured
    module: Measured

    def mismatches(self) -> list[str]:
        return [q for q in QUANTITIES if getattr(self.analysis, q) != getattr(self.module, q)]

    @property
    def match(self) -> bool:
        return not self.mismatches()


@dataclass(frozen=True)
class Summary:
    name: str
    input_shape: tuple[int, ...]
    rows: list[Row]

    @property
    def match(self) -> bool:
        return all(row.match for row in self.rows)

    def totals(self) -> dict[str, dict[str, int]]:
        numbers = [q for q in QUANTITIES if q != "output_shape"]
        return {
            side: {q: sum(getattr(getattr(row, side), q) for row in self.rows) for q in numbers}
            for side in ("analysis", "module")
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON contract: name, input_shape, batch_size, match, layers[{name, type, match,
        mismatches, analysis{...}, module{...}}], totals{analysis{...}, module{...}}."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "batch_size": 1,
            "match": self.match,
            "layers": [
                {
                    "name": row.name, "type": row.type, "match": row.match, "mismatches": row.mismatches(),
                    "analysis": _measured_dict(row.analysis), "module": _measured_dict(row.module),
                }
                for row in self.rows
            ],
            "totals": self.totals(),
        }


def _measured_dict(measured: Measured) -> dict[str, Any]:
    return {q: list(v) if isinstance(v, tuple) else v for q, v in ((q, getattr(measured, q)) for q in QUANTITIES)}


def _static(analysis: Analysis) -> dict[str, Measured]:
    return {
        r.name: Measured(tuple(r.output_shape), r.params, r.trainable_params, r.buffers, r.macs)
        for r in analysis.layers
    }


def measure(model: Any) -> dict[str, Measured]:
    """Run ``model`` (a CompiledModel) once on a zero batch of one in eval mode without gradients,
    recording each layer's output shape with forward hooks and its MACs with FlopCounterMode;
    count parameters and buffers from the submodules. The model's mode is restored afterwards."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def hook(module: Any, inputs: Any, output: Any) -> None:
            shapes[name] = tuple(output.shape[1:])  # the batch is not part of a shape

        return hook

    names = [step.name for step in model.plan]
    handles = [model.get_submodule(name).register_forward_hook(recorder(name)) for name in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(model.example_input(1))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    flops = counter.get_flop_counts()
    root = type(model).__name__
    result = {}
    for name in names:
        module = model.get_submodule(name)
        parameters = list(module.parameters())
        result[name] = Measured(
            output_shape=shapes[name],
            params=sum(p.numel() for p in parameters),
            trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
            buffers=sum(b.numel() for b in module.buffers()),
            macs=sum(flops.get(f"{root}.{name}", {}).values()) // 2,
        )
    return result


def summarize(analysis: Analysis, model: Any | None = None) -> Summary:
    """Compare the analysis with ``model`` (default: a fresh module compiled from the same spec)."""
    if model is None:
        from .compile import build_model

        model = build_model(analysis)
    measured = measure(model)
    static = _static(analysis)
    rows = []
    for report in analysis.layers:
        module = measured.get(report.name, Measured((), 0, 0, 0, 0))
        rows.append(Row(report.name, report.type, static[report.name], module))
    return Summary(analysis.name, tuple(analysis.input_shape), rows)


def _pair(left: Any, right: Any, text) -> str:
    """'x' when both sides agree, 'analysis != module' otherwise."""
    return text(left) if left == right else f"{text(left)} != {text(right)}"


def render_table(summary: Summary, width: int | None = None) -> str:
    """A rich table (plain text): one row per layer with the analysis' figure, the module's when it
    differs, and a match column; then the totals and a verdict line."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(f"{summary.name}: analysis vs. compiled module (input {show(summary.input_shape)}, batch 1)"),
        title_justify="left", show_footer=True,
    )
    totals = summary.totals()
    footers = ["total", "", "", *(_pair(totals["analysis"][q], totals["module"][q], fmt)
                                    for q in ("params", "trainable_params", "buffers", "macs")), ""]
    headers = ["layer", "type", "output", "params", "trainable", "buffers", "MACs", "match"]
    for header, footer in zip(headers, footers):
        numeric = header in ("params", "trainable", "buffers", "MACs")
        table.add_column(header, footer=footer, justify="right" if numeric else "left", no_wrap=True)
    for row in summary.rows:
        a, m = row.analysis, row.module
        table.add_row(*(Text(cell) for cell in (
            row.name, row.type, _pair(a.output_shape, m.output_shape, show),
            *(_pair(getattr(a, q), getattr(m, q), fmt) for q in ("params", "trainable_params", "buffers", "macs")),
            "yes" if row.match else "NO: " + ", ".join(row.mismatches()),
        )))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 200, color_system=None, highlight=False)
    console.print(table)
    bad = [row.name for row in summary.rows if not row.match]
    verdict = ("every layer matches: shapes from a real forward pass, parameter and buffer counts from the "
               "module, MACs from torch.utils.flop_counter / 2" if not bad
               else f"{len(bad)} layer(s) disagree (cells read 'analysis != module'): {', '.join(bad)}")
    console.print(Text(verdict), soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def render(summary: Summary, format_: str) -> str:
    """The summary as 'table' or 'json'."""
    if format_ == "json":
        return json.dumps(summary.to_dict(), indent=2) + "\n"
    return render_table(summary)
