"""The benchmark's timing loop: libraries take turns (one call each, or ``block`` calls in a row per round, the
first of each block uncounted) in a new random order each round, each gets exactly ``runs`` timed calls, and
page faults are counted per call."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchmarks.chain as chain  # noqa: E402
from benchmarks.chain import timeit_interleaved  # noqa: E402


def _recorder(calls: list, name: str):
    return lambda k: calls.append(name)


def test_strict_turns_call_each_once_per_round_in_a_shuffled_order(monkeypatch):
    calls: list = []
    names = ["a", "b", "c"]
    r = timeit_interleaved({n: _recorder(calls, n) for n in names}, runs=60, warmup=2)
    assert calls[:6] == names * 2  # warm-up rounds in the given order
    rounds = [calls[i:i + 3] for i in range(6, len(calls), 3)]
    assert len(rounds) == 60 and all(sorted(t) == names for t in rounds)
    # each library follows each other one (a fixed order put the first always after the last)
    follows = {(calls[i - 1], calls[i]) for i in range(7, len(calls))}
    assert all((x, y) in follows for x in names for y in names if x != y)
    assert r["a"]["runs"] == r["b"]["runs"] == r["c"]["runs"] == 60
    assert r["a"]["page_faults_per_call"] >= 0
    calls.clear()
    monkeypatch.setitem(chain._ORDER, "shuffle", False)  # --fixed-order
    timeit_interleaved({"a": _recorder(calls, "a"), "b": _recorder(calls, "b")}, runs=5, warmup=2)
    assert calls == ["a", "b"] * 7


def test_blocks_run_each_library_in_a_row_and_count_all_but_the_first_of_each_block():
    calls: list = []

    def slow_first(name):  # the first call of each of its blocks (of four) sleeps: it must not be counted
        def fn(k):
            if calls.count(name) % 4 == 0:
                time.sleep(0.03)
            calls.append(name)
        return fn

    r = timeit_interleaved({"a": slow_first("a"), "b": slow_first("b")}, runs=6, warmup=0, block=3)
    # each round: four calls of a and four of b, in either order; the first of each four is not timed, so 2
    # rounds give 6
    chunks = [calls[i:i + 4] for i in range(0, len(calls), 4)]
    assert len(chunks) == 4 and all(len(set(c)) == 1 for c in chunks)
    assert sorted([chunks[0][0], chunks[1][0]]) == sorted([chunks[2][0], chunks[3][0]]) == ["a", "b"]
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


def test_a_fresh_input_is_made_before_each_call_and_not_timed():
    made: list = []
    seen: list = []

    def make():  # slow, like copying an image: must stay out of the timed call
        time.sleep(0.02)
        made.append(object())
        return made[-1]

    fn = chain.with_input(make, lambda x, k: seen.append(x), fresh=True)
    r = timeit_interleaved({"fresh": fn, "none": lambda k: None}, runs=5, warmup=1)
    assert len(made) == len(seen) == 6 and seen == made  # a new input for every call, warm-up included
    assert r["fresh"]["p95_ms"] < 10
    same = chain.with_input(make, lambda x, k: seen.append(x), fresh=False)
    seen.clear()
    same(0), same(1)
    assert seen[0] is seen[1]  # one input for every call
