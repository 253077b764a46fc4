"""The benchmark's timing loop: libraries take turns (one call each, or ``block`` calls in a row per round, the
first of each block uncounted), each gets exactly ``runs`` timed calls, and page faults are counted per call."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chain import timeit_interleaved  # noqa: E402


def _recorder(calls: list, name: str):
    return lambda k: calls.append(name)


def test_strict_turns_alternate_one_call_each():
    calls: list = []
    r = timeit_interleaved({"a": _recorder(calls, "a"), "b": _recorder(calls, "b")}, runs=5, warmup=2)
    assert calls == ["a", "b"] * 7  # 2 warm-up rounds, then 5 timed rounds
    assert r["a"]["runs"] == r["b"]["runs"] == 5
    assert r["a"]["page_faults_per_call"] >= 0


def test_blocks_run_each_library_in_a_row_and_count_all_but_the_first_of_each_block():
    calls: list = []

    def slow_first(name):  # the first call of each of its blocks (of four) sleeps: it must not be counted
        def fn(k):
            if calls.count(name) % 4 == 0:
                time.sleep(0.03)
            calls.append(name)
        return fn

    r = timeit_interleaved({"a": slow_first("a"), "b": slow_first("b")}, runs=6, warmup=0, block=3)
    # each round: four calls of a, then four of b; the first of each four is not timed, so 2 rounds give 6
    assert calls == (["a"] * 4 + ["b"] * 4) * 2
    assert r["a"]["runs"] == r["b"]["runs"] == 6
    assert r["a"]["p95_ms"] < 20 and r["b"]["p95_ms"] < 20  # no slow first call among the timed ones


def test_a_library_that_allocates_fresh_pages_shows_them():
    import mmap

    def touch_fresh_pages(k):  # a new anonymous mapping each call: every page written is a fresh one
        m = mmap.mmap(-1, 64 * 4096)
        for off in range(0, len(m), 4096):
            m[off] = 1
        m.close()

    r = timeit_interleaved({"fresh": touch_fresh_pages, "none": lambda k: None}, runs=5, warmup=1)
    assert r["fresh"]["page_faults_per_call"] >= 32
    assert r["none"]["page_faults_per_call"] < 1
