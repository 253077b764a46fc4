"""Containers: one_of / some_of / random_order pick and order nested steps from the seed; records list them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from augstudio.core.base import seeding
from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.io.images import Picture

NESTED = [{"op": "hflip"}, {"op": "vflip"}, {"op": "invert", "p": 0.5}]


def container(name, **kw):
    r = Recipe.from_dict({"steps": [{"op": name, "steps": NESTED, **kw}]})
    return r, r.pipeline().ops[0]


def test_one_of_picks_each_nested_step_about_equally():
    _, o = container("one_of")
    picks = Counter()
    for k in range(300):
        p = o.sample(seeding.generator(0, k), (8, 8))
        assert len(p["runs"]) == 1
        picks[p["runs"][0]["index"]] += 1
    assert set(picks) == {0, 1, 2} and min(picks.values()) > 70


def test_some_of_applies_n_in_recipe_order_and_random_order_permutes():
    _, o = container("some_of", n=[2, 2])
    orders = Counter()
    for k in range(50):
        runs = o.sample(seeding.generator(1, k), (8, 8))["runs"]
        idx = [r["index"] for r in runs]
        assert len(idx) == 2 and idx == sorted(idx)
    _, ro = container("random_order")
    for k in range(200):
        orders[tuple(r["index"] for r in ro.sample(seeding.generator(2, k), (8, 8))["runs"])] += 1
    assert len(orders) == 6  # all 3! orders appear


def test_nested_p_is_honoured_and_records_are_plain_json():
    _, o = container("random_order")
    applied = [o.sample(seeding.generator(3, k), (8, 8))["runs"] for k in range(200)]
    inv = [r["applied"] for runs in applied for r in runs if r["op"] == "invert"]
    assert 0.35 < sum(inv) / len(inv) < 0.65
    assert json.loads(json.dumps(applied)) == applied


def test_container_applies_its_nested_steps_and_round_trips(tmp_path):
    r, o = container("random_order")
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    out, records = r.apply(x, item=5, return_params=True)
    ref = x
    for run in records[0]["params"]["runs"]:
        if run["applied"]:
            ref = {"hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2), "invert": lambda t: 255 - t}[run["op"]](ref)
    assert torch.equal(out, ref)
    r.save(tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml") == r


def test_nested_refusal_on_categorical_names_the_container():
    r = Recipe.from_dict({"steps": [{"op": "one_of", "steps": [{"op": "brightness"}]}]})
    with pytest.raises(RecipeError, match="one_of.*nested step 1.*categorical"):
        r.pipeline().run(Picture(torch.ones(1, 8, 8, dtype=torch.uint8), "categorical"), 0)
    with pytest.raises(RecipeError, match="unknown op"):
        Recipe.from_dict({"steps": [{"op": "one_of", "steps": [{"op": "hflipp"}]}]})
