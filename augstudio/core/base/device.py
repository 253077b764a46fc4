"""The one device rule: code takes a ``device`` (or works on the device of its inputs) and this module turns
what a user typed into a ``torch.device``. Nothing here, or anywhere, picks CUDA unless asked for ``auto``.

Determinism per device: on the CPU every augstudio kernel is deterministic as it is (results are
byte-identical for any thread count); on CUDA, ``deterministic(device)`` turns on PyTorch's deterministic
algorithms (and cuBLAS's fixed workspace) for the duration of a job, so a training run or an evaluation
repeats itself on the same GPU. Results on different devices agree within the tolerances the README states,
not bit for bit.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import ParamError

CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device=None) -> torch.device:
    """``None`` / ``""`` / ``"auto"``: CUDA when available, else MPS, else the CPU; anything else as given
    (``"cuda:1"``, a ``torch.device``), checked to exist so the message names the fix."""
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            dev = torch.device(str(device))
        except RuntimeError:
            raise ParamError(f"device {device!r} is not a device; use one of {', '.join(CHOICES)} "
                             "(or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"device {device!r}: CUDA is not available on this machine (torch "
                         f"{torch.__version__}); use --device cpu or auto")
    if dev.type == "mps" and not _mps_available():
        raise ParamError(f"device {device!r}: MPS is not available on this machine; use --device cpu or auto")
    return dev


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device_of(obj, default="cpu") -> torch.device:
    """The device a tensor or a module lives on (``default`` for a module without parameters)."""
    if isinstance(obj, torch.Tensor):
        return obj.device
    for t in getattr(obj, "parameters", lambda: iter(()))():
        return t.device
    for t in getattr(obj, "buffers", lambda: iter(()))():
        return t.device
    return torch.device(default)


@contextlib.contextmanager
def deterministic(device, enabled: bool = True):
    """Deterministic algorithms where the device needs them (CUDA), restored afterwards. A no-op on the
    CPU, whose kernels are deterministic already."""
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if not enabled or dev.type != "cuda":
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if before[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


__all__ = ["resolve_device", "device_of", "deterministic", "CHOICES"]
