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


def render(analysis: Analysis, format_: str, *, explain: bool = False, width: int | None = None) -> str:
    """The analysis as text in one of: table, json, markdown, mermaid; a table fits ``width`` columns
    where it can (see render_table)."""
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
    return render_table(analysis, width)


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


RF_LEGEND = ("receptive field: SxS jJ sS = SxS input pixels seen, J input pixels between neighbouring "
             "outputs (jump), S the input coordinate of the first output's field centre (start); "
             "<= an upper bound; - for vectors")
#: Columns that may wrap onto several lines in a narrow terminal: the widest of the first group
#: first, the output shapes only when that is not enough; numbers never wrap.
FOLDABLE = (("layer", "inputs", "type", "RF"), ("output",))
NARROWEST = 8


def render_table(analysis: Analysis, width: int | None = None) -> str:
    """An aligned box-drawing table with a totals row (rich's heavy-head style), then the totals and
    a legend of the receptive-field column; no line ends in spaces.

    With ``width`` (the terminal's columns) a table that would be wider is redrawn to fit: no box
    (two spaces between columns), no inputs column when every cell of it is empty, "RF" for
    "receptive field", short counts (118.01M) for params and MACs, and then the layer, inputs,
    type and RF columns wrap onto more lines, widest first, down to 8 characters each (the output
    shapes only when that is not enough). Numbers never wrap; a table that still does
    not fit is printed whole rather than unreadable.

    Drawn directly rather than through rich.Table: for ResNet-50's 175 rows rich's layout engine
    takes ~170 ms with its import, more than the whole analysis, and every cell here is plain
    ASCII of known width, so nothing needs measuring.
    """
    totals = analysis.totals()
    headers = list(HEADERS)
    footer = ["total", "", "", "", fmt(totals["params"]), fmt(totals["macs"]), "",
              human_bytes(totals["activation_bytes"])]
    rows = _rows(analysis)
    widths = _widths(headers, footer, rows)
    title = f"{analysis.name}: input {show(analysis.input_shape)} -> output {show(analysis.output_shape)}"
    if width is None or _boxed_width(widths) <= width:
        right = [h in ("params", "MACs", "memory") for h in headers]

        def line(cells: list[str], edge: str, sep: str) -> str:
            padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
            return f"{edge} " + f" {sep} ".join(padded) + f" {edge}"

        def rule(left: str, fill: str, cross: str, end: str) -> str:
            return left + cross.join(fill * (w + 2) for w in widths) + end

        out = [title, rule("┏", "━", "┳", "┓"), line(headers, "┃", "┃"), rule("┡", "━", "╇", "┩"),
               *(line(row, "│", "│") for row in rows), rule("├", "─", "┼", "┤"), line(footer, "│", "│"),
               rule("└", "─", "┴", "┘")]
    else:
        out = [title, *_narrow_table(headers, footer, rows, width)]
    out += [text for line in [*_totals_line(analysis), RF_LEGEND] for text in _wrap_words(line, width)]
    return "\n".join(text.rstrip() for text in out) + "\n"


def _narrow_table(headers: list[str], footer: list[str], rows: list[list[str]], width: int) -> list[str]:
    if not any(row[2] for row in rows):  # a sequential model: every inputs cell is empty
        drop = headers.index("inputs")
        headers, footer = headers[:drop] + headers[drop + 1:], footer[:drop] + footer[drop + 1:]
        rows = [row[:drop] + row[drop + 1:] for row in rows]
    headers = ["RF" if h == "receptive field" else h for h in headers]
    widths = _widths(headers, footer, rows)
    if _plain_width(widths) > width:  # exact counts stay in the totals lines below the table
        counts = [i for i, h in enumerate(headers) if h in ("params", "MACs")]
        rows = [[short_count(int(c.replace(",", ""))) if i in counts else c for i, c in enumerate(row)] for row in rows]
        footer = [short_count(int(c.replace(",", ""))) if i in counts else c for i, c in enumerate(footer)]
        widths = _widths(headers, footer, rows)
    for group in FOLDABLE:  # narrow the widest column of the first group that still can, one step at a time
        columns = [headers.index(name) for name in group if name in headers]
        while _plain_width(widths) > width and any(widths[i] > NARROWEST for i in columns):
            widths[max(columns, key=lambda i: widths[i])] -= 1
    right = [h in ("params", "MACs", "memory") for h in headers]

    def line(cells: list[str]) -> list[str]:
        parts = [_fold(c, w) for c, w in zip(cells, widths)]
        return ["  ".join((p[k] if k < len(p) else "").rjust(w) if r else (p[k] if k < len(p) else "").ljust(w)
                          for p, w, r in zip(parts, widths, right)) for k in range(max(len(p) for p in parts))]

    rule = "  ".join("─" * w for w in widths)
    return [*line(headers), rule, *(text for row in rows for text in line(row)), rule, *line(footer)]


def _widths(headers: list[str], footer: list[str], rows: list[list[str]]) -> list[int]:
    return [max(len(row[i]) for row in [headers, footer, *rows]) for i in range(len(headers))]


def _boxed_width(widths: list[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1


def _plain_width(widths: list[int]) -> int:
    return sum(widths) + 2 * (len(widths) - 1)


def _fold(text: str, width: int) -> list[str]:
    """``text`` in pieces of at most ``width`` characters, broken after '.', ',', '_' or a space
    where one falls in the piece ('layer1.0.' / 'conv1'), else cut."""
    pieces = []
    while len(text) > width:
        cut = max(text.rfind(mark, 0, width) for mark in "., _") + 1
        cut = cut if cut > 0 else width
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*pieces, text]


def _wrap_words(text: str, width: int | None) -> list[str]:
    if width is None:
        return [text]
    import textwrap

    return textwrap.wrap(text, max(width, 20), subsequent_indent="  ")


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
    lines.extend(f"- {line}" for line in [*_totals_line(analysis), RF_LEGEND])
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
