"""The same recipe, seed and item give the same pixels in Recipe.apply, export and a DataLoader."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import augstudio
from augstudio.core.base.jobs import run_job
from augstudio.core.io.images import read_image
from augstudio.core.workflows.export import export_job

RECIPE = {
    "augstudio_recipe": 1,
    "seed": 7,
    "steps": [
        {"op": "hflip", "p": 0.5},
        {"op": "rotate", "degrees": [-15, 15]},
        {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3},
        {"op": "random_resized_crop", "size": [48, 48], "scale": [0.3, 1.0]},
    ],
    "batch": [],
}


def test_apply_keeps_the_input_kind_and_is_deterministic(astronaut):
    r = augstudio.load_recipe(RECIPE)
    out1, rec1 = r.apply(astronaut, item="a.png", copy=3, return_params=True)
    out2, rec2 = r.apply(astronaut, item="a.png", copy=3, return_params=True)
    assert isinstance(out1, Image.Image) and out1.size == (48, 48)
    assert np.array_equal(np.asarray(out1), np.asarray(out2)) and rec1 == rec2
    json.dumps(rec1)  # params are plain data
    t = torch.from_numpy(np.array(astronaut)).permute(2, 0, 1).contiguous()
    out_t = r.apply(t, item="a.png", copy=3)
    assert out_t.dtype == torch.uint8 and out_t.shape == (3, 48, 48)
    assert np.array_equal(out_t.permute(1, 2, 0).numpy(), np.asarray(out1))
    other = r.apply(astronaut, item="a.png", copy=4)
    assert not np.array_equal(np.asarray(other), np.asarray(out1))


def test_editing_one_step_does_not_reroll_the_others(astronaut):
    r = augstudio.load_recipe(RECIPE)
    _, rec = r.apply(astronaut, item="x", return_params=True)
    changed = dict(RECIPE, steps=[dict(s) for s in RECIPE["steps"]])
    changed["steps"][2] = {"op": "color_jitter", "brightness": 0.5}
    _, rec2 = augstudio.load_recipe(changed).apply(astronaut, item="x", return_params=True)
    assert rec[1] == rec2[1] and rec[3] == rec2[3]
    assert rec[2] != rec2[2]


def test_export_pixels_equal_recipe_apply(tmp_path, photo_folder):
    out = tmp_path / "out"
    run_job(export_job(photo_folder, RECIPE, out, copies=2))
    r = augstudio.load_recipe(RECIPE)
    lines = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    for rec in lines:
        src = read_image(photo_folder / rec["source"])
        expect, steps = r.apply(src, item=rec["source"], copy=rec["copy"], return_params=True)
        got = read_image(out / rec["output"])
        assert torch.equal(got.pixels, expect.pixels), rec["output"]
        assert steps == rec["steps"]


class _Folder(torch.utils.data.Dataset):
    def __init__(self, image, transform):
        self.image, self.transform = image, transform

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self.transform(self.image))).permute(2, 0, 1)


@pytest.mark.parametrize("workers", [0, 2])
def test_sample_transform_fresh_per_call_reproducible_and_distinct_per_worker(astronaut, workers):
    small = astronaut.resize((96, 96))
    recipe = augstudio.load_recipe(RECIPE)

    def epoch():  # a whole training script: seed, build, iterate
        torch.manual_seed(0)
        tf = recipe.sample_transform()
        dl = torch.utils.data.DataLoader(_Folder(small, tf), batch_size=8, num_workers=workers)
        return next(iter(dl))

    a, b = epoch(), epoch()
    assert torch.equal(a, b)  # reproducible from torch.manual_seed
    flat = a.flatten(1)
    assert len({tuple(x[:64].tolist()) for x in flat}) == 8  # each sample different, also across workers
    before = torch.get_rng_state().clone()
    recipe.sample_transform()(small)
    assert torch.equal(before, torch.get_rng_state())  # never touches the global RNG
