"""The ops: declarations (``base``, ``params``), the registry, recipe steps, and one module per family
(geometry, color, noise, erase, containers, policy, style, mix, labels) that registers its ops on import."""

from __future__ import annotations

from .base import BatchOp, Op, PointwiseOp
from .params import Param
from .registry import (
    BATCH_REGISTRY,
    REGISTRY,
    all_batch_ops,
    all_ops,
    get_batch_op,
    get_op,
    load_all,
    register,
    register_batch,
)
from .step import Step, parse_step, parse_steps, stream_keys

__all__ = ["Op", "PointwiseOp", "BatchOp", "Param", "register", "register_batch", "get_op",
           "get_batch_op", "all_ops", "all_batch_ops", "REGISTRY", "BATCH_REGISTRY", "load_all", "Step",
           "parse_step", "parse_steps", "stream_keys"]
