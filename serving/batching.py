"""Dynamic batching: coalesce concurrent requests for one model version into one onnxruntime run.

Policy (per version, ``instances`` runs at a time, each in a worker thread, never on the event loop):

- Requests queue in arrival order. Dispatch is scheduled with ``call_soon``, so every request the
  event loop handled in the same turn joins the same batch, without any timer.
- When an instance is free, the batcher takes whole requests from the head of the queue up to
  ``max_batch_size`` rows and runs them as one call (inputs concatenated along axis 0), then slices
  the outputs back by each request's row range. A request is never split across batches.
- It waits for more only for requests it knows are on their way (``Arrivals``: their headers have
  been read within the last ``max_queue_delay`` and their body is still arriving), and never longer
  than ``max_queue_delay`` after the oldest queued request arrived. With nothing else pending, or
  with a full batch, it dispatches at once, so an idle server adds no delay, and a client that
  trickles its body in slowly cannot hold every batch back. While all instances are busy, requests accumulate and
  the next batch takes them together (batches grow with load by themselves).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter_ns

import numpy as np

from .errors import ServingError, Unavailable
from .metrics import ModelMetrics
from .model import ModelVersion
from .statistics import Outputs, Timing, VersionStats

log = logging.getLogger("serving")


class InferenceFailed(ServingError):
    """onnxruntime raised while running a batch (500)."""

    status = 500


class Arrivals:
    """Requests for one model whose headers are in and whose body is still being read."""

    __slots__ = ("count", "last_ns")

    def __init__(self) -> None:
        self.count = 0
        self.last_ns = 0

    def start(self) -> None:
        self.count += 1
        self.last_ns = perf_counter_ns()

    def done(self) -> None:
        self.count -= 1

    def expected(self, now_ns: int, window_ns: int) -> bool:
        """True if a request is on its way that started within ``window_ns`` (the newest one did)."""
        return self.count > 0 and now_ns - self.last_ns < window_ns


class _Pending:
    """A queued request: its input arrays, its row count and the future its handler awaits."""

    __slots__ = ("feeds", "rows", "future", "enqueued_ns", "queue_ns")

    def __init__(self, feeds: dict[str, np.ndarray], rows: int, future: asyncio.Future, enqueued_ns: int):
        self.feeds = feeds
        self.rows = rows
        self.future = future
        self.enqueued_ns = enqueued_ns
        self.queue_ns = 0


class Batcher:
    """The queue and worker threads of one model version."""

    def __init__(self, version: ModelVersion, max_queue_delay_us: int, instances: int,
                 metrics: ModelMetrics, stats: VersionStats, arrivals: Arrivals | None = None):
        self.version = version
        self.max_batch_size = max(1, version.max_batch_size)
        self.delay_ns = max_queue_delay_us * 1000
        self.instances = instances
        self.metrics = metrics
        self.stats = stats
        self._arrivals = arrivals or Arrivals()
        self._executor = ThreadPoolExecutor(instances, thread_name_prefix=f"ort-{version.name}-{version.version}")
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._free = instances
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_waiters: list[asyncio.Future] = []
        self._closed = False

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._free < self.instances

    def submit(self, feeds: dict[str, np.ndarray], rows: int) -> asyncio.Future:
        """Queue a request; the returned future resolves to its output arrays (``rows`` rows each), an
        ``Outputs`` list whose ``timing`` says how long the request queued and its batch computed."""
        if self._closed:
            raise Unavailable(f"model '{self.version.name}' version {self.version.version} was unloaded; retry")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(_Pending(feeds, rows, future, perf_counter_ns()))
        self._queued_rows += rows
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return future

    def _dispatch(self) -> None:
        """Start batches while an instance is free and the queue holds work (see the module policy)."""
        self._scheduled = False
        while self._queue and self._free:
            if self._queued_rows < self.max_batch_size and self.delay_ns:
                now = perf_counter_ns()
                wait_ns = self._queue[0].enqueued_ns + self.delay_ns - now
                if wait_ns > 0 and self._arrivals.expected(now, self.delay_ns):
                    if self._timer is None:
                        self._timer = self._loop.call_later(wait_ns / 1e9, self._on_timer)
                    return
            self._launch(self._take_batch())

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
            rows += self._queue[0].rows
            batch.append(self._queue.popleft())
        self._queued_rows -= rows
        return batch

    def _launch(self, batch: list[_Pending]) -> None:
        self._free -= 1
        started = perf_counter_ns()
        queue_metric = self.metrics.queue
        for pending in batch:
            pending.queue_ns = waited = started - pending.enqueued_ns
            queue_metric.observe(waited / 1e9)
        try:
            self._executor.submit(self._execute, batch)
        except RuntimeError as error:  # the executor was shut down: fail these requests, never hang them
            self._finish(batch, None, error, 0, 0)

    def _execute(self, batch: list[_Pending]) -> None:
        """Worker thread: concatenate, run, and hand the result back to the event loop."""
        try:
            started = perf_counter_ns()
            if len(batch) == 1:
                feeds = batch[0].feeds
            else:
                feeds = {name: np.concatenate([p.feeds[name] for p in batch]) for name in batch[0].feeds}
            ready = perf_counter_ns()
            outputs = self.version.run(feeds)
            done = perf_counter_ns()
            self._loop.call_soon_threadsafe(self._finish, batch, outputs, None, ready - started, done - ready)
        except BaseException as error:  # noqa: BLE001 - every failure must reach the waiting requests
            self._loop.call_soon_threadsafe(self._finish, batch, None, error, 0, 0)

    def _finish(self, batch: list[_Pending], outputs: list[np.ndarray] | None, error: BaseException | None,
                input_ns: int, infer_ns: int) -> None:
        self._free += 1
        if error is not None:
            log.error("model %s version %s: inference failed: %s", self.version.name, self.version.version, error)
            failure = InferenceFailed(f"inference failed in onnxruntime: {error}")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
        else:
            self._deliver(batch, outputs, input_ns, infer_ns)
        if self._queue:
            self._dispatch()
        elif self._free == self.instances:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    def _deliver(self, batch: list[_Pending], outputs: list[np.ndarray], input_ns: int, infer_ns: int) -> None:
        started = perf_counter_ns()
        rows = sum(p.rows for p in batch)
        if len(batch) == 1:
            results = [outputs]
        else:
            results, start = [], 0
            for pending in batch:
                end = start + pending.rows
                results.append([output[start:end] for output in outputs])
                start = end
        output_ns = perf_counter_ns() - started
        self.stats.record_execution(rows, input_ns, infer_ns, output_ns)
        self.metrics.batch_size.observe(rows)
        self.metrics.compute.observe(infer_ns / 1e9)
        self.metrics.rows.inc(rows)
        for pending, arrays in zip(batch, results):
            if not pending.future.done():
                pending.future.set_result(Outputs(arrays, Timing(pending.queue_ns, input_ns, infer_ns, output_ns)))

    async def drain(self) -> None:
        """Wait until the queue is empty and no batch runs, then release the worker threads."""
        while self.busy:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter
        if self._timer is not None:
            self._timer.cancel()
        self._closed = True
        self._executor.shutdown(wait=False)
