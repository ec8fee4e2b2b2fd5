"""Rendering an Analysis: table (rich), JSON, Markdown, Mermaid, and the ``--explain`` arithmetic.

Nothing here imports torch; rich is imported only for the table.
"""

from __future__ import annotations

import json
from typing import Any

from .analysis import Analysis, LayerReport
from .layers.base import fmt, show
from .layers.receptive_field import ReceptiveField


def human_bytes(count: int) -> str:
    """1,536 -> '1.5 KiB' (binary units, as memory is counted)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def short_count(count: int) -> str:
    """4,241,152 -> '4.24M' (for totals lines next to the exact figure)."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= limit:
            return f"{count / limit:.2f}{suffix}"
    return str(count)


def field_text(field: ReceptiveField | None) -> str:
    """'10x10 j4 s1.5' (size, jump, start); '<=14x14 j2 s-0.5' for an envelope (units that differ,
    after a transposed conv or an upsampling); '-' for vectors."""
    if field is None:
        return "-"
    data = field.to_dict()
    size, jump, start = data["size"], data["jump"], data["start"]

    def axis_pair(values: list[Any], sep: str) -> str:
        return fmt(values[0]) if values[0] == values[1] else sep.join(fmt(v) for v in values)

    return f"{'' if field.exact else '<='}{axis_pair(size, 'x') if size[0] != size[1] else f'{fmt(size[0])}x{fmt(size[1])}'} " \
           f"j{axis_pair(jump, ',')} s{axis_pair(start, ',')}"


def _inputs_text(report: LayerReport, previous: str) -> str:
    return "" if report.inputs == [previous] else ", ".join(report.inputs)


def render(analysis: Analysis, format_: str, *, explain: bool = False) -> str:
    """The analysis as text in one of: table, json, markdown, mermaid."""
    if format_ == "json":
        data = analysis.to_dict()
        if explain:
            for entry, lines in zip(data["layers"], explain_lines(analysis)):
                entry["explain"] = lines
        return json.dumps(data, indent=2) + "\n"
    if explain:
        return render_explain(analysis)
    if format_ == "markdown":
        return render_markdown(analysis)
    if format_ == "mermaid":
        return render_mermaid(analysis)
    return render_table(analysis)


def _rows(analysis: Analysis) -> list[list[str]]:
    rows, previous = [], "input"
    for report in analysis.layers:
        rows.append([
            report.name, report.type, _inputs_text(report, previous), show(report.output_shape),
            fmt(report.params), fmt(report.macs), field_text(report.receptive_field),
            human_bytes(report.activation_bytes),
        ])
        previous = report.name
    return rows


HEADERS = ["layer", "type", "inputs", "output", "params", "MACs", "receptive field", "memory"]


def _totals_line(analysis: Analysis) -> list[str]:
    totals = analysis.totals()
    lines = [
        f"params: {fmt(totals['params'])} ({short_count(totals['params'])}; trainable "
        f"{fmt(totals['trainable_params'])}, non-trainable {fmt(totals['non_trainable_params'])}; "
        f"{human_bytes(totals['param_bytes'])} as float32)",
        f"buffers: {fmt(totals['buffers'])}",
        f"MACs: {fmt(totals['macs'])} ({short_count(totals['macs'])}) per image; FLOPs ~ 2 x MACs",
        f"activations: {human_bytes(totals['activation_bytes'])} per image (float32, every layer output)",
    ]
    return lines


def render_table(analysis: Analysis) -> str:
    """An aligned box-drawing table with a totals row (rich's heavy-head style).

    Drawn directly rather than through rich.Table: for ResNet-50's 175 rows rich's layout engine
    takes ~170 ms with its import, more than the whole analysis, and every cell here is plain
    ASCII of known width, so nothing needs measuring.
    """
    totals = analysis.totals()
    footer = ["total", "", "", "", fmt(totals["params"]), fmt(totals["macs"]), "",
              human_bytes(totals["activation_bytes"])]
    rows = _rows(analysis)
    widths = [max(len(row[i]) for row in [HEADERS, footer, *rows]) for i in range(len(HEADERS))]
    right = [h in ("params", "MACs", "memory") for h in HEADERS]

    def line(cells: list[str], edge: str, sep: str) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return f"{edge} " + f" {sep} ".join(padded) + f" {edge}"

    def rule(left: str, fill: str, cross: str, end: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + end

    out = [
        f"{analysis.name}: input {show(analysis.input_shape)} -> output {show(analysis.output_shape)}",
        rule("┏", "━", "┳", "┓"),
        line(HEADERS, "┃", "┃"),
        rule("┡", "━", "╇", "┩"),
        *(line(row, "│", "│") for row in rows),
        rule("├", "─", "┼", "┤"),
        line(footer, "│", "│"),
        rule("└", "─", "┴", "┘"),
        *_totals_line(analysis),
    ]
    return "\n".join(out) + "\n"


def render_markdown(analysis: Analysis) -> str:
    lines = [
        f"### {analysis.name}",
        "",
        f"Input {show(analysis.input_shape)}, output {show(analysis.output_shape)}.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---:" if h in ("params", "MACs", "memory") else "---" for h in HEADERS) + "|",
    ]
    for row in _rows(analysis):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    totals = analysis.totals()
    lines.append(f"| **total** | | | | **{fmt(totals['params'])}** | **{fmt(totals['macs'])}** | | "
                 f"**{human_bytes(totals['activation_bytes'])}** |")
    lines.append("")
    lines.extend(f"- {line}" for line in _totals_line(analysis))
    return "\n".join(lines) + "\n"


def render_mermaid(analysis: Analysis) -> str:
    """A Mermaid flowchart of the graph, each node labelled with its output shape."""
    lines = ["flowchart TD", f'    input(["input<br/>{show(analysis.input_shape)}"])']
    for report in analysis.layers:
        label = f"{report.name}: {report.node.layer.label()}<br/>{show(report.output_shape)}"
        if report.params:
            label += f"<br/>{fmt(report.params)} params"
        lines.append(f'    {report.name}["{label}"]')
        for source in report.inputs:
            lines.append(f"    {source} --> {report.name}")
    return "\n".join(lines) + "\n"


def explain_lines(analysis: Analysis) -> list[list[str]]:
    """Per layer, the arithmetic behind its shape, counts and receptive field."""
    fields = {"input": ReceptiveField.identity()}
    result = []
    for report in analysis.layers:
        layer = report.node.layer
        lines = list(layer.explain(report.input_shapes, report.output_shape))
        before = [fields.get(name) for name in report.inputs]
        after = report.receptive_field
        if after is None:
            lines.append("receptive field: null (the output is a vector: every unit sees the whole input)")
        elif all(b is not None for b in before) and (field_lines := layer.explain_field(before, after)):
            lines.extend(field_lines)
        elif before and before[0] == after:
            lines.append("shape and receptive field pass through unchanged (pointwise)")
        else:
            lines.append(f"receptive field: {field_text(after)}")
        if report.buffers and not layer.explains_buffers:
            lines.append(f"buffers = {fmt(report.buffers)}")
        fields[report.name] = after
        result.append(lines)
    return result


def render_explain(analysis: Analysis) -> str:
    out = [f"{analysis.name}: input {show(analysis.input_shape)}", ""]
    for report, lines in zip(analysis.layers, explain_lines(analysis)):
        shapes = " + ".join(show(s) for s in report.input_shapes)
        out.append(f"{report.name} ({report.type}): {shapes} -> {show(report.output_shape)}")
        out.extend(f"    {line}" for line in lines)
        out.append("")
    out.extend(_totals_line(analysis))
    return "\n".join(out) + "\n"
