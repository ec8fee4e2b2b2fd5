"""The export report: rich tables for people, plain data for --format json."""

from __future__ import annotations

from typing import Any

from .pipeline import ExportResult
from .quantize import ModelFigures
from .verify import TOLERANCE, Check


def render_report(result: ExportResult) -> list[Any]:
    """rich renderables: a summary, the verification table, and the quantization table if any."""
    from rich.markup import escape
    from rich.table import Table

    run = result.run
    summary = Table(title="cnnspec export", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    accuracy = run.eval_accuracy
    for key, value in (
        ("checkpoint", f"{run.checkpoint} (epoch {run.payload.get('epoch', '?')}, {run.eval_split} accuracy "
                       f"{'unknown' if accuracy is None else f'{accuracy:.2%}'})"),
        ("spec", f"{run.spec.name} (sha256 {run.spec.hash[:12]})"),
        ("exporter", f"torch.onnx.export(dynamo=True), opset {result.options.opset}, weights embedded"),
        ("graph", f"input [batch, {', '.join(map(str, run.spec.input.shape))}] -> logits "
                  f"[{', '.join(map(str, result.output_dims))}]; onnx.checker full check and shape inference passed"),
        ("data", result.data_note),
        ("model", f"{len(result.model_bytes):,} bytes" + (
            f", {result.options.quantize} (the fp32 graph is the one compared with PyTorch below)"
            if result.options.quantize != "none" else ", float32")),
    ):
        summary.add_row(key, escape(value))
    tables = [summary, _checks_table(result.checks)]
    if result.quantization:
        tables.append(_quantization_table(result.quantization))
    return tables


def _checks_table(checks: list[Check]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    tolerance = checks[0].tolerance if checks else TOLERANCE
    table = Table(title="verification: onnxruntime vs PyTorch", title_justify="left",
                  caption=f"pass: max diff <= {tolerance:g}, top-1 100% on dataset images, shapes equal",
                  caption_justify="left")
    for column in ("inputs", "batch", "max |ort-torch|", "top-1 agree", "ONNX output", "static analysis", "result"):
        table.add_column(column, justify="right" if column in ("batch", "max |ort-torch|", "top-1 agree") else "left")
    for check in checks:
        table.add_row(
            check.inputs, str(check.batch), f"{check.max_abs_diff:.2e}",
            f"{check.top1_agreement:.1%}", escape(str(check.onnx_shape)), escape(str(check.expected_shape)),
            "[green]pass[/green]" if check.passed else "[red]FAIL[/red]")
    return table


def _quantization_table(rows: list[ModelFigures]) -> Any:
    from rich.table import Table

    table = Table(title="quantization (test split; onnxruntime CPU, 1 thread)", title_justify="left")
    for column in ("model", "size", "latency b=1", "latency b=32", "test accuracy", "change", "agrees with fp32"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base = rows[0]
    for row in rows:
        change = "" if row is base or row.accuracy is None else _change(base, row)
        speed1 = base.latency_ms[1] / row.latency_ms[1]
        speed32 = base.latency_ms[32] / row.latency_ms[32]
        table.add_row(
            row.label, f"{row.size_bytes / 1e6:.2f} MB ({row.size_bytes / base.size_bytes:.0%})",
            f"{row.latency_ms[1]:.3f} ms ({speed1:.2f}x)", f"{row.latency_ms[32]:.3f} ms ({speed32:.2f}x)",
            "n/a" if row.accuracy is None else f"{row.accuracy:.2%}", change,
            "" if row.disagreements is None else _agreement(row))
    return table


def _change(base: ModelFigures, row: ModelFigures) -> str:
    """The exact accuracy change: images gained or lost, then percentage points unrounded to zero
    (5 of 10,000 is -0.05 pt, never "+0.0")."""
    delta = (row.correct or 0) - (base.correct or 0)
    points = delta / (row.images or 1) * 100
    return f"{delta:+,} image{'s' if abs(delta) != 1 else ''} ({points:+.4g} pt)" if delta else "0 images (0 pt)"


def _agreement(row: ModelFigures) -> str:
    """Exact top-1 agreement: '9,995 of 10,000 (5 differ)'."""
    images, differ = row.images or 0, row.disagreements or 0
    return f"{images - differ:,} of {images:,}" + (f" ({differ:,} differ)" if differ else " (all)")


def report_json(result: ExportResult) -> dict[str, Any]:
    """The report as plain data (for tests and ``--format json``)."""
    return {
        "checkpoint": str(result.run.checkpoint),
        "spec_name": result.run.spec.name,
        "spec_hash": result.run.spec.hash,
        "opset": result.options.opset,
        "quantize": result.options.quantize,
        "checks": [{**check.__dict__, "passed": check.passed} for check in result.checks],
        "quantization": [row.__dict__ for row in result.quantization],
        "problems": list(result.problems),
        "warnings": list(result.warnings),
        "written": [str(p) for p in result.written],
        "passed": result.passed,
        "seconds": round(result.seconds, 3),
    }
