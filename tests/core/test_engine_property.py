"""One engine: for random recipes over every registered per-image op (random parameters drawn from each op's
own declarations: every interpolation and border mode, p < 1), ``Recipe.apply_batch`` of N items gives,
for every item, exactly the bytes and records of ``Recipe.apply`` for that item and copy (on the CPU), on
RGB photos and on categorical wafer maps. Where the batch cannot run (items end with different sizes, an op
refused on categorical maps), the per-image path must explain why."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.base.errors import AugstudioError, RecipeError
from augstudio.core.engine.recipe import Recipe
from augstudio.core.io.images import as_picture
from augstudio.core.ops.registry import all_ops

SKIP_VALUES = {("stylize", "method"): ("randconv", "stats")}  # adain / fast need weight files


def _around(v: float, lo, hi, rng: random.Random) -> float:
    span = max(abs(v), 1.0)
    x = v + rng.uniform(-span, span)
    lo = -1e9 if lo is None else lo
    hi = 1e9 if hi is None else hi
    return min(max(x, lo), hi)


def random_param(op_name, p, rng: random.Random, depth: int, names=None):
    k = p.kind
    if (op_name, p.name) in SKIP_VALUES:
        return rng.choice(SKIP_VALUES[(op_name, p.name)])
    if k == "choice":
        return rng.choice(p.choices)
    if k == "bool":
        return rng.random() < 0.5
    if k == "float":
        return round(_around(float(p.default), p.low, p.high, rng), 4)
    if k == "int":
        lo = int(p.low if p.low is not None else 0)
        hi = int(p.high if p.high is not None else lo + 8)
        return rng.randint(lo, min(hi, lo + 8))
    if k in ("range", "int_range"):
        a, b = sorted(_around(float(v), p.low, p.high, rng) for v in p.default)
        if k == "int_range":
            a, b = sorted((int(round(a)), int(round(b))))
        else:
            a, b = round(a, 4), round(b, 4)
        return [a, b]
    if k == "size":
        return [rng.randint(6, 40), rng.randint(6, 40)]
    if k == "fill":
        return rng.randint(0, 255) if rng.random() < 0.7 else [rng.randint(0, 255) for _ in range(3)]
    if k == "numbers":  # e.g. normalize's per-channel means / stds
        lo = max(p.low if p.low is not None else -1.0, 0.05)
        return [round(rng.uniform(lo, 1.0), 3) for _ in range(rng.choice([1, 3]))]
    if k == "steps":
        return [random_step(rng, depth + 1, names) for _ in range(rng.randint(1, 2))]
    return p.default  # str / path: the declared default


def random_step(rng: random.Random, depth: int = 0, names=None) -> dict:
    ops = all_ops()
    names = [n for n in (names or sorted(ops)) if (depth == 0 or ops[n].family != "container")
             and (ops[n].family != "output" or len(names or ()) == 1)]  # output steps: only at the end
    for _ in range(50):
        name = rng.choice(names)
        cls = ops[name]
        values = {p.name: random_param(name, p, rng, depth, names) for p in cls.params if rng.random() < 0.7}
        try:
            cls.validate(dict(values))
        except AugstudioError:
            continue
        return {"op": name, "p": rng.choice([1.0, 1.0, 0.8, 0.5]), **values}
    raise AssertionError("no valid random parameters found")


@pytest.fixture(scope="module")
def rgb_batch():
    from skimage import data

    pics = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return torch.stack([torch.from_numpy(np.asarray(Image.fromarray(a).resize((40, 32)))).permute(2, 0, 1)
                        for a in pics])


@pytest.fixture(scope="module")
def wafer_batch(samples_root):
    paths = sorted((samples_root / "wafers").glob("*/*.png"))[::20][:4]
    return torch.stack([as_picture(Image.open(p))[0].pixels for p in paths])


def _check(recipe: Recipe, x: torch.Tensor, kind: str, items: list, copies: list) -> str:
    categorical = kind == "categorical"
    try:
        out, records = recipe.apply_batch(x, items, copies, kind=kind)
    except RecipeError as e:
        singles = []
        for i in range(len(items)):
            try:
                singles.append(recipe.apply(x[i], item=items[i], copy=copies[i], categorical=categorical))
            except RecipeError:
                return "refused"  # an item fails alone too
        assert len({tuple(s.shape) for s in singles}) > 1, f"the batch failed but every item runs alone: {e}"
        return "sizes differ"
    for i in range(len(items)):
        ref, rec = recipe.apply(x[i], item=items[i], copy=copies[i], categorical=categorical, return_params=True)
        assert rec == records[i]
        assert out[i].shape == ref.shape and torch.equal(out[i], ref), (
            f"item {i} differs from Recipe.apply by up to "
            f"{(out[i].int() - ref.int()).abs().max().item() if out[i].shape == ref.shape else 'shape'} "
            f"grey levels; recipe {recipe.to_dict()['steps']}")
    return "equal"


def _run(batch, kind: str, trials: int, seed: int, names=None):
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    seen: Counter = Counter()
    items = [f"img/{i}.png" for i in range(len(batch))]
    for t in range(trials):
        steps = [random_step(rng, names=names) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.25:  # output steps close a recipe
            steps.append({"op": "to_tensor"})
            if rng.random() < 0.5:
                steps.append(random_step(rng, names=["normalize"]) | {"p": 1.0})
        recipe = Recipe.from_dict({"seed": t, "steps": steps})
        copies = [rng.randint(0, 3) for _ in items]
        result = _check(recipe, batch, kind, items, copies)
        outcomes[result] += 1
        if result == "equal":
            seen.update(s["op"] for s in steps)
    return outcomes, seen


def test_batched_equals_per_image_on_photos_for_every_op(rgb_batch):
    outcomes, seen = _run(rgb_batch, "rgb", trials=260, seed=1)
    assert outcomes["equal"] >= 180, outcomes
    missing = set(all_ops()) - set(seen)
    assert not missing, f"ops never compared: {missing}"


def test_batched_equals_per_image_on_categorical_maps(wafer_batch):
    ops = all_ops()
    names = sorted(n for n, c in ops.items() if c.categorical != "refuse")
    outcomes, seen = _run(wafer_batch, "categorical", trials=200, seed=2, names=names)
    # refusals here are erasing with value: random, which would invent categories (refused alone too)
    assert outcomes["equal"] >= 110, outcomes
    assert set(names) <= set(seen), f"ops never compared: {set(names) - set(seen)}"


def test_a_broken_batched_kernel_is_caught(rgb_batch, monkeypatch):
    """Control: an op whose batched kernel is off by one grey level on one item fails the comparison."""
    from augstudio.core.ops.color import Brightness

    real = Brightness.apply_batch

    def off_by_one(self, x, params_list, kind, stats=None):
        out = real(self, x, params_list, kind, stats)
        if out.shape[0] > 1:
            out[1] = out[1].clamp(max=254) + 1
        return out

    monkeypatch.setattr(Brightness, "apply_batch", off_by_one)
    recipe = Recipe.from_dict({"steps": [{"op": "brightness", "factor": 0.3}]})
    with pytest.raises(AssertionError, match="differs from Recipe.apply"):
        _check(recipe, rgb_batch, "rgb", [f"i{i}" for i in range(4)], [0, 0, 0, 0])
