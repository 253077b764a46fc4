"""The one seed path: every random draw in augstudio comes from a generator made here.

A generator is derived from (recipe seed, item key, copy index, stream) by a stable hash, so results do
not depend on worker count, processing order, thread, or process. The item key is the item's path
relative to the dataset root (stable when files are added) or an integer index. ``stream`` separates
independent uses (one per recipe step, the batch stage, ...), so editing one step never rerolls another.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading

import numpy as np
import torch

# One scalar per thread that CPU draws are written into: ``buf.uniform_(0, 1, generator=g)`` is what
# ``torch.rand((), generator=g)`` runs after allocating its scalar (the same draw), at a quarter of the cost
# (measured 1.7 vs 7.8 us; a coin and a factor per step). Per thread, so concurrent draws never share one.
_SCALARS = threading.local()


def _scalar(dtype: torch.dtype) -> torch.Tensor:
    try:
        return _SCALARS.by_dtype[dtype]
    except AttributeError:
        _SCALARS.by_dtype = {}
    except KeyError:
        pass
    t = _SCALARS.by_dtype[dtype] = torch.empty((), dtype=dtype)
    return t


_CPU = torch.device("cpu")


_MASK32 = 0xFFFFFFFF
_MASK53 = (1 << 53) - 1
_MASK63 = (1 << 63) - 1
_INV53 = 1.0 / (1 << 53)
_AHEAD = 16  # words a Draws takes from its generator at a time
_WIDE = 1 << 28  # integer ranges from this size draw 64 bits (torch's uniform_int_from_to_distribution)
FIRST_WORDS = 16  # words the compiled first draw makes (``use_first_words``)
_COMPILED: dict = {"first_words": None, "stream_words": None}


def use_first_words(fn) -> None:
    """Make a ``Draws``' first draw ``fn(seed)``: the first ``FIRST_WORDS`` words of MT19937 after
    ``init_genrand(seed)``, computed without filling and twisting the whole state (``kernels.seed_jit``
    registers its compiled loop on import; None goes back to numpy's generator)."""
    _COMPILED["first_words"] = fn


def use_stream_words(fn) -> None:
    """Make ``draws`` hash its text and make its first words in one call: ``fn(text bytes)`` -> (the 64-bit
    integer of the 8-byte BLAKE2b digest, ``FIRST_WORDS`` words of MT19937 seeded with its low 32 bits, a
    sequence)
    (``kernels.seed_jit`` registers its compiled one on import; None goes back to hashlib and
    ``use_first_words``)."""
    _COMPILED["stream_words"] = fn


class Draws:
    """The draws of ``generator(...)`` (a CPU ``torch.Generator``) for one step's parameters, made without
    it: torch's CPU generator is MT19937 seeded with the low 32 bits (``init_genrand``), which numpy's
    ``MT19937`` reproduces word for word; ``rand``, ``randint`` and ``randperm`` turn words into values as
    torch does (53 of 64 bits; ``v % range + low`` on 32 bits, or on 64 from a range of 2^28; Fisher-Yates
    swaps). Cheaper than a ``torch.Generator`` and its scalar draws (a crop's seed and draws: 16 vs 29 us),
    so a recipe's per-call cost shrinks; the values are the same (tests/core/test_seeding.py checks them
    against torch over thousands of seeds, and every op's records).

    Code that needs torch's own generator (``torch.rand(n, generator=...)``) calls ``torch_generator(gen)``:
    it gets a ``torch.Generator`` at the same place in the stream, and every later draw of this object
    comes from it. One numpy generator per thread is re-seeded for each ``Draws``; a ``Draws`` that finds it
    taken by another re-seeds it and skips the words it had taken."""

    __slots__ = ("seed", "used", "_torch", "_buf")
    device = torch.device("cpu")

    def __init__(self, seed: int):
        self.seed = seed & _MASK32
        self.used = 0  # 32-bit words handed out so far (what ``as_torch`` skips)
        self._torch = None
        # the stream's words from its start, drawn ahead: ``used`` indexes the next one (an index, not a list
        # that shrinks: a step's two or three draws cost less between other libraries' calls)
        self._buf: list = []

    def words(self, n: int):
        u = self.used
        end = self.used = u + n
        buf = self._buf
        if end > len(buf):
            buf = self._more(end)
        return buf[u] if n == 1 else buf[u:end]

    def _more(self, end: int) -> list:
        """Draw ahead until the buffer holds ``end`` words."""
        buf = self._buf
        first = _COMPILED["first_words"]
        if first is not None and not buf and end <= FIRST_WORDS:
            # the first draw: the stream's first words in one compiled call, numpy's generator untouched
            # (a draw past them seeds it and skips the words this one has, as below)
            buf = self._buf = first(self.seed)
            return buf
        # draw ahead: one call for 16 words costs what one for 1 or 2 does (a step takes 2-12 words: a coin
        # is 2, a float 2, an int 1), so a step's parameters cost one or two calls
        try:  # this thread's numpy generator (looked up here: most steps never get this far)
            st = _THREAD.st
        except AttributeError:
            st = _THREAD.st = [np.random.MT19937(0), None]  # [generator, the Draws it is seeded for]
        if st[1] is not self:  # the first draw, or another Draws re-seeded it: back to this one's place
            st[0]._legacy_seeding(self.seed)  # MT19937 init_genrand(seed): what torch's manual_seed does
            if buf:  # skip the words this one has drawn
                st[0].random_raw(len(buf))
            st[1] = self
        buf = self._buf = [*buf, *st[0].random_raw(max(end - len(buf), _AHEAD)).tolist()]  # buf: a list or tuple
        return buf

    def rand(self) -> float:
        if self._torch is not None:
            return _rand(self._torch)
        u = self.used
        end = self.used = u + 2
        buf = self._buf
        if end > len(buf):
            buf = self._more(end)
        return (((buf[u] << 32) | buf[u + 1]) & _MASK53) * _INV53

    def randint(self, low: int, high: int) -> int:
        """One int in [low, high] (high > low)."""
        if self._torch is not None:
            return randint(self._torch, low, high)
        span = high + 1 - low
        if span >= _WIDE:
            hi, lo = self.words(2)
            return ((hi << 32) | lo) % span + low
        return self.words(1) % span + low

    def randperm(self, n: int) -> list[int]:
        """``torch.randperm(n, generator=...)`` for small n: swap i with i + (word % (n - i))."""
        if self._torch is not None:
            return torch.randperm(n, generator=self._torch).tolist()
        r = list(range(n))
        if n > 1:
            ws = self.words(n - 1) if n > 2 else [self.words(1)]
            for i, w in enumerate(ws):
                z = i + w % (n - i)
                r[i], r[z] = r[z], r[i]
        return r

    def as_torch(self) -> torch.Generator:
        if self._torch is None:
            g = torch.Generator()
            g.manual_seed(self.seed)
            if self.used:  # float32 uniforms take one 32-bit word each
                torch.empty(self.used, dtype=torch.float32, device="cpu").uniform_(generator=g)
            self._torch = g
        return self._torch


_THREAD = threading.local()
_FORCE_TORCH = {"on": 0}


def randperm(gen, n: int) -> list[int]:
    """``torch.randperm(n, generator=gen).tolist()`` (n up to a few hundred: the steps of a container)."""
    if type(gen) is Draws:
        return gen.randperm(n)
    return torch.randperm(n, generator=gen, device=gen.device).tolist()


def torch_generator(gen):
    """``gen`` as a ``torch.Generator`` (a ``Draws`` hands over at its place in the stream)."""
    return gen.as_torch() if type(gen) is Draws else gen


@contextlib.contextmanager
def torch_draws():
    """Make ``draws()`` return ``torch.Generator``s: what the tests compare ``Draws`` with."""
    _FORCE_TORCH["on"] += 1
    try:
        yield
    finally:
        _FORCE_TORCH["on"] -= 1


def draws(seed: int, item=0, copy: int = 0, stream=""):
    """``generator(seed, item, copy, stream)``'s draws on the CPU, as a ``Draws`` (the per-image steps'
    parameters)."""
    if _FORCE_TORCH["on"]:
        return generator(seed, item, copy, stream)
    fused = _COMPILED["stream_words"]
    if fused is None:
        return Draws(_stream_seed(seed, item, copy, stream))
    digest, words = fused(f"{int(seed)}\x1f{str(item)}\x1f{int(copy)}\x1f{str(stream)}".encode())
    d = Draws(digest)  # the seed _stream_seed gives, masked to 32 bits as there
    d._buf = words
    return d


def _rand(gen: torch.Generator) -> float:
    """``torch.rand((), generator=gen, dtype=torch.float64).item()``: the same draw."""
    if type(gen) is Draws:
        return gen.rand()
    if gen.device == _CPU:
        return _scalar(torch.float64).uniform_(generator=gen).item()
    return torch.rand((), generator=gen, dtype=torch.float64, device=gen.device).item()


def derive_seed(*parts) -> int:
    """A stable 63-bit integer from any sequence of ints / strings (blake2b, not Python's salted hash)."""
    return _hash("\x1f".join([str(p) for p in parts]))


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") & _MASK63


def generator(seed: int, item=0, copy: int = 0, stream="", device="cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` for one (seed, item, copy, stream); never touches the global RNG."""
    g = torch.Generator() if device == "cpu" else torch.Generator(device=device)
    g.manual_seed(_stream_seed(seed, item, copy, stream))
    return g


def _stream_seed(seed: int, item, copy: int, stream) -> int:
    """``derive_seed(seed, item, copy, stream)`` (the same text, one f-string; ``_hash`` inlined: every step
    of every call comes here)."""
    text = f"{int(seed)}\x1f{str(item)}\x1f{int(copy)}\x1f{str(stream)}"
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") & _MASK63


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """One float in [low, high) drawn from ``gen``."""
    if high <= low:
        return float(low)
    r = gen.rand() if type(gen) is Draws else _rand(gen)  # the usual Draws: one call layer less
    return float(low + (high - low) * r)


def randint(gen: torch.Generator, low: int, high: int) -> int:
    """One int in [low, high] (inclusive) drawn from ``gen``."""
    if high <= low:
        return int(low)
    if type(gen) is Draws:
        low, high = int(low), int(high)
        if gen._torch is None and high + 1 - low < _WIDE:  # Draws.randint's usual case, one call layer less
            return gen.words(1) % (high + 1 - low) + low
        return gen.randint(low, high)
    if gen.device == _CPU:  # what torch.randint((), ...) runs on the scalar it allocates: the same draw
        return int(_scalar(torch.int64).random_(int(low), int(high) + 1, generator=gen).item())
    return int(torch.randint(int(low), int(high) + 1, (), generator=gen, device=gen.device).item())


def coin(gen: torch.Generator, p: float) -> bool:
    """True with probability ``p``. Always consumes one draw, so later draws do not depend on ``p``."""
    if type(gen) is Draws:  # every step's first draw: one call layer fewer
        return gen.rand() < p
    return _rand(gen) < p


def choice(gen: torch.Generator, n: int) -> int:
    return randint(gen, 0, n - 1)
