"""recipe.py: load / validate / save, the messages users see, and YAML that tries to build objects."""

from __future__ import annotations

import json

import pytest

from augstudio.core.base.errors import ParamError, RecipeError
from augstudio.core.engine.recipe import Recipe, load_recipe, loads
from augstudio.core.ops.step import parse_steps

TEXT = """\
augstudio_recipe: 1
seed: 42
steps:
  - {op: hflip, p: 0.5}
  - {op: rotate, degrees: 10}
  - {op: color_jitter, brightness: 0.2, enabled: false}
batch: []
notes: keep me
"""


def test_yaml_round_trip_and_canonical_values(tmp_path):
    r = loads(TEXT)
    assert r.seed == 42 and [s.op for s in r.steps] == ["hflip", "rotate", "color_jitter"]
    assert r.steps[1].values["degrees"] == [-10.0, 10.0], "one number x means [-x, x] for rotate"
    assert r.steps[2].enabled is False and r.extra == {"notes": "keep me"}
    for name in ("r.yaml", "r.json"):
        r.save(tmp_path / name)
        back = load_recipe(tmp_path / name)
        assert back == r and back.source == str(tmp_path / name)
    assert json.loads((tmp_path / "r.json").read_text())["seed"] == 42
    assert load_recipe(r) == r and load_recipe(r.to_dict()) == r


def test_parse_steps_is_public_and_validates():
    steps = parse_steps([{"op": "vflip"}, {"op": "rotate", "degrees": [-5, 5], "p": 0.25}])
    assert [(s.op, s.p) for s in steps] == [("vflip", 1.0), ("rotate", 0.25)]


@pytest.mark.parametrize("text,words", [
    ("steps: [{op: hflipp}]", "unknown op 'hflipp'. Closest known ops: hflip"),
    ("steps: [{p: 0.5}]", "step 1 has no 'op' key"),
    ("steps: [{op: hflip, p: 1.5}]", "step 1 (hflip): parameter 'p' (probability of applying the step) must be within 0 .. 1"),
    ("steps: [{op: rotate, degrees: [20, 10]}]", "step 1 (rotate): parameter 'degrees': low must not exceed high"),
    ("steps: [{op: rotate, degrees: .nan}]", "parameter 'degrees' must be finite"),
    ("steps: [{op: rotate, interpolation: cubicc}]", "did you mean"),
    ("steps: [{op: hflip, enabled: maybe}]", "'enabled' must be true or false"),
    ("steps: {op: hflip}", "'steps' must be a list of steps, got dict"),
    ("seed: -3", "'seed' must be a whole number 0 .. 2^63-1, got -3"),
    ("seed: 1.5", "'seed' must be a whole number"),
    ("augstudio_recipe: 9", "recipe schema version 9 is newer than this augstudio understands"),
    ("- hflip", "a recipe must be a mapping with 'steps:'"),
    ("steps: [hflip]", "must be a mapping like {op: hflip, p: 0.5}"),
    ("steps: [{op: hflip}", "not valid YAML at line 1"),
    ("a: &a [*a]", "refers to itself"),
    ("when: 2024-05-01", "put it in quotes"),
])
def test_messages_name_the_step_parameter_and_fix(text, words):
    with pytest.raises(RecipeError) as ei:
        loads(text, "r.yaml")
    assert words in str(ei.value)
    assert str(ei.value).startswith("r.yaml: ")


def test_param_error_is_a_recipe_error():
    with pytest.raises(ParamError):
        loads("steps: [{op: rotate, degrees: [-1000, 5]}]")


def test_json_errors_give_line_and_column():
    with pytest.raises(RecipeError, match=r"not valid JSON at line 2, column"):
        loads('{"seed": 1,\n "steps": [}', "r.json")


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "none.yaml")
    with pytest.raises(RecipeError, match="is a folder"):
        load_recipe(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RecipeError, match="not a UTF-8 text file"):
        load_recipe(tmp_path / "bin.yaml")
    with pytest.raises(RecipeError, match="a recipe is a file path, a dict or a Recipe"):
        load_recipe(42)


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "steps: !!python/object/apply:os.system ['touch {marker}']",
    "x: !!python/object/new:os.system ['touch {marker}']",
    "x: !!python/name:os.system",
    "x: !!python/module:os",
    "!!python/object/apply:subprocess.check_output [['touch', '{marker}']]",
])
def test_yaml_tags_that_build_objects_are_refused_and_never_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    with pytest.raises(RecipeError, match="YAML tag not allowed in a recipe"):
        loads(payload.format(marker=marker), "evil.yaml")
    assert not marker.exists()
    path = tmp_path / "evil.yaml"
    path.write_text(payload.format(marker=marker))
    with pytest.raises(RecipeError, match="recipes hold plain data only"):
        load_recipe(path)
    assert not marker.exists()


def test_recipe_equality_and_copy_are_deep():
    r = loads(TEXT)
    c = r.copy()
    c.steps[0].p = 0.1
    assert r.steps[0].p == 0.5 and c != r
    assert isinstance(Recipe.from_dict({"steps": []}), Recipe)


def test_slider_ranges_are_typical_spans_inside_the_legal_range():
    """Editors' sliders cover where the useful values are (rotate +-45, not +-360); typed values may use the
    whole legal range, which validation still checks."""
    from augstudio.core.ops.registry import all_batch_ops, all_ops

    ops = {**all_ops(), **all_batch_ops()}
    rotate = {p.name: p for p in ops["rotate"].params}["degrees"]
    assert rotate.slider_range() == (-45.0, 45.0) and (rotate.low, rotate.high) == (-360, 360)
    assert rotate.validate([-300, 300]) == [-300.0, 300.0]
    for name, cls in ops.items():
        for p in cls.params:
            r = p.slider_range()
            if p.kind in ("float", "int", "range", "int_range") and r is not None:
                lo = -float("inf") if p.low is None else p.low
                hi = float("inf") if p.high is None else p.high
                assert lo <= r[0] < r[1] <= hi, (name, p.name, r)


def test_an_unknown_top_level_key_warns_with_the_closest_key_and_strict_refuses():
    """`step:` instead of `steps:` used to load as an empty recipe: training ran without augmentation."""
    from augstudio.core.engine.recipe import RecipeWarning

    with pytest.warns(RecipeWarning, match="unknown top-level key 'step'; did you mean 'steps'"):
        r = load_recipe({"step": [{"op": "hflip"}]})
    assert r.steps == []
    with pytest.raises(RecipeError, match="did you mean 'steps'"):
        load_recipe({"step": [{"op": "hflip"}]}, strict=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # metadata keys and x- keys are fine
        load_recipe({"steps": [], "name": "a", "description": "b", "x-team": 1, "augstudio_version": "0.1"},
                    strict=True)


def test_a_kernel_that_fails_is_named_with_its_step_and_the_image_size(monkeypatch):
    """An op's unexpected exception comes back as a RecipeError naming the step (or the fused steps) and the
    image's size, for one image and for a batch."""
    import torch

    from augstudio.core.ops.registry import get_op

    def broken(self, *a, **k):
        raise ValueError("kernel exploded")

    monkeypatch.setattr(get_op("invert"), "apply", broken)
    monkeypatch.setattr(get_op("invert"), "apply_batch", broken)
    recipe = load_recipe({"steps": [{"op": "hflip"}, {"op": "invert"}]})
    x = torch.zeros((3, 12, 20), dtype=torch.uint8)
    with pytest.raises(RecipeError, match=r"step 2 \(invert\): failed on a rgb image of size \(12, 20\): "
                                          r"ValueError: kernel exploded"):
        recipe.apply(x, item="a")
    with pytest.raises(RecipeError, match=r"step 2 \(invert\): failed on a rgb image of size \(12, 20\) "
                                          r"\(a batch of 2\)"):
        recipe.apply_batch(torch.stack([x, x]), ["a", "b"])
    from augstudio.core.kernels import warp

    monkeypatch.setattr(warp, "warp_batch", broken)
    fused = load_recipe({"steps": [{"op": "hflip"}, {"op": "rotate"}]})
    with pytest.raises(RecipeError, match=r"steps 1 \(hflip\), 2 \(rotate\) \(fused\): failed on a rgb image of size "
                                          r"\(12, 20\): ValueError"):
        fused.apply(x, item="a")


def test_the_pipeline_is_built_once_and_rebuilt_when_a_step_changes():
    """``Recipe.pipeline`` reuses its pipeline while the steps are unchanged, builds a new one for a step
    edited in place, added or switched off, and a pickled recipe carries no pipeline."""
    import pickle

    recipe = load_recipe({"steps": [{"op": "hflip"}, {"op": "rotate", "degrees": [5, 5]}]})
    first = recipe.pipeline()
    assert recipe.pipeline() is first
    recipe.steps[1].values["degrees"] = [20.0, 20.0]
    edited = recipe.pipeline()
    assert edited is not first and edited.ops[1].values["degrees"] == [20.0, 20.0]
    recipe.steps[1].values["degrees"][1] = 30.0  # a list edited in place, as a GUI editor may do
    assert recipe.pipeline() is not edited and recipe.pipeline().ops[1].values["degrees"] == [20.0, 30.0]
    edited = recipe.pipeline()
    recipe.steps[0].enabled = False
    assert recipe.pipeline() is not edited and not recipe.pipeline().steps[0].enabled
    recipe.steps.append(parse_steps([{"op": "vflip"}])[0])
    assert [s.op for s in recipe.pipeline().steps] == ["hflip", "rotate", "vflip"]
    copy = pickle.loads(pickle.dumps(recipe))
    assert "_pipeline" not in copy.__dict__ and copy == recipe
