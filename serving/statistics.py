"""Triton's statistics extension: per model version, what ``/v2/models/{m}/stats`` and gRPC
``ModelStatistics`` report, with the semantics of Triton's documentation (``docs/protocol/
extension_statistics.md``) and the invariants its load tool, perf_analyzer, checks.

Per version:

- ``inference_count``: inferences performed, i.e. batch rows summed over model executions (a
  request with batch 8 counts 8); ``execution_count``: model executions (a dynamic batch of 5
  requests counts 1); ``last_inference``: when the last execution finished, ms since the epoch.
- ``inference_stats``, each ``{count, ns}`` (nanoseconds summed over requests):
  ``success`` every successful inference request, its time from request received to response
  ready; ``fail`` every failed one (any 4xx/5xx answer for this version), its time likewise;
  ``queue`` time from entering the batcher's queue to its batch starting; ``compute_input``
  time preparing the batch's inputs (concatenating requests); ``compute_infer`` the onnxruntime
  run; ``compute_output`` slicing the batch's outputs back and serializing the response. As in
  Triton, a request in a batch is charged the whole batch's compute times, and queue and compute
  are recorded together with success, so ``success.count == queue.count == compute_input.count
  == compute_infer.count == compute_output.count`` always (perf_analyzer refuses a server where
  the three compute counts differ). ``cache_hit``/``cache_miss`` stay 0 (no response cache).
- ``batch_stats``: per batch size (rows of one execution), ``compute_input``/``compute_infer``/
  ``compute_output`` with count = executions of that size; so ``execution_count`` = the sum of
  their counts and ``inference_count`` = the sum of ``batch_size * count``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

INFER_STAT_KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                   "cache_hit", "cache_miss")


@dataclass
class Duration:
    """Triton's ``StatisticDuration``: a count and the total nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class Timing:
    """Where one request's time went inside the batcher (nanoseconds); its batch's compute times."""

    __slots__ = ("queue_ns", "input_ns", "infer_ns", "output_ns")

    def __init__(self, queue_ns: int = 0, input_ns: int = 0, infer_ns: int = 0, output_ns: int = 0):
        self.queue_ns = queue_ns
        self.input_ns = input_ns
        self.infer_ns = infer_ns
        self.output_ns = output_ns


class Outputs(list):
    """A request's output arrays (model output order), carrying the request's ``Timing``."""

    __slots__ = ("timing",)

    def __init__(self, arrays: list, timing: Timing):
        super().__init__(arrays)
        self.timing = timing


@dataclass
class BatchStats:
    """Triton's ``InferBatchStatistics`` for one batch size."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class VersionStats:
    """Triton's ``ModelStatistics`` for one version. Updated on the event loop only."""

    name: str
    version: int
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStats] = field(default_factory=dict)

    def record_execution(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One model execution of ``rows`` rows (the batcher calls this once per batch)."""
        self.last_inference_ms = int(time.time() * 1000)
        self.inference_count += rows
        self.execution_count += 1
        batch = self.batches.get(rows)
        if batch is None:
            batch = self.batches[rows] = BatchStats()
        batch.compute_input.add(input_ns)
        batch.compute_infer.add(infer_ns)
        batch.compute_output.add(output_ns)

    def record_success(self, request_ns: int, timing: Timing, serialize_ns: int = 0) -> None:
        """A successful request: its total time, and its queue and compute times from ``timing``."""
        self.success.add(request_ns)
        self.queue.add(timing.queue_ns)
        self.compute_input.add(timing.input_ns)
        self.compute_infer.add(timing.infer_ns)
        self.compute_output.add(timing.output_ns + serialize_ns)

    def record_failure(self, request_ns: int) -> None:
        self.fail.add(request_ns)

    def json(self) -> dict[str, Any]:
        """The Triton JSON (HTTP) form; gRPC's ``ModelStatistics`` message has the same field names."""
        return {
            "name": self.name, "version": str(self.version), "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {key: getattr(self, key).json() for key in INFER_STAT_KEYS},
            "batch_stats": [{"batch_size": size, "compute_input": b.compute_input.json(),
                             "compute_infer": b.compute_infer.json(), "compute_output": b.compute_output.json()}
                            for size, b in sorted(self.batches.items())],
            "memory_usage": [],
        }
