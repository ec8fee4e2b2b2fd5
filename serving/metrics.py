"""Prometheus metrics (``/metrics``); the Triton statistics of ``/v2/models/{m}/stats`` are in statistics.py.

Prometheus names (all prefixed ``cnnspec_``):

    inference_requests_total{model,outcome}     counter: outcome = success | client_error | server_error
    inference_rows_total{model}                 counter: rows (images) inferred; a batch-8 request adds 8
    request_duration_seconds{model,endpoint}    histogram: request received -> response sent
    queue_duration_seconds{model}               histogram: enqueued -> its batch started executing
    compute_duration_seconds{model}             histogram: one onnxruntime run of a batch
    batch_size{model}                           histogram: rows per onnxruntime run
    inflight_requests{model}                    gauge: inference requests being handled now
    model_ready{model,version}                  gauge: 1 while a version is loaded

Each app owns its registry (tests start several apps in one process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
QUEUE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.1, 0.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's Prometheus metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("cnnspec_inference_requests", "Inference requests by model and outcome.",
                                ["model", "outcome"], registry=r)
        self.rows = Counter("cnnspec_inference_rows", "Rows (images) inferred; a batch-N request counts N.",
                            ["model"], registry=r)
        self.latency = Histogram("cnnspec_request_duration_seconds", "Request received to response sent.",
                                 ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Histogram("cnnspec_queue_duration_seconds", "Time a request waited for its batch to start.",
                               ["model"], buckets=QUEUE_BUCKETS, registry=r)
        self.compute = Histogram("cnnspec_compute_duration_seconds", "One onnxruntime run of a batch.",
                                 ["model"], buckets=QUEUE_BUCKETS, registry=r)
        self.batch_size = Histogram("cnnspec_batch_size", "Rows per onnxruntime run (dynamic batching).",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.inflight = Gauge("cnnspec_inflight_requests", "Inference requests being handled now.",
                              ["model"], registry=r)
        self.model_ready = Gauge("cnnspec_model_ready", "1 while a model version is loaded.",
                                 ["model", "version"], registry=r)
        self._children: dict[str, ModelMetrics] = {}

    def for_model(self, model: str) -> "ModelMetrics":
        """Label-bound children, cached: ``labels()`` costs a dict lookup and a lock per call."""
        children = self._children.get(model)
        if children is None:
            children = self._children[model] = ModelMetrics(
                success=self.requests.labels(model, "success"),
                client_error=self.requests.labels(model, "client_error"),
                server_error=self.requests.labels(model, "server_error"),
                rows=self.rows.labels(model), latency=self.latency.labels(model, "infer"),
                classify_latency=self.latency.labels(model, "classify"), queue=self.queue.labels(model),
                compute=self.compute.labels(model), batch_size=self.batch_size.labels(model),
                inflight=self.inflight.labels(model))
        return children


@dataclass
class ModelMetrics:
    """The metric children of one model."""

    success: Any
    client_error: Any
    server_error: Any
    rows: Any
    latency: Any
    classify_latency: Any
    queue: Any
    compute: Any
    batch_size: Any
    inflight: Any

    def outcome(self, status: int) -> Any:
        return self.success if status < 400 else self.client_error if status < 500 else self.server_error

    def finish_inference(self, status: int, elapsed_s: float, loaded: Any, outputs: Any, serialize_ns: int) -> None:
        """Account for one finished infer request, over HTTP or gRPC alike: the Prometheus series,
        and Triton's statistics of the version that ran it (``loaded``, None when it was never
        resolved): success with its queue and compute times, or failure."""
        self.inflight.dec()
        self.outcome(status).inc()
        self.latency.observe(elapsed_s)
        if loaded is not None:
            if status < 400:
                loaded.stats.record_success(int(elapsed_s * 1e9), outputs.timing, serialize_ns)
            else:
                loaded.stats.record_failure(int(elapsed_s * 1e9))
