"""The first words of torch's CPU generator for a seed, compiled with numba (BSD-2): what ``seeding.Draws``
takes for a recipe step's parameters.

torch's CPU generator is MT19937 seeded with ``init_genrand``. numpy's ``MT19937`` gives the same words, but
seeding it fills all 624 state words and its first draw twists all of them, through two calls into numpy.
Word ``k`` of the stream needs only state words ``k``, ``k + 1`` and ``k + 397``: this loop fills the
first 397 + n state words, twists n of them and tempers them, in one call (1.2 against 2.2 us warm; 22
against 39 us between other libraries' calls, when the caches are cold). The words are the same
(``tests/core/test_seeding.py`` compares them with numpy's and torch's generators over many seeds).

Loaded with the other compiled loops (``jit``; a ``Pipeline`` asks for it); on import it compiles and hands
``first_words`` to ``seeding``, which uses numpy's generator until then.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
from numba import uint32 as u32

from augstudio.core.base import seeding

from .jit import compiled

WORDS = seeding.FIRST_WORDS  # words made per seed: a step's parameters take 2 to 12
_N = 397  # MT19937's middle offset
_THREAD = threading.local()


@compiled
def _first_words(seed, state, out):
    """``out[k]`` = word ``k`` of MT19937 ``init_genrand(seed)``; ``state`` has room for 397 + len(out) + 1
    words."""
    n = out.shape[0]
    state[0] = u32(seed)
    for i in range(1, _N + n + 1):
        p = state[i - 1]
        state[i] = u32(u32(1812433253) * u32(p ^ (p >> u32(30))) + u32(i))
    for k in range(n):
        y = u32((state[k] & u32(0x80000000)) | (state[k + 1] & u32(0x7FFFFFFF)))
        v = u32(state[k + _N] ^ (y >> u32(1)))
        if y & u32(1):
            v = u32(v ^ u32(0x9908B0DF))
        v = u32(v ^ (v >> u32(11)))
        v = u32(v ^ ((v << u32(7)) & u32(0x9D2C5680)))
        v = u32(v ^ ((v << u32(15)) & u32(0xEFC60000)))
        out[k] = u32(v ^ (v >> u32(18)))


def first_words(seed: int) -> list[int]:
    """The first ``WORDS`` 32-bit words of torch's CPU generator after ``manual_seed(seed)`` (seed < 2^32)."""
    try:
        state, out = _THREAD.buffers
    except AttributeError:  # per thread: export and DataLoader threads draw side by side
        state, out = _THREAD.buffers = np.empty(_N + WORDS + 1, np.uint32), np.empty(WORDS, np.uint32)
    _first_words(seed, state, out)
    return out.tolist()


def warm_up() -> None:
    first_words(0)


def _register() -> None:
    """Compile (or read from the cache) before seeding may call it from any thread; a loop that does not
    compile here leaves numpy's generator drawing (the same words)."""
    try:
        warm_up()
    except Exception as e:  # noqa: BLE001 - any compiler error: the draws stay correct without it
        warnings.warn(f"the compiled first draw failed to load ({e}); numpy's generator draws instead: the "
                      "same parameters, slower", RuntimeWarning, stacklevel=2)
        seeding.use_first_words(None)
        return
    seeding.use_first_words(first_words)


_register()
