"""Ordered results from worker processes, for jobs whose items are independent (export).

One worker runs in this process. More: a process pool (forkserver on Linux, so no thread or CUDA state is
forked) fed a window of ``2 x workers`` items, so a cancel or Ctrl-C waits for at most the items in
flight; a crashed worker (killed, out of memory) ends the job with a clear error instead of a hang; each
worker ends soon after the process that runs the job is gone.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from augstudio.core.base.errors import OutputError


def watch_parent(pid: int, every_s: float = 0.25) -> None:
    """End this worker soon after the process that runs the job is gone (killed with SIGKILL, say).

    A killed parent cannot shut its pool down, and a forkserver's workers are not its children, so
    they would otherwise linger (holding the terminal's pipes) until they next read a task.
    """

    def gone() -> bool:
        try:  # Linux: a killed parent may linger as a zombie until reaped, and a zombie still "exists"
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
        except FileNotFoundError:
            return True
        except (OSError, IndexError):
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False

    def watch():
        while True:
            time.sleep(every_s)
            if gone():
                os._exit(3)

    threading.Thread(target=watch, name="augstudio-parent-watch", daemon=True).start()


_STATE = None  # a worker process's worker object


def _init_subprocess(make: Callable, args: tuple, parent_pid: int) -> None:
    global _STATE
    # Ctrl-C reaches the whole process group; only the main process decides what to do with it, and
    # waits for the items in flight (each write is atomic), so workers must not die half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(parent_pid)
    _STATE = make(*args)


def _run(task):
    return _STATE.process(task)


def ordered_results(tasks: list, workers: int, make: Callable, make_args: tuple, holder: list,
                    preload: Iterable[str] = ()):
    """``worker.process(task)`` for every task, yielded in task order, where ``worker = make(*make_args)``
    is made once per worker process (once in this process when ``workers == 1``, so concurrent jobs in one
    process never share a worker). ``holder`` receives the pool, so the caller can shut it down (waiting
    for the items in flight) whatever happens to the generator."""
    if workers == 1 or len(tasks) <= 1:
        worker = make(*make_args)
        for t in tasks:
            yield worker.process(t)
        return
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["torch", *preload])
    n = min(workers, len(tasks))
    ex = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_subprocess,
                             initargs=(make, make_args, os.getpid()))
    holder.append(ex)
    window: deque = deque()
    it = iter(tasks)
    for t in it:
        window.append(ex.submit(_run, t))
        if len(window) >= 2 * n:
            break
    while window:
        fut = window.popleft()
        try:
            res = fut.result()
        except BrokenProcessPool:
            raise OutputError("a worker process died (killed, or out of memory); finished images are kept. "
                              "Run the same command again to resume, with fewer --workers if memory is "
                              "short.") from None
        nxt = next(it, None)
        if nxt is not None:
            window.append(ex.submit(_run, nxt))
        yield res


__all__ = ["ordered_results", "watch_parent"]
