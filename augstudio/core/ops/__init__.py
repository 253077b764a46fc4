"""The op registry. Every module in this package is imported once on first use and registers its ops,
so adding an op family is adding a file here."""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    BATCH_REGISTRY,
    REGISTRY,
    BatchOp,
    Op,
    Param,
    all_batch_ops,
    all_ops,
    get_batch_op,
    get_op,
    register,
    register_batch,
)

_loaded = False


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["Op", "BatchOp", "Param", "register", "register_batch", "get_op", "get_batch_op", "all_ops",
           "all_batch_ops", "REGISTRY", "BATCH_REGISTRY", "load_all"]
