"""Progress display of a run: a bar on a terminal, plain lines in logs, silence on other ranks."""

from __future__ import annotations

import sys
import time
from typing import Any

PLAIN_LOG_SECONDS = 30.0     # progress lines without a terminal: at most one per this many seconds


class Reporter:
    """Progress of rank 0: a rich progress bar on a terminal, plain log lines otherwise
    (CI logs, files, pipes); silent on the other ranks."""

    def __init__(self, enabled: bool, out: Any = None):
        from rich.console import Console

        self.enabled = enabled
        self.out = out or sys.stdout
        self.console = Console(file=self.out)
        self.live = enabled and self.console.is_terminal
        self.progress: Any = None
        self.task: Any = None
        self.last_line = 0.0
        self.batch_images = 1  # images per step over all processes, for the plain ETA

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.out, flush=True)

    def start_epoch(self, label: str, steps: int) -> None:
        self.last_line = time.perf_counter()
        if not self.live:
            self.line(f"{label}: {steps:,} steps")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[accuracy]:6.2%}  {task.fields[speed]:,.0f} img/s"),
            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(label, total=steps, loss=float("nan"), accuracy=0.0, speed=0.0)

    def update(self, step: int, steps: int, loss: float, accuracy: float, speed: float, label: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=loss, accuracy=accuracy, speed=speed)
        elif self.enabled and time.perf_counter() - self.last_line >= PLAIN_LOG_SECONDS:
            self.last_line = time.perf_counter()
            remaining = (steps - step) * self.batch_images / speed if speed > 0 else 0.0
            self.line(f"{label}: step {step:,}/{steps:,}  loss {loss:.4f}  acc {accuracy:.2%}  "
                      f"{speed:,.0f} img/s  ETA {_format_seconds(remaining)}")

    def end_epoch(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

