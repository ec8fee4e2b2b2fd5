"""Where and how a training step computes: the device, CPU threads, bf16/fp16 autocast, memory layout."""

from __future__ import annotations

import os

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch
from torch import nn

from . import distributed
from .options import PRECISIONS
from ..errors import UsageError
from ..spec.model import Spec


def pick_device(requested: str, context: distributed.Context) -> torch.device:
    """auto: cuda, then mps, then cpu. Under torchrun each CUDA process takes GPU ``local_rank``."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        requested = "cuda" if cuda else "mps" if mps and not context.distributed else "cpu"
    if requested == "cuda" and not cuda:
        raise UsageError("--device cuda, but torch sees no CUDA GPU", ["use --device auto or --device cpu"])
    if requested == "mps" and not mps:
        raise UsageError("--device mps, but this torch has no MPS (Apple GPU) support", ["use --device auto or cpu"])
    if requested == "mps" and context.distributed:
        raise UsageError("distributed training (torchrun) supports cuda and cpu, not mps")
    if requested == "cuda":
        index = context.local_rank if context.distributed else torch.cuda.current_device()
        torch.cuda.set_device(index)
        torch.backends.cudnn.benchmark = True  # fixed input shapes: autotune each convolution once
        return torch.device("cuda", index)
    return torch.device(requested)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): there bf16 convolutions
    run about twice as fast as fp32; elsewhere they are emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:  # not Linux: stay with fp32
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


@dataclass
class Precision:
    """How a training step computes. ``auto``: on CUDA bf16 mixed precision where the GPU supports
    it, else fp16 with loss scaling (GradScaler); on a CPU with native bf16 (AVX512-BF16/AMX) bf16
    mixed precision (measured 1.6x faster than fp32 for SimpleCNN here); fp32 otherwise. Mixed
    precision keeps fp32 weights and optimizer state; evaluation always runs in fp32, like the
    exported model."""

    dtype: torch.dtype | None
    scaler: Any

    @classmethod
    def choose(cls, requested: str, device: torch.device) -> "Precision":
        if requested == "auto":
            if device.type == "cuda":
                requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                requested = "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
        if requested == "fp32":
            return cls(None, None)
        if requested == "bf16":
            return cls(torch.bfloat16, None)
        if requested == "fp16" and device.type == "cuda":
            return cls(torch.float16, torch.amp.GradScaler("cuda"))
        raise UsageError(f"--precision {requested} is not available on {device.type}",
                         [f"choose one of {', '.join(PRECISIONS)} (fp16 needs CUDA)"])

    def autocast(self, device: torch.device) -> ContextManager[Any]:
        return torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    @property
    def label(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16 mixed precision", torch.float16: "fp16 mixed precision"}[self.dtype]


def use_channels_last(spec: Spec, device: torch.device) -> bool:
    """NHWC suits the convolution kernels of CUDA (tensor cores) and of oneDNN on CPU (measured
    ~1.8x faster for SimpleCNN on 2 cores); MPS keeps the default layout."""
    return device.type in ("cuda", "cpu") and any(node.layer.is_convolution for node in spec.nodes)


def keep_gradients_channels_last(model: nn.Module) -> None:
    """Under channels_last, hand each Flatten's input gradient back in channels_last too.

    Flatten reads a channels_last map in NCHW order, so its backward returns an NCHW gradient;
    the pooling or activation before it then converts its own input and output on every step to
    match (for SimpleCNN two [64, 64, 14, 14] copies, 0.4 ms of a 10 ms step on 2 cores). One
    [N, C, H, W] copy of the small flattened gradient instead avoids them. Values are unchanged."""
    def channels_last_gradient(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if (isinstance(x, torch.Tensor) and x.requires_grad and x.dim() == 4
                and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()):
            x.register_hook(lambda grad: grad.contiguous(memory_format=torch.channels_last))

    for module in model.modules():
        if isinstance(module, nn.Flatten):
            module.register_forward_pre_hook(channels_last_gradient)


def threads_per_process(context: distributed.Context) -> int:
    """CPU threads for this process: OMP_NUM_THREADS when set (torch's convention; torchrun sets it
    to 1 for multi-process runs unless you set it), else the cores this process may run on
    (``os.sched_getaffinity`` respects taskset and container CPU sets) shared by the processes of
    its node."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, context.local_world_size))
