"""The one seed path: every random draw in augstudio comes from a generator made here.

A generator is derived from (recipe seed, item key, copy index, stream) by a stable hash, so results do
not depend on worker count, processing order, thread, or process. The item key is the item's path
relative to the dataset root (stable when files are added) or an integer index. ``stream`` separates
independent uses (one per recipe step, the batch stage, ...), so editing one step never rerolls another.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts) -> int:
    """A stable 63-bit integer from any sequence of ints / strings (blake2b, not Python's salted hash)."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def generator(seed: int, item=0, copy: int = 0, stream="", device="cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` for one (seed, item, copy, stream); never touches the global RNG."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(int(seed), item, int(copy), stream))
    return g


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """One float in [low, high) drawn from ``gen``."""
    if high <= low:
        return float(low)
    return float(low + (high - low) * torch.rand((), generator=gen, dtype=torch.float64, device=gen.device).item())


def randint(gen: torch.Generator, low: int, high: int) -> int:
    """One int in [low, high] (inclusive) drawn from ``gen``."""
    if high <= low:
        return int(low)
    return int(torch.randint(int(low), int(high) + 1, (), generator=gen, device=gen.device).item())


def coin(gen: torch.Generator, p: float) -> bool:
    """True with probability ``p``. Always consumes one draw, so later draws do not depend on ``p``."""
    r = torch.rand((), generator=gen, dtype=torch.float64, device=gen.device).item()
    return r < p


def choice(gen: torch.Generator, n: int) -> int:
    return randint(gen, 0, n - 1)
