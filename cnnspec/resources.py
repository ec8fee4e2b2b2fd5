"""Will a model fit? The memory a command needs, estimated from the static analysis, against the
memory this machine has free, so that ``summary``, ``train`` and ``export`` refuse a model that
cannot fit before they allocate anything (instead of a torch out-of-memory traceback).

Estimates (float32, 4 bytes an element; B = batch size, P = parameter and buffer bytes, A = the sum
of every layer's output bytes at batch 1, M = the largest layer output, I = the input):
- a forward pass without gradients (``summary``): ``P + B * (I + 2 M)``, the weights plus the
  largest layer's input and output alive at once;
- ``export``: ``3 P + B * (I + 2 M)`` at the verification batch: the PyTorch module, the ONNX
  model and the onnxruntime session each hold the weights;
- training: ``4 P + B * (I + 2 A)``: weights, gradients and two Adam moments, and every layer's
  output kept for the backward pass plus its gradient.

Free memory is psutil's ``available`` when psutil is installed, else ``MemAvailable`` from
/proc/meminfo, else ``os.sysconf`` free pages, capped by a cgroup v2 ``memory.max``; CUDA devices
report their own (``torch.cuda.mem_get_info``). Torch is imported only for a CUDA device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Diagnostic, SpecError
from .report import human_bytes

BYTES_PER_ELEMENT = 4


@dataclass(frozen=True)
class Estimate:
    """What a command needs: the weights' share and the activations' share, in bytes."""

    command: str
    weight_bytes: int
    activation_bytes: int
    batch_size: int
    how: str

    @property
    def total(self) -> int:
        return self.weight_bytes + self.activation_bytes


def estimate(analysis: Any, command: str, batch_size: int = 1) -> Estimate:
    """The memory ``command`` (summary, export or train) needs for ``analysis`` at ``batch_size``."""
    totals = analysis.totals()
    weights = (totals["params"] + totals["buffers"]) * BYTES_PER_ELEMENT
    largest = max((layer.activation_bytes for layer in analysis.layers), default=0)
    inference = batch_size * (totals["input_bytes"] + 2 * largest)
    if command == "train":
        return Estimate(command, 4 * weights, batch_size * (totals["input_bytes"] + 2 * totals["activation_bytes"]),
                        batch_size, "weights, gradients and 2 optimizer moments; every output and its gradient")
    if command == "export":
        return Estimate(command, 3 * weights, inference, batch_size,
                        "weights in PyTorch, ONNX and onnxruntime; the largest layer's input and output")
    return Estimate(command, weights, inference, batch_size, "weights; the largest layer's input and output")


def available_bytes(device: Any = None) -> int | None:
    """Free memory on ``device`` (a torch.device or its type name; default the CPU), or None when
    it cannot be told."""
    kind = getattr(device, "type", device) or "cpu"
    if kind == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device if not isinstance(device, str) else None)[0])
    if kind != "cpu":
        return None
    free = _host_available()
    limit = _cgroup_free()
    if free is None or limit is None:
        return free if limit is None else limit
    return min(free, limit)


def _host_available() -> int | None:
    try:
        import psutil  # optional
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_free() -> int | None:
    """What a cgroup v2 memory limit (a container's) still allows, or None without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        return None


def check_fits(analysis: Any, command: str, batch_size: int = 1, device: Any = None) -> Estimate:
    """Raise a SpecError pointing at the largest layer when ``command`` cannot fit in free memory."""
    needed = estimate(analysis, command, batch_size)
    free = available_bytes(device)
    if free is None or needed.total <= free:
        return needed
    largest = max(analysis.layers, key=lambda layer: layer.activation_bytes)
    where = analysis.spec.document.locate(largest.node.origin)
    shape = ", ".join(str(size) for size in largest.output_shape)
    kind = getattr(device, "type", device) or "cpu"
    raise SpecError([Diagnostic(
        f"the model does not fit in memory: `{command}` needs about {human_bytes(needed.total)}, and "
        f"{human_bytes(free)} {'are free on this machine' if kind == 'cpu' else 'are free on ' + kind}",
        where,
        received=f"{human_bytes(needed.weight_bytes)} for weights + {human_bytes(needed.activation_bytes)} for "
        f"activations at batch {needed.batch_size} ({needed.how}; float32); the largest output is "
        f"'{largest.name}' [{shape}], {human_bytes(largest.activation_bytes)} per image",
        hint="use fewer channels or a smaller input"
        + (", or a smaller --batch-size" if command == "train" else "") + ", or a machine with more memory",
    )], analysis.spec.text)
