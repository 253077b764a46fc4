"""The device contract on a real GPU, and CPU-vs-GPU agreement. Skipped without CUDA (CI has none);
``benchmarks/gpu.py`` runs these on a CUDA machine. ``AUGSTUDIO_TEST_DEVICE=cpu`` runs the same code with the
CPU standing in for the GPU (``benchmarks/gpu.py --dry-run``), so the file is known to work before a GPU is
lent.

Agreement promised (and asserted): every op within 1 grey level of the CPU result (one op at a time: a
chain can amplify a one-level difference, e.g. through posterize); PuzzleMix masks identical for the same
saliency; style losses within 1e-3 relative; a batch on the GPU equals its items one by one on the GPU within
1 grey level; the same seeds give the same evaluation numbers twice on the same GPU (deterministic mode).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.engine.recipe import Recipe
from augstudio.core.ops.registry import all_ops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_property import random_step  # noqa: E402

DEVICE = os.environ.get("AUGSTUDIO_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")]
WEIGHT_FREE = {"stylize": {"method": "randconv"}}


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    pics = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return torch.stack([torch.from_numpy(np.asarray(Image.fromarray(a).resize((64, 64)))).permute(2, 0, 1)
                        for a in pics])


@pytest.mark.parametrize("name", sorted(all_ops()))
def test_every_op_on_the_device_agrees_with_the_cpu(name, photos):
    rng = random.Random(name)
    values = WEIGHT_FREE.get(name, {})
    container = all_ops()[name].family == "container"
    for trial in range(3):
        if container:  # nested steps that keep the size (items of one batch must end alike)
            keep = [n for n, c in all_ops().items() if c.family in ("color", "noise", "erase")]
            step = {"op": name, "steps": [random_step(rng, 1, names=keep) for _ in range(2)]}
        else:
            step = random_step(rng, names=[name]) if not values else {"op": name, **values}
        step["p"] = 1.0
        recipe = Recipe.from_dict({"seed": trial, "steps": [step]})
        items = [f"i{i}" for i in range(len(photos))]
        cpu, rec_cpu = recipe.apply_batch(photos, items)
        dev, rec_dev = recipe.apply_batch(photos.to(DEVICE), items)
        assert dev.device.type == torch.device(DEVICE).type, "outputs stay on the device of the inputs"
        assert rec_dev == rec_cpu, "draws come from the seed path, whatever the device"
        d = (dev.cpu().int() - cpu.int()).abs()
        assert int(d.max()) <= 1, (step, int(d.max()))
        one = recipe.apply(photos[1].to(DEVICE), item=items[1])
        assert int((one.int() - dev[1].int()).abs().max()) <= 1, "batched == one image on the device"


def test_puzzlemix_masks_are_identical_for_the_same_saliency(photos):
    from augstudio.core.methods.puzzlemix import image_saliency, puzzlemix_pairs

    x = photos.float() / 255
    sal = image_saliency(x)
    perm = torch.tensor([1, 2, 3, 0])
    for bn in (2, 4, 8, 16):
        a = puzzlemix_pairs(x, x[perm], sal, sal[perm], 0.4, bn)
        xd, sd = x.to(DEVICE), sal.to(DEVICE)
        b = puzzlemix_pairs(xd, xd[perm.to(DEVICE)], sd, sd[perm.to(DEVICE)], 0.4, bn)
        assert torch.equal(a.block_mask, b.block_mask.cpu()), bn
        assert torch.allclose(a.mixed, b.mixed.cpu(), atol=1e-5)


def test_style_losses_agree_within_1e_3(photos):
    from augstudio.core.methods.style.features import make_features
    from augstudio.core.methods.style.losses import fused_style_loss, style_targets

    x = photos[:1].float() / 255
    y = photos[1:2].float() / 255
    losses = []
    for dev in ("cpu", DEVICE):
        net = make_features("random", seed=0, device=dev)
        targets = style_targets(net(y.to(dev)))
        losses.append(float(fused_style_loss(net(x.to(dev)), targets)))
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


def test_evaluation_repeats_itself_on_the_device(tmp_path, samples_root):
    import shutil

    from augstudio.core.base.jobs import run_job
    from augstudio.core.workflows.evaluate import evaluate_job

    data = tmp_path / "wafers"
    for cls in ("Center", "Donut", "none"):
        shutil.copytree(samples_root / "wafers" / cls, data / cls)
    runs = [run_job(evaluate_job(data, [], epochs=2, seeds=[0], device=DEVICE)) for _ in range(2)]
    assert runs[0]["arms"][0]["runs"][0]["probs"] == runs[1]["arms"][0]["runs"][0]["probs"]


def test_stylize_in_forked_dataloader_workers_after_the_main_process_used_the_device(photos):
    """The main process makes tensors on the device first (as training does); the DataLoader workers
    (fork) run a recipe with stylize on the CPU and give the pixels Recipe.apply gives."""
    torch.ones(1, device=DEVICE)  # the device is initialised in the main process
    recipe = Recipe.from_dict({"seed": 2, "steps": [{"op": "stylize", "method": "randconv"}, {"op": "hflip"}]})
    ds = recipe.dataset(_Items(photos), copy=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    got = torch.cat([b for b, _ in loader])
    want = torch.stack([recipe.apply(photos[i], item=f"{i}.png", copy=0) for i in range(len(photos))])
    assert torch.equal(got, want)


class _Items(torch.utils.data.Dataset):
    """Four in-memory images with item keys, as the dataset wrapper takes them."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0

    def item_key(self, i):
        return f"{i}.png"


def test_targets_on_the_device_equal_the_cpu(photos):
    """Targets follow the device of the image and give the CPU's values (masks exactly: the nearest index is
    computed on the CPU; boxes and keypoints within 1e-3 px)."""
    recipe = Recipe.from_dict({"seed": 5, "steps": [
        {"op": "hflip", "p": 0.5}, {"op": "affine"}, {"op": "cutout"}, {"op": "random_resized_crop", "size": [48, 48]}]})
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[10:40, 12:50] = 2
    t = {"mask": mask, "boxes": [[12, 10, 50, 40]], "keypoints": [[20, 20]]}
    items = [f"i{i}" for i in range(len(photos))]
    _, cpu, _ = recipe.apply_batch(photos, items, targets=[t] * len(photos))
    _, dev, _ = recipe.apply_batch(photos.to(DEVICE), items, targets=[t] * len(photos))
    for a, b in zip(cpu, dev):
        assert b["mask"].device.type == torch.device(DEVICE).type
        assert torch.equal(a["mask"], b["mask"].cpu())
        assert torch.allclose(a["boxes"], b["boxes"].cpu(), atol=1e-3)
        assert torch.allclose(a["keypoints"], b["keypoints"].cpu(), atol=1e-3)
