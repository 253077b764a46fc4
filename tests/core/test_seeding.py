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
