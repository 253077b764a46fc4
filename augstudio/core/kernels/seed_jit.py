"""The first words of torch's CPU generator for a seed, compiled with numba (BSD-2): what ``seeding.Draws``
takes for a recipe step's parameters.

torch's CPU generator is MT19937 seeded with ``init_genrand``. numpy's ``MT19937`` gives the same words, but
seeding it fills all 624 state words and its first draw twists all of them, through two calls into numpy.
Word ``k`` of the stream needs only state words ``k``, ``k + 1`` and ``k + 397``: this loop fills the
first 397 + n state words, twists n of them and tempers them, in one call (1.2 against 2.2 us warm; 22
against 39 us between other libraries' calls, when the caches are cold). The words are the same
(``tests/core/test_seeding.py`` compares them with numpy's and torch's generators over many seeds).

``stream_words`` goes one step back: from the text ``seeding`` hashes for a (seed, item, copy, stream) to
the seed (BLAKE2b with an 8-byte digest, RFC 7693, as ``hashlib`` computes it) and on to the first words, in
one call. Each step of each call draws through it: 1.9 against 3.0 us for hashlib's hash and the words in
two calls, between other libraries' calls.

Loaded with the other compiled loops (``jit``; a ``Pipeline`` asks for it); on import it compiles, checks the
hash against ``hashlib`` and hands ``first_words`` and ``stream_words`` to ``seeding``, which uses hashlib
and numpy's generator until then.
"""

from __future__ import annotations

import hashlib
import threading
import warnings

import numpy as np
from numba import uint32 as u32
from numba import uint64 as u64

from augstudio.core.base import seeding

from .jit import compiled

WORDS = seeding.FIRST_WORDS  # words made per seed: a step's parameters take 2 to 12
assert WORDS == 16, "stream_words spells out a tuple of 16 words"
_N = 397  # MT19937's middle offset
_THREAD = threading.local()


@compiled
def _first_words(seed, state, out):
    """``out[k]`` = word ``k`` of MT19937 ``init_genrand(seed)``; ``state`` has room for 397 + len(out) + 1
    words."""
    _mt_words(seed, state, out)


@compiled
def stream_words(data):
    """What ``seeding`` hashes and draws for one stream, in one call: (the 64-bit integer of ``data``'s 8-byte
    BLAKE2b digest, ``seeding``'s seed of the stream before its mask to 63 bits; the first 16 words of torch's
    CPU generator seeded with its low 32 bits, as a tuple). Called as it is, with no wrapper: its scratch is
    allocated here and the words come back as a tuple, so no per-thread buffers to look up and no ``tolist``
    (6.5 -> 4.9 us between other libraries' calls, 2.9 -> 2.3 warm)."""
    work = np.empty(40, np.uint64)
    state = np.empty(_N + WORDS + 1, np.uint32)
    out = np.empty(WORDS, np.uint32)
    h = _blake2b8(data, work)
    _mt_words(u32(h & u64(0xFFFFFFFF)), state, out)
    return h, (out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7],
               out[8], out[9], out[10], out[11], out[12], out[13], out[14], out[15])


@compiled(inline="always")
def _mt_words(seed, state, out):
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


_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
                0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179], dtype=np.uint64)
_SIGMA = np.array([  # the message word order of each round (rounds 10 and 11 repeat 0 and 1)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]], dtype=np.int64)


@compiled(inline="always")
def _rotr(x, n):
    return u64((x >> u64(n)) | (x << u64(64 - n)))


@compiled(inline="always")
def _mix(v, a, b, c, d, x, y):
    v[a] = u64(v[a] + v[b] + x)
    v[d] = _rotr(v[d] ^ v[a], 32)
    v[c] = u64(v[c] + v[d])
    v[b] = _rotr(v[b] ^ v[c], 24)
    v[a] = u64(v[a] + v[b] + y)
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = u64(v[c] + v[d])
    v[b] = _rotr(v[b] ^ v[c], 63)


@compiled(inline="always")
def _blake2b8(data, work):
    """BLAKE2b of the bytes ``data`` with an 8-byte digest and no key (RFC 7693), as the little-endian integer
    of the digest (its first state word); ``work`` is 40 uint64 of scratch."""
    h, v, m = work[0:8], work[8:24], work[24:40]
    for i in range(8):
        h[i] = _IV[i]
    h[0] = h[0] ^ u64(0x01010008)  # parameter block: digest length 8, key length 0, fanout 1, depth 1
    n = len(data)
    blocks = max(1, (n + 127) // 128)  # the empty message is one block of zeros
    for b in range(blocks):
        start = b * 128
        for w in range(16):  # the block's words, little-endian, zero-padded past the end
            acc = u64(0)
            for j in range(8):
                p = start + 8 * w + j
                if p < n:
                    acc |= u64(data[p]) << u64(8 * j)
            m[w] = acc
        last = b == blocks - 1
        for i in range(8):
            v[i] = h[i]
            v[i + 8] = _IV[i]
        v[12] ^= u64(n) if last else u64(start + 128)  # bytes hashed so far (messages under 2^64 bytes)
        if last:
            v[14] = ~v[14]
        for r in range(12):
            s = _SIGMA[r % 10]
            for j in range(4):  # the columns
                _mix(v, j, j + 4, j + 8, j + 12, m[s[2 * j]], m[s[2 * j + 1]])
            for j in range(4):  # the diagonals
                _mix(v, j, 4 + (j + 1) % 4, 8 + (j + 2) % 4, 12 + (j + 3) % 4, m[s[8 + 2 * j]], m[s[9 + 2 * j]])
        for i in range(8):
            h[i] ^= v[i] ^ v[i + 8]
    return h[0]


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
    for data in (b"", b"0\x1f0\x1f0\x1fstep", bytes(range(256))):  # one, two and three blocks
        if stream_words(data)[0] != int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little"):
            raise RuntimeError("the compiled BLAKE2b disagrees with hashlib's")


def _register() -> None:
    """Compile (or read from the cache) before seeding may call it from any thread; a loop that does not
    compile here leaves numpy's generator drawing (the same words)."""
    try:
        warm_up()
    except Exception as e:  # noqa: BLE001 - any compiler error: the draws stay correct without it
        warnings.warn(f"the compiled first draw failed to load ({e}); numpy's generator draws instead: the "
                      "same parameters, slower", RuntimeWarning, stacklevel=2)
        seeding.use_first_words(None)
        seeding.use_stream_words(None)
        return
    seeding.use_first_words(first_words)
    seeding.use_stream_words(stream_words)


_register()
