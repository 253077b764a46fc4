"""Property-based: whatever YAML / JSON text or data a recipe holds, loading returns a Recipe or raises
RecipeError with a message — never another exception, never a hang. Recipes that load round-trip."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.recipe import Recipe, load_recipe, loads
from augstudio.core.ops import all_ops, load_all

load_all()
OPS = sorted(all_ops())
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
plain = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=20)


def _load_or_error(make):
    try:
        r = make()
    except RecipeError as e:
        assert str(e).strip(), "a RecipeError must say something"
        return None
    assert isinstance(r, Recipe)
    return r


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_as_yaml_or_json(text):
    _load_or_error(lambda: loads(text, "fuzz.yaml"))
    _load_or_error(lambda: loads(text, "fuzz.json"))


yaml_bits = st.sampled_from(["steps:", "seed:", "batch:", "- ", "{op: ", "rotate", "hflip", "}", "[", "]", ", ",
                             "p: ", "0.5", "\n", "  ", "&a ", "*a", "!!python/object/apply:os.system ",
                             "!!binary ", "!!set ", "!!timestamp ", "2024-01-01", "~", ".nan", ".inf", "-", ":",
                             "degrees: ", "'", '"', "#", "? ", "|", ">", "%YAML 1.1\n---\n", "<<: *a"])


@FUZZ
@given(st.lists(yaml_bits, max_size=40).map("".join))
def test_yaml_like_fragments(text):
    _load_or_error(lambda: loads(text, "fuzz.yaml"))


@FUZZ
@given(plain)
def test_arbitrary_data_as_a_recipe(data):
    _load_or_error(lambda: load_recipe(data if isinstance(data, dict) else {"steps": data}))
    _load_or_error(lambda: load_recipe({"steps": [data]}))


def _param_values(op_name):
    cls = all_ops()[op_name]
    names = [p.name for p in cls.params] + ["p", "enabled", "bogus"]
    return st.dictionaries(st.sampled_from(names), plain, max_size=4).map(lambda d: {"op": op_name, **d})


steps = st.sampled_from(OPS).flatmap(_param_values)


@FUZZ
@given(st.lists(steps, max_size=4), st.one_of(st.integers(-5, 2**64), plain))
def test_known_ops_with_arbitrary_parameter_values(step_list, seed):
    r = _load_or_error(lambda: load_recipe({"seed": seed, "steps": step_list}))
    if r is None:
        return
    # a recipe that loads is usable and round-trips through both file formats
    try:
        r.pipeline()
    except RecipeError:
        pass
    assert loads(r.dumps("yaml"), "back.yaml") == r
    assert loads(r.dumps("json"), "back.json") == r
    for s in r.steps:
        assert 0.0 <= s.p <= 1.0 and math.isfinite(s.p)
    json.dumps(r.to_dict(), allow_nan=False)


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_is_refused_quickly(depth):
    with pytest.raises(RecipeError):
        loads("x: " + "[" * depth + "]" * depth, "deep.yaml")
    with pytest.raises(RecipeError):
        loads('{"x": ' + "[" * depth + "]" * depth + "}", "deep.json")


def test_billion_laughs_is_refused():
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
        prev = name
    with pytest.raises(RecipeError, match="more than 100,000 values"):
        loads("\n".join(lines), "laughs.yaml")
