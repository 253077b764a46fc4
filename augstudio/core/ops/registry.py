"""The op registry, keyed by name. Every family module of this package registers its ops when it is
imported; ``load_all`` imports them once on first use, so adding an op family is adding a file here."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path

from augstudio.core.base.errors import RecipeError

from .base import BatchOp, Op

REGISTRY: dict[str, type[Op]] = {}
BATCH_REGISTRY: dict[str, type[BatchOp]] = {}
# the modules of this package that hold machinery, not op families
INFRASTRUCTURE = frozenset({"base", "params", "registry", "step", "catalogue", "target_effects"})
_loaded = False


def load_all() -> None:
    """Import every op family module (each registers its ops)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = __name__.rpartition(".")[0]
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name not in INFRASTRUCTURE and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def register(cls: type[Op]) -> type[Op]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"op name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def register_batch(cls: type[BatchOp]) -> type[BatchOp]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in BATCH_REGISTRY and BATCH_REGISTRY[cls.name] is not cls:
        raise ValueError(f"batch op name {cls.name!r} registered twice")
    BATCH_REGISTRY[cls.name] = cls
    return cls


def get_op(name: str, where: str = "") -> type[Op]:
    load_all()
    if name in REGISTRY:
        return REGISTRY[name]
    if name in BATCH_REGISTRY:
        raise RecipeError(f"{where}'{name}' is a batch op (it mixes images and labels across a batch): put it "
                          "under 'batch:', not 'steps:'.")
    close = difflib.get_close_matches(str(name), list(REGISTRY), n=3, cutoff=0.5)
    hint = f" Closest known ops: {', '.join(close)}." if close else ""
    raise RecipeError(f"{where}unknown op {name!r}.{hint} Run `augstudio ops` for the full list.")


def get_batch_op(name: str, where: str = "") -> type[BatchOp]:
    load_all()
    if name in BATCH_REGISTRY:
        return BATCH_REGISTRY[name]
    if name in REGISTRY:
        raise RecipeError(f"{where}'{name}' is a per-image op: put it under 'steps:', not 'batch:'.")
    close = difflib.get_close_matches(str(name), list(BATCH_REGISTRY), n=3, cutoff=0.5)
    hint = f" Closest known batch ops: {', '.join(close)}." if close else ""
    known = ", ".join(sorted(BATCH_REGISTRY)) or "none yet"
    raise RecipeError(f"{where}unknown batch op {name!r}.{hint} Batch ops: {known}.")


def all_ops() -> dict[str, type[Op]]:
    load_all()
    return dict(REGISTRY)


def all_batch_ops() -> dict[str, type[BatchOp]]:
    load_all()
    return dict(BATCH_REGISTRY)


__all__ = ["REGISTRY", "BATCH_REGISTRY", "register", "register_batch", "get_op", "get_batch_op", "all_ops",
           "all_batch_ops", "load_all"]
