"""The same-pixels promise kept in training code: ``recipe.dataset(...)`` keys every sample by its item's
relative path and the copy, so a DataLoader (2 workers, fork and spawn) gives exactly the bytes that
``augstudio export`` wrote for that item and copy, and fresh draws each epoch."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from augstudio.core.base.jobs import run_job
from augstudio.core.engine.recipe import Recipe, load_recipe
from augstudio.core.io.images import read_image
from augstudio.core.workflows.export import export_job

MIXED = {"seed": 5, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": 20, "p": 0.7},
                              {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3},
                              {"op": "random_resized_crop", "size": 40, "scale": [0.5, 1.0]},
                              {"op": "gaussian_noise", "std": 0.05, "p": 0.5}, {"op": "cutout", "p": 0.5}]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, samples_root):
    root = tmp_path_factory.mktemp("wrapper")
    src = root / "src"
    for cls in ("circle", "star"):
        shutil.copytree(samples_root / "shapes" / cls, src / cls)
    for cls in ("Donut", "Scratch"):  # categorical wafer maps beside the photos: kinds differ per item
        shutil.copytree(samples_root / "wafers" / cls, src / f"wafer-{cls}")
    recipe = Recipe.from_dict({**MIXED, "steps": MIXED["steps"][:2] + MIXED["steps"][3:4]})  # no colour: wafers
    out = root / "out"
    run_job(export_job(src, recipe, out, copies=2))
    return src, out, recipe


def _exported_pixels(out, copy):
    import json

    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return {r["source"]: read_image(out / r["output"]).pixels for r in recs if r["copy"] == copy}


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_every_exported_file_equals_the_dataset_wrapper_in_a_two_worker_loader(exported, context):
    src, out, recipe = exported
    for copy in (0, 1):
        want = _exported_pixels(out, copy)
        ds = recipe.dataset(src, copy=copy)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context)
        got = {ds.key(i): x for i, (x, _label) in enumerate(loader)}
        assert got.keys() == want.keys() and len(got) == 2 * 15 + 2 * 15
        assert [k for k in want if not torch.equal(got[k], want[k])] == []


def test_fresh_draws_each_epoch_and_labels_follow_the_folders(exported):
    src, out, recipe = exported
    ds = recipe.dataset(src)
    first = [ds[i][0] for i in range(6)]
    assert all(torch.equal(a, ds[i][0]) for i, a in enumerate(first)), "the same epoch repeats itself"
    ds.set_epoch(1)
    assert any(not torch.equal(a, ds[i][0]) for i, a in enumerate(first)), "another epoch draws anew"
    want = _exported_pixels(out, 1)
    assert all(torch.equal(ds[i][0], want[ds.key(i)]) for i in range(6)), "epoch e is export copy e"
    assert [ds[i][1] for i in (0, len(ds) - 1)] == [0, 3] and ds.classes[0] == "circle"


def test_a_torchvision_image_folder_is_keyed_by_its_relative_paths(exported):
    src, out, recipe = exported
    want = _exported_pixels(out, 0)
    tv = torchvision.datasets.ImageFolder(str(src))
    ds = recipe.dataset(tv, copy=0)
    assert len(ds) == len(tv) and ds.key(0) == "circle/circle_000.jpg"
    for i in (0, 17, len(ds) - 1):
        x, y = ds[i]
        assert torch.equal(x, want[ds.key(i)]) and y == tv.samples[i][1]


def test_item_keys_are_normalised_to_the_export_key(exported):
    """`./`, backslashes and an absolute path under the dataset root give export's pixels, not others."""
    src, out, recipe = exported
    want = _exported_pixels(out, 0)["circle/circle_003.jpg"]
    pic = read_image(src / "circle" / "circle_003.jpg")
    for spelling in ("circle/circle_003.jpg", "./circle/circle_003.jpg", "circle\\circle_003.jpg",
                     "circle//circle_003.jpg"):
        assert torch.equal(recipe.apply(pic, item=spelling, copy=0).pixels, want), spelling
    absolute = str(src / "circle" / "circle_003.jpg")
    assert torch.equal(recipe.apply(pic, item=absolute, copy=0, root=src).pixels, want)
    # control: another item's key gives other pixels
    assert not torch.equal(recipe.apply(pic, item="circle/circle_004.jpg", copy=0).pixels, want)


def test_wrapper_messages(exported):
    _, _, recipe = exported
    with pytest.raises(Exception, match="folder, a torchvision ImageFolder"):
        recipe.dataset(object())
    with pytest.raises(Exception, match="'tensor' or 'pil'"):
        recipe.dataset(exported[0], output="numpy")
    assert load_recipe(recipe.to_dict()).dataset(exported[0], output="pil")[0][0].size == (40, 40)
