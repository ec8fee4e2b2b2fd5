"""torch.distributed for ``torchrun --nproc_per_node=N -m cnnspec train ...``, and nothing home-made.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (plus MASTER_ADDR/PORT); when they
are present ``start`` joins the process group (nccl when training on CUDA, gloo otherwise). Every
process trains its shard of the data (``data.epoch_order``, torch's DistributedSampler), gradients
are averaged by DistributedDataParallel, metric sums are all-reduced, and only rank 0 prints and
writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` processes (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0


def from_environment() -> Context:
    """The context torchrun describes in environment variables (a single process without them)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    return Context(
        rank=int(os.environ["RANK"]),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
    )


def start(context: Context, device_type: str) -> None:
    """Join the process group: nccl for CUDA, gloo for CPU. No-op for a single process."""
    if not context.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def stop(context: Context) -> None:
    """Leave the process group."""
    if not context.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum ``values`` over every process (in place, returned); unchanged for a single process."""
    if context.distributed:
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(module: torch.nn.Module, context: Context) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process: DDP syncs them at
    the start of each forward, but each process's last forward updated them with its own batch."""
    if context.distributed:
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel. DDP expects a gradient for every trainable parameter
    after each backward and dies in the next step otherwise; a spec's dead branch (a layer nobody
    reads, which ``analyze`` accepts with a warning) never gets one. So DDP is told to search the
    autograd graph for unused parameters exactly when the compiled model has a dead layer with
    trainable parameters; every other model keeps DDP's cheaper default."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=has_dead_parameters(model))


def has_dead_parameters(model: torch.nn.Module) -> bool:
    """Whether a trainable parameter sits in a layer the output does not depend on (``dead_layers``)."""
    dead = getattr(model, "dead_layers", [])
    return any(p.requires_grad for name in dead for p in model.get_submodule(name).parameters())


def barrier(context: Context) -> None:
    if context.distributed:
        import torch.distributed as dist

        dist.barrier()

