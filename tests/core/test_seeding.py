import pytest
import torch

from augstudio.core.base import seeding


def test_derive_seed_is_stable_across_processes_and_known_value():
    # a fixed value: Python's salted hash() would change between runs, blake2b does not
    assert seeding.derive_seed(0, "cat/001.jpg", 0, "rotate#0") == seeding.derive_seed(0, "cat/001.jpg", 0, "rotate#0")
    assert seeding.derive_seed(1, 2, 3) == 3229873600073728033  # pinned: changing it changes every export
    assert 0 <= seeding.derive_seed("x") < 2**63


def test_generators_differ_by_every_part_and_never_touch_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    draws = {
        parts: torch.rand(4, generator=seeding.generator(*parts)).tolist()
        for parts in [(0, "a", 0, "s"), (1, "a", 0, "s"), (0, "b", 0, "s"), (0, "a", 1, "s"), (0, "a", 0, "t")]
    }
    assert len({tuple(v) for v in draws.values()}) == len(draws)
    assert torch.equal(torch.get_rng_state(), before)
    again = torch.rand(4, generator=seeding.generator(0, "a", 0, "s")).tolist()
    assert again == draws[(0, "a", 0, "s")]


def test_helpers_respect_bounds():
    g = seeding.generator(5)
    xs = [seeding.uniform(g, -2.0, 3.0) for _ in range(500)]
    assert min(xs) >= -2.0 and max(xs) < 3.0 and max(xs) - min(xs) > 4.0
    ks = {seeding.randint(g, 2, 4) for _ in range(200)}
    assert ks == {2, 3, 4}
    assert seeding.uniform(g, 1.0, 1.0) == 1.0
    coins = [seeding.coin(g, 0.25) for _ in range(4000)]
    assert 0.2 < sum(coins) / len(coins) < 0.3


def test_steps_that_always_run_and_draw_nothing_skip_their_generator_with_the_same_records():
    """``Pipeline.sample`` makes no generator for a step with p = 1 whose op draws nothing (its coin always
    says yes): the records equal those the full seed path gives, for every step, over many items; a step
    with p < 1 still draws its coin."""
    from augstudio.core.engine.recipe import Recipe

    steps = [{"op": "hflip"}, {"op": "rotate", "degrees": 20}, {"op": "center_crop", "size": 40},
             {"op": "invert", "p": 0.5}, {"op": "vflip", "p": 1.0}, {"op": "gaussian_noise", "std": 0.1}]
    pipe = Recipe.from_dict({"seed": 3, "steps": steps}).pipeline()
    assert pipe.fixed == [True, False, True, False, True, False]
    full = Recipe.from_dict({"seed": 3, "steps": steps}).pipeline()
    full.fixed = [False] * len(full.fixed)  # the control: every step through its generator
    inverts = set()
    for item in range(60):
        fast, slow = pipe.sample((64, 64), 3, item, 0), full.sample((64, 64), 3, item, 0)
        assert fast == slow
        inverts.add(fast[3]["applied"])
    assert inverts == {True, False}  # the p = 0.5 step still tosses its coin


def test_compiled_first_words_are_mt19937s():
    """The compiled first draw (``kernels.seed_jit``) gives the words of numpy's MT19937 after torch's
    ``init_genrand`` seeding, over edge and random 32-bit seeds."""
    import random

    import numpy as np

    from augstudio.core.kernels import seed_jit

    mt = np.random.MT19937(0)
    rng = random.Random(3)
    for seed in [0, 1, 2, 5489, 2**31 - 1, 2**31, 2**32 - 1] + [rng.randrange(2**32) for _ in range(3000)]:
        mt._legacy_seeding(seed)
        assert seed_jit.first_words(seed) == mt.random_raw(seeding.FIRST_WORDS).tolist(), seed


def test_compiled_stream_words_are_hashlibs_blake2b_and_mt19937s_words():
    """``seed_jit.stream_words``: BLAKE2b (8-byte digest) of any bytes as hashlib computes it -- every length
    around the 128-byte blocks, non-ASCII item names -- and the first words of the generator seeded with
    its low 32 bits; a wrong hash (one bit of the parameter block) is caught by the same comparison."""
    import hashlib
    import random

    import numpy as np

    from augstudio.core.kernels import seed_jit

    def blake(data: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")

    rng = random.Random(11)
    texts = [bytes(rng.randrange(256) for _ in range(n)) for n in list(range(0, 300)) + [383, 384, 385, 1000]]
    texts += [f"{rng.randrange(10**9)}\x1f{name}\x1f{rng.randrange(4)}\x1fstep{k}".encode()
              for k, name in enumerate(["chats/été.png", "狗/1.jpg", "a" * 200, "./x.png", "7"])]
    mt = np.random.MT19937(0)
    for data in texts:
        digest, words = seed_jit.stream_words(data)
        assert digest == blake(data), data
        mt._legacy_seeding(digest & 0xFFFFFFFF)
        assert list(words) == mt.random_raw(seeding.FIRST_WORDS).tolist()
    # the control: a digest of another length (the parameter block's first byte) differs everywhere
    assert all(int.from_bytes(hashlib.blake2b(d, digest_size=9).digest()[:8], "little") != blake(d)
               for d in texts[:50])


def test_a_first_draw_that_does_not_compile_leaves_numpys_generator(monkeypatch):
    from augstudio.core.kernels import seed_jit

    def broken(seed, state, out):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(seed_jit, "_first_words", broken)
    monkeypatch.setitem(seeding._COMPILED, "first_words", seed_jit.first_words)
    monkeypatch.setitem(seeding._COMPILED, "stream_words", seed_jit.stream_words)
    with pytest.warns(RuntimeWarning, match="compiled first draw failed.*same parameters"):
        seed_jit._register()
    assert seeding._COMPILED["first_words"] is None and seeding._COMPILED["stream_words"] is None
    assert seeding.uniform(seeding.draws(1, "a.png", 0, "s"), 0, 1) == seeding.uniform(
        seeding.generator(1, "a.png", 0, "s"), 0, 1)


@pytest.fixture(params=["compiled first words", "numpy"])
def first_words(request, monkeypatch):
    from augstudio.core.kernels import seed_jit

    compiled = request.param == "compiled first words"
    monkeypatch.setitem(seeding._COMPILED, "first_words", seed_jit.first_words if compiled else None)
    monkeypatch.setitem(seeding._COMPILED, "stream_words", seed_jit.stream_words if compiled else None)
    return request.param


def test_draws_give_torch_generators_values_word_for_word(first_words):
    """``seeding.draws`` (numpy's MT19937 in torch's place, and the compiled first words) gives the values
    ``seeding.generator``'s torch.Generator gives, for every helper (randperm too, past the 16 first words),
    integer spans on both sides of the 32- / 64-bit switch (2^28), a hand-over to torch mid-stream, and two
    streams drawn in turn (one numpy generator per thread)."""
    import random

    rng = random.Random(7)
    spans = [1, 2, 3, 300, 2**16, 2**28 - 1, 2**28, 2**31, 2**32 - 1, 2**32, 2**40, 2**62 + 1]
    for s in range(1500):
        parts = [(rng.randrange(10**6), f"img/{s}.png", rng.randrange(3), f"step{s % 7}#{j}") for j in range(2)]
        ours = [seeding.draws(*p) for p in parts]
        theirs = [seeding.generator(*p) for p in parts]
        assert all(type(d) is seeding.Draws for d in ours)
        for _ in range(rng.randrange(1, 10)):
            j = rng.randrange(2)  # two streams in turn: each keeps its place
            d, g = ours[j], theirs[j]
            c = rng.random()
            if c < 0.4:
                assert seeding.uniform(d, -3.0, 5.0) == seeding.uniform(g, -3.0, 5.0)
            elif c < 0.8:
                lo, sp = rng.randrange(-50, 50), rng.choice(spans)
                assert seeding.randint(d, lo, lo + sp - 1) == seeding.randint(g, lo, lo + sp - 1)
            elif c < 0.9:
                p = rng.random()
                assert seeding.coin(d, p) == seeding.coin(g, p)
            elif c < 0.95:  # Fisher-Yates on the words, as torch's randperm
                m = rng.randrange(1, 40)
                assert seeding.randperm(d, m) == torch.randperm(m, generator=g).tolist()
            else:  # torch's own generator from here on
                m = rng.randrange(2, 9)
                assert (torch.randperm(m, generator=seeding.torch_generator(d)).tolist()
                        == torch.randperm(m, generator=g).tolist())


def test_every_ops_records_are_the_same_with_draws_as_with_torch_generators():
    """The per-image steps' records for random recipes over every registered op (containers with nested
    steps), drawn through ``Draws``, equal those drawn through torch.Generators (``torch_draws()``)."""
    import random
    import sys
    from pathlib import Path

    from augstudio.core.engine.recipe import Recipe
    from augstudio.core.ops.registry import all_ops

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_engine_property import random_step

    rng = random.Random(11)
    names = sorted(n for n, cls in all_ops().items() if cls.family != "output")
    for name in names:
        for _ in range(3):
            step = random_step(rng, 0, [name]) if all_ops()[name].family != "container" else (
                {"op": name, "steps": [random_step(rng, 1) for _ in range(3)]})
            pipe = Recipe.from_dict({"seed": 5, "steps": [step, {"op": "rotate", "p": 0.5}]}).pipeline()
            for item in range(12):
                fast = pipe.sample((48, 64), 5, f"x/{item}.png", item % 2)
                with seeding.torch_draws():
                    slow = pipe.sample((48, 64), 5, f"x/{item}.png", item % 2)
                assert fast == slow, (name, step, item)
