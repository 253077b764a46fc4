"""Worker threads for the GUI: run a core job (a generator of ``Progress``) on a ``QThreadPool``.

* ``JobHandle`` is the GUI-thread side of one job: its title, cancel token, last progress, state, and Qt
  signals (delivered on the GUI thread because the handle lives there).
* ``JobRunnable`` drives the generator on a pool thread; progress is throttled so a fast job cannot flood
  the event loop.
* ``LatestWins`` runs one task at a time where a newer request supersedes older ones (the preview, saliency
  maps, mixes, TTA views): a new request replaces the pending one and cancels the running one; only the
  newest result is delivered. Its tasks run as ``JobRunnable``s too, optionally listed in the Jobs panel.

Errors cross to the GUI thread as exception objects: the user sees ``error_message(e)`` (an
``AugstudioError``'s message is written for users), the log gets the traceback.

Nothing here knows about torch; grad mode is thread-local, so jobs that need gradients wrap their work in
``torch.enable_grad()`` themselves.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from augstudio.core.base.errors import AugstudioError, JobCancelled
from augstudio.core.base.jobs import CancelToken, Progress
from augstudio.gui.qt import gc_guard

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
log = logging.getLogger(__name__)


def error_message(error: BaseException) -> str:
    """What the user reads: an AugstudioError's own message (written for users), else the exception's type
    and message (a bug; the traceback is in the log)."""
    if isinstance(error, AugstudioError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class _Bridge(QObject):
    """Signals emitted from a pool thread; queued to the GUI thread where this object lives."""

    progress = Signal(object)
    result = Signal(object)
    error = Signal(object)  # the exception
    cancelled = Signal(str)


class JobHandle(QObject):
    """One running (or finished) job as seen by the GUI."""

    progress = Signal(object)  # Progress
    finished = Signal(object)  # the job's result
    failed = Signal(object)  # the exception; error_message(e) is what the user reads
    cancelled = Signal(str)
    state_changed = Signal(str)
    ended = Signal()  # always emitted once, after finished / failed / cancelled

    def __init__(self, title: str, parent=None, background: bool = False):
        super().__init__(parent)
        self.title = title
        self.background = background  # a latest-wins task (a map, a mix): quitting does not ask about it
        self.superseded = False  # cancelled because a newer request replaced it
        self.output_dir = None  # where the job writes (export): the Jobs panel offers to open it
        self.token = CancelToken()
        self.state = RUNNING
        self.result: Any = None
        self.error: BaseException | None = None
        self.message = ""
        self.last: Progress | None = None
        self.started = time.monotonic()
        self.ended_at: float | None = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._bridge.result.connect(self._on_result)
        self._bridge.error.connect(self._on_error)
        self._bridge.cancelled.connect(self._on_cancelled)

    # -- control ----------------------------------------------------------------------------------
    def cancel(self) -> None:
        self.token.cancel()

    def is_running(self) -> bool:
        return self.state == RUNNING

    def elapsed(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started

    def eta(self) -> float | None:
        """Seconds left, from the rate so far (None until there is progress to go by)."""
        p = self.last
        if p is None or not p.total or p.done <= 0 or self.state != RUNNING:
            return None
        rate = p.done / max(self.elapsed(), 1e-6)
        return max(0.0, (p.total - p.done) / rate)

    # -- from the worker (GUI thread, queued) -------------------------------------------------------
    def _on_progress(self, p: Progress) -> None:
        if self.state != RUNNING:
            return
        self.last = p
        self.progress.emit(p)

    def _end(self, state: str) -> None:
        self.state = state
        self.ended_at = time.monotonic()
        self.state_changed.emit(state)

    def _on_result(self, result) -> None:
        self.result = result
        line = getattr(result, "line", None)
        self.message = line() if callable(line) else "done"
        self._end(DONE)
        self.finished.emit(result)
        self.ended.emit()

    def _on_error(self, error: BaseException) -> None:
        self.error = error
        self.message = error_message(error)
        self._end(FAILED)
        self.failed.emit(error)
        self.ended.emit()

    def _on_cancelled(self, msg: str) -> None:
        self.message = msg or "cancelled"
        self._end(CANCELLED)
        self.cancelled.emit(self.message)
        self.ended.emit()


def drive(make_job: Callable[[CancelToken], Any], token: CancelToken,
          on_progress: Callable[[Progress], None], min_interval: float = 0.05) -> Any:
    """Run ``make_job(token)`` to its end on this thread; returns its result. Progress is throttled to one
    report per ``min_interval`` seconds (the last one before the end is always sent)."""
    job = make_job(token)
    if not inspect.isgenerator(job):
        return job  # a plain function: its return value is the result
    last_sent = 0.0
    pending: Progress | None = None
    try:
        while True:
            if token.cancelled:
                # one more step: a job that honours the token stops there with its own message
                # (e.g. "export cancelled after 9 of 60 images; run it again to resume")
                try:
                    next(job)
                except StopIteration as stop:
                    return stop.value
                raise JobCancelled("cancelled")
            try:
                p = next(job)
            except StopIteration as stop:
                if pending is not None:
                    on_progress(pending)
                return stop.value
            now = time.monotonic()
            if now - last_sent >= min_interval or (p.total and p.done >= p.total):
                on_progress(p)
                last_sent = now
                pending = None
            else:
                pending = p
    finally:
        job.close()


class JobRunnable(QRunnable):
    def __init__(self, make_job, handle: JobHandle):  # on the GUI thread
        super().__init__()
        self.setAutoDelete(True)
        self.make_job = make_job
        self.title = handle.title
        self.bridge = handle._bridge
        self.token = handle.token
        # no automatic cycle collection from before the pool thread runs a line of Python until after its
        # last one (see gc_guard); released at the end of run()
        gc_guard.hold()

    def _emit(self, signal, value) -> None:
        """Emit to the GUI thread; after the window (and the handle) is gone there is nobody to tell."""
        try:
            signal.emit(value)
        except RuntimeError:  # "Signal source has been deleted": the app is closing
            self.token.cancel()

    def run(self) -> None:  # pool thread
        try:
            self._run()
        finally:
            gc_guard.release()  # the GUI thread's collector turns automatic collection back on

    def _run(self) -> None:
        b = self.bridge
        try:
            result = drive(self.make_job, self.token, lambda p: self._emit(b.progress, p))
        except JobCancelled as e:
            self._emit(b.cancelled, str(e))
        except AugstudioError as e:
            if self.token.cancelled:
                self._emit(b.cancelled, str(e))
            else:
                log.warning("%s: %s", self.title, e, exc_info=e)
                self._emit(b.error, e)
        except Exception as e:  # noqa: BLE001 - a bug in a job must reach the user, not kill the thread
            if self.token.cancelled and isinstance(e, RuntimeError):
                self._emit(b.cancelled, "cancelled")  # torn down while the app closes
                return
            log.error("%s failed", self.title, exc_info=e)
            self._emit(b.error, e)
        else:
            if self.token.cancelled and getattr(result, "cancelled", False):
                self._emit(b.cancelled, getattr(result, "line", lambda: "cancelled")())
            else:
                self._emit(b.result, result)


class LatestWins(QObject):
    """Run ``fn(token)`` off the GUI thread, one at a time; a new request supersedes older ones.

    ``submit(fn, on_result, on_error, title)``: if a task is running, its token is cancelled and the new
    request waits until it ends (only the newest waiting request is kept). Results of superseded requests
    are dropped; ``on_error`` gets the exception of a failed newest request. ``fn`` is a plain function or
    a job (a generator of ``Progress``) and may call ``token.check()`` to stop early. With ``publish`` (the
    context's), every task that starts is handed over as its ``JobHandle`` (so it shows in the Jobs panel).
    """

    def __init__(self, pool: QThreadPool, parent=None, publish: Callable[[JobHandle], None] | None = None):
        super().__init__(parent)
        self.pool = pool
        self.publish = publish
        self._seq = 0
        self._running: JobHandle | None = None
        self._pending: tuple | None = None

    def busy(self) -> bool:
        return self._running is not None or self._pending is not None

    def submit(self, fn: Callable[[CancelToken], Any], on_result: Callable[[Any], None],
               on_error: Callable[[BaseException], None] | None = None, title: str = "") -> int:
        self._seq += 1
        req = (self._seq, fn, on_result, on_error, title)
        if self._running is not None:
            self._running.superseded = True
            self._running.cancel()
            self._pending = req
        else:
            self._start(req)
        return self._seq

    def cancel(self) -> None:
        self._pending = None
        if self._running is not None:
            self._running.cancel()

    def _start(self, req) -> None:
        rid, fn, on_result, on_error, title = req
        handle = JobHandle(title or "update", self, background=True)
        self._running = handle
        handle.ended.connect(lambda: self._ended(rid, handle, on_result, on_error))
        if self.publish is not None:
            self.publish(handle)
        self.pool.start(JobRunnable(fn, handle))

    def _ended(self, rid: int, handle: JobHandle, on_result, on_error) -> None:
        if self._running is handle:
            self._running = None
        if self.publish is None:
            handle.deleteLater()  # nobody else keeps it (the preview makes one per render)
        if self._pending is not None:
            req, self._pending = self._pending, None
            self._start(req)
            return  # a newer request is on its way: this result is stale
        if rid != self._seq:
            return
        if handle.state == DONE and on_result is not None:
            on_result(handle.result)
        elif handle.state == FAILED and on_error is not None:
            on_error(handle.error)
