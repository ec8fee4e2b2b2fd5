"""The optimiser and the learning-rate schedule of a run, built from its options."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .options import OPTIMIZERS, SCHEDULERS, TrainOptions
from ..errors import UsageError


def make_optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    """adam / adamw / sgd (with momentum, Nesterov off) on every trainable parameter."""
    params = [p for p in model.parameters() if p.requires_grad]
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    if options.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    raise UsageError(f"unknown optimizer '{options.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")


def make_scheduler(optimizer: torch.optim.Optimizer, options: TrainOptions, steps_per_epoch: int) -> Any:
    """Stepped after every batch. cosine: lr follows half a cosine from lr to 0 over the run;
    step: lr x 0.1 after each third of the run; onecycle: warm up to lr over 30%, then anneal."""
    total = max(1, options.epochs * steps_per_epoch)
    schedulers = torch.optim.lr_scheduler
    if options.scheduler == "none":
        return None
    if options.scheduler == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=total)
    if options.scheduler == "step":
        return schedulers.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if options.scheduler == "onecycle":
        return schedulers.OneCycleLR(optimizer, max_lr=options.lr, total_steps=total)
    raise UsageError(f"unknown scheduler '{options.scheduler}'; choose one of {', '.join(SCHEDULERS)}")

