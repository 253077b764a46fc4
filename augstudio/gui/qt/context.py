"""The application context every panel talks to (the GUI panel contract).

A panel is ``class XPanel(QWidget)`` with ``__init__(self, ctx: AppContext, parent=None)``. It reads the
open dataset, the current item and the recipe from the context, listens to its signals, and runs long
work with ``ctx.run_job(title, make_job, on_result=None, on_progress=None)``:

* ``make_job(token)`` returns a core job (a generator yielding ``Progress``) or is a plain function
  whose return value is the result; it runs on the shared ``QThreadPool``.
* the job appears in the Jobs panel with progress, ETA and a cancel button;
* ``on_result(result)``, ``on_progress(Progress)`` and ``on_error(exception)`` are called on the GUI
  thread (show ``workers.error_message(exception)``). ``Progress.preview`` is handed over as the job
  yielded it (copy tensors before yielding).

The returned ``JobHandle`` has ``cancel()``, ``state`` and the Qt signals ``progress``, ``finished``,
``failed``, ``cancelled``, ``ended``. Work where a newer request supersedes an older one goes through a
runner from ``ctx.latest()``; models through ``ctx.models`` (one loading job per model, shared and cached).

This module imports no torch: the window and the browser work before torch has loaded.
``torch_ready`` fires once torch, torchvision and the op registry are imported (``is_torch_ready()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from augstudio.core.engine.recipe import Recipe
from augstudio.core.io.dataset import Dataset, Item
from augstudio.core.ops.registry import load_all
from augstudio.gui.qt import gc_guard
from augstudio.gui.qt.models import ModelLoader
from augstudio.gui.qt.settings import Settings
from augstudio.gui.qt.workers import JobHandle, JobRunnable, LatestWins

log = logging.getLogger(__name__)


class AppContext(QObject):
    dataset_changed = Signal(object)  # Dataset | None
    current_item_changed = Signal(object)  # Item | None
    recipe_changed = Signal(object)  # Recipe
    device_changed = Signal(str)
    torch_ready = Signal()
    torch_failed = Signal(object)  # the exception
    job_started = Signal(object)  # JobHandle
    status_message = Signal(str)

    def __init__(self, parent=None, max_threads: int | None = None):
        super().__init__(parent)
        gc_guard.install()  # the GUI thread collects cycles while workers run (see gc_guard)
        self._dataset: Dataset | None = None
        self._item: Item | None = None
        self._recipe = Recipe()
        self._device_pref = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
        self._device: str | None = None
        self._device_name = "CPU"
        self._torch_ready = False
        self._torch_error: BaseException | None = None
        self.torch_load_seconds: float | None = None
        self.jobs: list[JobHandle] = []
        self.pool = QThreadPool(self)
        if max_threads is not None:
            self.pool.setMaxThreadCount(max_threads)
        else:
            self.pool.setMaxThreadCount(max(2, QThreadPool.globalInstance().maxThreadCount()))
        self._closing = False
        self._runners: list[LatestWins] = []
        self.preview_runner = self.latest()
        self.models = ModelLoader(self)
        self.settings = Settings()

    # -- state ------------------------------------------------------------------------------------
    def dataset(self) -> Dataset | None:
        return self._dataset

    def set_dataset(self, ds: Dataset | None) -> None:
        self._dataset = ds
        self._item = None
        self.dataset_changed.emit(ds)
        self.current_item_changed.emit(None)

    def current_item(self) -> Item | None:
        return self._item

    def set_current_item(self, item: Item | None) -> None:
        if item == self._item:
            return
        self._item = item
        self.current_item_changed.emit(item)

    def current_path(self) -> Path | None:
        if self._dataset is None or self._item is None:
            return None
        return self._dataset.abspath(self._item)

    def recent_recipes(self) -> list[str]:
        """Recipe files opened lately (newest first), as the File menu lists them."""
        return self.settings.recent_recipes()

    def recipe(self) -> Recipe:
        """The recipe being edited (do not mutate it; the chain editor owns edits)."""
        return self._recipe

    def set_recipe(self, recipe: Recipe) -> None:
        self._recipe = recipe
        self.recipe_changed.emit(recipe)

    # -- device -----------------------------------------------------------------------------------
    def device(self) -> str:
        """'cuda' (or 'cuda:N') when chosen / available once torch is loaded, else 'cpu'."""
        return self._device or "cpu"

    def device_name(self) -> str:
        return self._device_name

    def device_preference(self) -> str:
        return self._device_pref

    def set_device(self, pref: str) -> None:
        self._device_pref = pref or "auto"
        if self._torch_ready:
            self._resolve_device()

    def _resolve_device(self) -> None:
        import torch  # deferred: torch (loaded in the background)

        pref = self._device_pref
        if pref == "auto":
            pref = "cuda" if torch.cuda.is_available() else "cpu"
        if pref.startswith("cuda") and not torch.cuda.is_available():
            self.status_message.emit("CUDA is not available here; using the CPU")
            pref = "cpu"
        self._device = pref
        if pref.startswith("cuda"):
            idx = int(pref.split(":")[1]) if ":" in pref else 0
            self._device_name = f"CUDA: {torch.cuda.get_device_name(idx)}"
        else:
            self._device_name = "CPU"
        self.device_changed.emit(self._device)

    # -- torch in the background --------------------------------------------------------------------
    def is_torch_ready(self) -> bool:
        return self._torch_ready

    def torch_error(self) -> BaseException | None:
        return self._torch_error

    def load_torch(self) -> None:
        """Import torch, torchvision and all ops on a background thread; emits torch_ready (or
        torch_failed) on the GUI thread. Safe to call more than once."""
        if self._torch_ready or getattr(self, "_torch_thread", None) is not None:
            return
        bridge = _TorchBridge()
        bridge.ok.connect(self._on_torch_ok)
        bridge.fail.connect(self._on_torch_fail)
        self._torch_bridge = bridge

        def work():
            try:
                load()
            finally:
                gc_guard.release()  # taken below, before the thread starts (see gc_guard)

        def load():
            t0 = time.perf_counter()
            try:
                import torch  # noqa: F401  # deferred: torch, loaded here on purpose
                import torchvision  # noqa: F401  # deferred: torchvision, loaded here on purpose

                load_all()
                from augstudio.core.kernels import jit  # deferred: numba, loaded below on purpose

                # previews run the torch forms (the same pixels) until this thread has loaded the loops: no
                # other thread may start compiling them, as it would run without this thread's gc_guard hold
                jit.load_in_background(on_this_thread=True)
            except Exception as e:  # noqa: BLE001 - browsing goes on without torch; the window says why
                log.error("the augmentation engine (torch) failed to load", exc_info=e)
                bridge.fail.emit(e)
                return
            bridge.ok.emit(time.perf_counter() - t0)
            jit.load_all_now()  # numba's ~0.5 s of set-up, here rather than in the first preview

        self._torch_thread = threading.Thread(target=work, name="augstudio-torch-loader", daemon=True)
        gc_guard.hold()
        self._torch_thread.start()

    def _on_torch_ok(self, seconds: float) -> None:
        self.torch_load_seconds = seconds
        self._torch_ready = True
        self._resolve_device()
        self.torch_ready.emit()

    def _on_torch_fail(self, error: BaseException) -> None:
        self._torch_error = error
        self.torch_failed.emit(error)

    # -- jobs ---------------------------------------------------------------------------------------
    def run_job(self, title: str, make_job: Callable, on_result: Callable[[Any], None] | None = None,
                on_progress: Callable[[Any], None] | None = None,
                on_error: Callable[[BaseException], None] | None = None) -> JobHandle:
        handle = JobHandle(title, self)
        if on_result is not None:
            handle.finished.connect(on_result)
        if on_progress is not None:
            handle.progress.connect(on_progress)
        if on_error is not None:
            handle.failed.connect(on_error)
        self._publish(handle)
        self.pool.start(JobRunnable(make_job, handle))
        return handle

    def latest(self, listed: bool = False) -> LatestWins:
        """A latest-wins runner on the shared pool (cancelled at shutdown); ``listed``: its tasks show in the
        Jobs panel (longer work the user may want to watch or cancel)."""
        runner = LatestWins(self.pool, self, publish=self._publish if listed else None)
        self._runners.append(runner)
        return runner

    def _publish(self, handle: JobHandle) -> None:
        self.jobs.append(handle)
        self.job_started.emit(handle)
        if self._closing:
            handle.cancel()

    def running_jobs(self) -> list[JobHandle]:
        return [j for j in self.jobs if j.is_running()]

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Cancel every job and latest-wins runner, then wait for the pool (True when all threads ended)."""
        self._closing = True
        for j in self.jobs:
            j.cancel()
        for r in self._runners:
            r.cancel()
        return self.pool.waitForDone(timeout_ms)


class _TorchBridge(QObject):
    ok = Signal(float)
    fail = Signal(object)
