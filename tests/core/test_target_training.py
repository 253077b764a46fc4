"""Training with targets: ``recipe.dataset(..., targets=True)`` gives export's pixels and the targets moved
with them, as torchvision ``tv_tensors``, in DataLoader workers too; torchvision's segmentation and
detection models take a batch of it and run an optimisation step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from augstudio.core.base.errors import DatasetError, RecipeError
from augstudio.core.engine.recipe import load_recipe
from augstudio.core.io.images import read_image
from augstudio.core.io.targets import read_targets

RECIPE = {"seed": 3, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-20, 20]},
                               {"op": "random_resized_crop", "size": [64, 64], "scale": [0.5, 1.0]},
                               {"op": "color_jitter"}, {"op": "cutout", "holes": 1}]}


def _shapes(rng, h, w):
    """An image with 1-3 filled rectangles, its class mask and its boxes."""
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    boxes, labels = [], []
    for _ in range(rng.integers(1, 4)):
        bw, bh = rng.integers(8, w // 2), rng.integers(8, h // 2)
        x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
        c = int(rng.integers(1, 3))
        img[y:y + bh, x:x + bw] = (200, 80, 40) if c == 1 else (40, 200, 80)
        mask[y:y + bh, x:x + bw] = c
        boxes.append([int(x), int(y), int(bw), int(bh)])
        labels.append(c)
    return img, mask, boxes, labels


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    rng = np.random.default_rng(0)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]}
    for i in range(8):
        h, w = (72, 96) if i % 2 else (80, 80)
        img, mask, boxes, labels = _shapes(rng, h, w)
        for folder in ("masks_ds/images", "coco_ds/images"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / folder / f"{i}.png")
        (root / "masks_ds/masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks_ds/masks" / f"{i}.png")
        coco["images"].append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        for b, c in zip(boxes, labels):
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i, "category_id": c,
                                        "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
    (root / "coco_ds/annotations.json").write_text(json.dumps(coco))
    (root / "masks_ds/classes.txt").write_text("background\nred\ngreen\n")
    return root / "masks_ds", root / "coco_ds"


def test_items_are_recipe_apply_with_targets_and_tv_tensors(datasets):
    masks, coco = datasets
    recipe = load_recipe(RECIPE)
    for root, kinds in ((masks, {"masks"}), (coco, {"boxes", "labels", "box_index"})):
        ds = recipe.dataset(root, copy=2, targets=True)
        assert len(ds) == 8
        data = read_targets(root)
        for i in range(len(ds)):
            image, t = ds[i]
            item = data.items[i]
            want, want_t = recipe.apply(read_image(data.abspath(item)).pixels, item=item.image, copy=2,
                                        targets=item.targets)
            assert torch.equal(image, want)
            assert set(t) == kinds
            if "boxes" in t:
                assert isinstance(t["boxes"], tv_tensors.BoundingBoxes)
                assert tuple(t["boxes"].canvas_size) == (64, 64)
                assert torch.equal(t["boxes"].as_subclass(torch.Tensor), want_t["boxes"])
                assert torch.equal(t["labels"], want_t["box_labels"])
            if "masks" in t:
                assert isinstance(t["masks"], tv_tensors.Mask)
                assert torch.equal(t["masks"].as_subclass(torch.Tensor), want_t["mask"])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_items(datasets, context):
    _, coco = datasets
    ds = load_recipe(RECIPE).dataset(coco, copy=0, targets=True, output="plain")
    direct = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context=context,
                                         collate_fn=ds.collate)
    got = [(img, t) for images, targets in loader for img, t in zip(images, targets)]
    assert len(got) == len(direct)
    for (a, ta), (b, tb) in zip(direct, got):
        assert torch.equal(a, b) and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_epochs_draw_anew(datasets):
    _, coco = datasets
    ds = load_recipe(RECIPE).dataset(coco, targets=True, output="plain")
    first = ds[0][1]["boxes"]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0][1]["boxes"]) or not torch.equal(ds[0][0], load_recipe(RECIPE).dataset(
        coco, targets=True, output="plain")[0][0])


def test_refusals_name_the_problem(datasets, tmp_path):
    masks, _ = datasets
    with pytest.raises(RecipeError, match="op 'augmix' cannot carry masks"):
        load_recipe({"steps": [{"op": "augmix"}]}).dataset(masks, targets=True)
    with pytest.raises(RecipeError, match="output must be one of tv_tensors, plain"):
        load_recipe(RECIPE).dataset(masks, targets=True, output="pil")
    with pytest.raises(DatasetError, match="no dataset format recognised"):
        load_recipe(RECIPE).dataset(tmp_path, targets=True)


def test_a_segmentation_model_trains_a_step(datasets):
    """LR-ASPP (torchvision) on masks from the wrapper, ignore_index for erased and outside pixels."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    masks, _ = datasets
    recipe = load_recipe({**RECIPE, "steps": RECIPE["steps"] + [{"op": "to_tensor"}]})
    loader = torch.utils.data.DataLoader(recipe.dataset(masks, targets=True), batch_size=4)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    y = targets["masks"]
    assert y.shape == (4, 64, 64) and set(y.unique().tolist()) <= {0, 1, 2, 255}
    torch.manual_seed(0)
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(images)["out"], y.as_subclass(torch.Tensor), ignore_index=255)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_detection_model_trains_a_step(datasets):
    """Faster R-CNN (torchvision) on boxes and labels from the wrapper, as its references batch them."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    _, coco = datasets
    recipe = load_recipe({**RECIPE, "steps": RECIPE["steps"] + [{"op": "to_tensor"}]})
    ds = recipe.dataset(coco, targets=True)
    images, targets = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=ds.collate)))
    assert len(images) == 4 and all(isinstance(t["boxes"], tv_tensors.BoundingBoxes) for t in targets)
    targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]  # 0 is background there
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.005)
    losses = model(list(images), targets)
    loss = sum(losses.values())
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and {"loss_classifier", "loss_box_reg"} <= set(losses)
