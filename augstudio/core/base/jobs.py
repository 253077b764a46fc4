"""One job shape for all long work.

A job is a generator that yields ``Progress`` and returns its result (``StopIteration.value``). It
checks a ``CancelToken`` between steps and raises ``JobCancelled`` when asked to stop. It knows nothing
of the terminal (the CLI drives it with tqdm) or of Qt (the GUI runs it on a worker thread).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from .errors import JobCancelled


@dataclass
class Progress:
    done: int
    total: int
    message: str = ""
    preview: Any = None  # an optional picture / tensor / dict for a live view (copy before sharing)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class CancelToken:
    """Thread-safe cancel flag shared by the job and whoever runs it."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, how_far: str = "") -> None:
        if self._event.is_set():
            raise JobCancelled(f"cancelled{': ' + how_far if how_far else ''}")


Job = Generator[Progress, None, Any]


def run_job(job: Job, on_progress: Callable[[Progress], None] | None = None) -> Any:
    """Drive a job to the end and return its result."""
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)


def run_with_tqdm(job: Job, desc: str = "", enabled: bool | None = None) -> Any:
    """Drive a job with a tqdm bar on a terminal (quiet otherwise)."""
    from tqdm import tqdm  # deferred: tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    bar = tqdm(total=0, desc=desc, disable=not enabled, unit="img", dynamic_ncols=True)

    def show(p: Progress):
        if bar.total != p.total:
            bar.total = p.total
            bar.refresh()
        bar.n = p.done
        if p.message:
            bar.set_postfix_str(p.message[-60:], refresh=False)
        bar.refresh()

    try:
        return run_job(job, show)
    finally:
        bar.close()
