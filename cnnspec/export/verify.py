"""Verification: onnxruntime against PyTorch on the same inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

TOLERANCE = 1e-4
RANDOM_BATCHES = (1, 7)


@dataclass
class Check:
    """One onnxruntime-vs-PyTorch comparison."""

    inputs: str
    batch: int
    max_abs_diff: float
    top1_agreement: float
    onnx_shape: list[int]
    expected_shape: list[int]
    tolerance: float
    require_top1: bool

    @property
    def passed(self) -> bool:
        return (self.max_abs_diff <= self.tolerance and self.onnx_shape == self.expected_shape
                and (self.top1_agreement == 1.0 or not self.require_top1))


def compare(session: Any, model: Any, inputs: Any, source: str, output_shape: Sequence[int],
            tolerance: float, require_top1: bool) -> Check:
    """Run both on the same float32 batch: max |ort - torch| and the fraction of equal argmaxes."""
    import numpy as np
    import torch

    batch = np.ascontiguousarray(inputs, dtype=np.float32)
    ort_out = session.run(["logits"], {"input": batch})[0]
    with torch.inference_mode():
        torch_out = model(torch.from_numpy(batch)).numpy()
    same_shape = ort_out.shape == torch_out.shape
    diff = float(np.abs(ort_out - torch_out).max()) if same_shape else math.inf
    agree = float((ort_out.argmax(-1) == torch_out.argmax(-1)).mean()) if same_shape else 0.0
    expected = [len(batch), *map(int, output_shape)]
    return Check(source, len(batch), diff, agree, list(ort_out.shape), expected, tolerance, require_top1)


def verify(session: Any, model: Any, input_shape: Sequence[int], output_shape: Sequence[int],
           real_images: Any | None, tolerance: float = TOLERANCE, seed: int = 0) -> list[Check]:
    """Random N(0, 1) inputs (in normalised units) at batch 1 and 7, then real images at batch 1
    and at the whole odd-sized sample; top-1 agreement must be 100% on the real images."""
    import numpy as np

    generator = np.random.default_rng(seed)
    checks = [compare(session, model, generator.standard_normal((n, *input_shape)).astype(np.float32),
                      "random", output_shape, tolerance, False) for n in RANDOM_BATCHES]
    if real_images is not None and len(real_images):
        for batch in (real_images[:1], real_images):
            checks.append(compare(session, model, batch, "dataset", output_shape, tolerance, True))
    return checks
