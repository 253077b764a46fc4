"""The one way a panel gets a model: ``ctx.models.load(request, on_result, on_error)``.

Loading runs as a job on the shared pool (listed in the Jobs panel: a torchvision download or the probe's
training takes a while), never on the GUI thread. Each loaded model is kept, keyed by the request, the
device and the file's modification time, and handed to every panel that asks for it again; while one is
loading, further requests for it wait for the same job. The cache lives on the GUI thread only.

A ``ModelRequest`` names a checkpoint / TorchScript file or a torchvision architecture (``spec``), or the
probe classifier of a labelled folder (``ModelRequest.probe_for(folder)``: the saved one when its settings
match, else trained now).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject

from augstudio.core.base.errors import ModelError
from augstudio.core.base.jobs import Progress
from augstudio.gui.qt.workers import JobHandle

PROBE = "probe"


@dataclass(frozen=True)
class ModelRequest:
    spec: str  # a model file, a torchvision name (e.g. resnet18), or "probe"
    allow_code: bool = False  # the user agreed to run a TorchScript file's code
    data: str | None = None  # probe: the labelled folder it is trained on
    probe_settings: tuple = ()  # probe: training settings as (name, value) pairs

    @classmethod
    def probe_for(cls, data, **settings) -> ModelRequest:
        return cls(PROBE, data=str(data), probe_settings=tuple(sorted(settings.items())))

    @property
    def is_probe(self) -> bool:
        return self.spec == PROBE

    def title(self) -> str:
        if self.is_probe:
            return f"Probe classifier for {Path(self.data).name}" if self.data else "Probe classifier"
        return f"Load model {Path(self.spec).name}"


def load_model_job(request: ModelRequest, device: str, cancel):
    """The loading job: a ``models.LoadedModel`` on ``device`` (a probe's ``meta['probe_for']`` names its
    folder and ``meta['trained']`` says how it was made)."""
    from augstudio.core.models.loading import load_model  # deferred: torch
    from augstudio.core.workflows.probe import train_probe_job  # deferred: torch

    if request.is_probe:
        if not request.data:
            raise ModelError("the probe classifier is trained on a labelled folder: open one with a sub-folder "
                             "per class first")
        res = yield from train_probe_job(request.data, device=device, cancel=cancel,
                                         **dict(request.probe_settings))
        lm = load_model(res.path, device=device)
        lm.name = f"probe ({Path(request.data).name}, validation accuracy {res.val_accuracy:.1%})"
        lm.meta.update(probe_for=request.data, trained=res.line())
        return lm
    yield Progress(0, 1, f"loading {request.spec}")
    with warnings.catch_warnings():
        if request.allow_code:
            warnings.simplefilter("ignore", UserWarning)  # the user already agreed to run the file's code
        lm = load_model(request.spec, device=device, allow_code=request.allow_code)
    yield Progress(1, 1, f"loaded {request.spec}")
    return lm


class ModelLoader(QObject):
    """One loading job per model, shared by the panels; see the module docstring."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ctx = ctx
        self._cache: dict[tuple, Any] = {}
        self._loading: dict[tuple, JobHandle] = {}
        ctx.device_changed.connect(lambda _device: self._cache.clear())  # models on the old device go

    def key(self, request: ModelRequest) -> tuple:
        stamp = None
        if not request.is_probe and os.path.isfile(request.spec):
            st = os.stat(request.spec)
            stamp = (str(Path(request.spec).resolve()), st.st_mtime_ns, st.st_size)
        return request, self.ctx.device(), stamp

    def load(self, request: ModelRequest, on_result: Callable[[Any], None],
             on_error: Callable[[BaseException], None] | None = None) -> JobHandle | None:
        """Call ``on_result(model)`` at once when the model is loaded already (and return None), else when
        the loading job ends (its handle is returned; ``on_error(exception)`` if it fails)."""
        key = self.key(request)
        if key in self._cache:
            on_result(self._cache[key])
            return None
        handle = self._loading.get(key)
        if handle is None:
            device = key[1]
            handle = self.ctx.run_job(request.title(), lambda token: load_model_job(request, device, token))
            handle.finished.connect(functools.partial(self._cache.__setitem__, key))  # before the panels' slots
            handle.ended.connect(functools.partial(self._loading.pop, key, None))
            self._loading[key] = handle
        handle.finished.connect(on_result)
        if on_error is not None:
            handle.failed.connect(on_error)
        return handle
