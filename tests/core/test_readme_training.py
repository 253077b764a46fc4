"""The README's "Using a recipe in training code" lines run as written (on small real images): the dataset
wrapper with set_epoch, sample_transform into the default collate, the batch stage with a key and as a
collate_fn in workers, AugMix's views with jsd_loss, targets into a detection model, save_model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import augstudio

RECIPE = {"seed": 0, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": 10},
                               {"op": "random_resized_crop", "size": 32, "scale": [0.5, 1.0]},
                               {"op": "to_tensor"}, {"op": "normalize", "mean": [0.5] * 3, "std": [0.25] * 3}],
          "batch": [{"op": "one_of", "steps": [{"op": "mixup"}, {"op": "cutmix"}], "weights": [0.5, 0.5]}]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("train")
    for cls, img in (("cat", data.chelsea()), ("coffee", data.coffee())):
        (root / cls).mkdir()
        for i in range(4):
            Image.fromarray(img[i * 20:i * 20 + 200, i * 30:i * 30 + 260]).save(root / cls / f"{i}.png")
    return root


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))


def test_dataset_sample_transform_batch_stage_and_collate(folder):
    recipe = augstudio.load_recipe(RECIPE)
    with pytest.raises(augstudio.RecipeError, match="batch"):
        recipe.dataset(folder)  # the batch stage is never dropped silently
    train = recipe.dataset(folder, batch_stage_elsewhere=True)
    loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True, num_workers=0)
    train.set_epoch(1)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    net = _net()
    mix = recipe.batch_transform(num_classes=2, model=net)
    mixed, soft = mix(images, labels, key=(1, 0))
    loss = torch.sum(-soft * torch.log_softmax(net(mixed), 1), 1).mean()
    assert torch.isfinite(loss) and torch.allclose(soft.sum(1), torch.ones(4))
    loader = torch.utils.data.DataLoader(train, batch_size=4, collate_fn=recipe.collate_fn(num_classes=2))
    images, soft = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and soft.shape == (4, 2)
    plain = augstudio.load_recipe({**RECIPE, "batch": []})
    tv = torchvision.datasets.ImageFolder(str(folder), transform=plain.sample_transform())
    images, labels = next(iter(torch.utils.data.DataLoader(tv, batch_size=4)))
    assert images.shape == (4, 3, 32, 32)


def test_augmix_views_and_jsd_loss(folder):
    from augstudio.core.engine.training import jsd_loss

    recipe = augstudio.load_recipe({"seed": 0, "steps": [{"op": "augmix"}, {"op": "resize", "size": 32},
                                                         {"op": "to_tensor"}]})
    train = torchvision.datasets.ImageFolder(str(folder), transform=recipe.jsd_views())
    (clean, aug1, aug2), y = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    net = _net()
    lc, l1, l2 = net(clean), net(aug1), net(aug2)
    loss = torch.nn.functional.cross_entropy(lc, y) + jsd_loss(lc, l1, l2)
    assert torch.isfinite(loss) and not torch.equal(aug1, aug2)


def test_targets_into_a_detection_model_and_apply_with_targets(samples_root):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    recipe = augstudio.load_recipe({"seed": 0, "steps": [{"op": "hflip", "p": 0.5}, {"op": "to_tensor"}]})
    train = recipe.dataset(samples_root / "shapes", targets=True)
    loader = torch.utils.data.DataLoader(train, batch_size=2, collate_fn=train.collate)
    images, targets = next(iter(loader))
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=5).train()
    loss = sum(model(list(images), list(targets)).values())
    assert torch.isfinite(loss)
    pil = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    m = torch.zeros(40, 60, dtype=torch.int64)
    m[5:10, 5:20] = 1
    image, t = augstudio.load_recipe({"steps": [{"op": "hflip"}]}).apply(
        pil, item="a.png", targets={"mask": m, "boxes": [[5, 5, 20, 10]], "box_labels": [1]})
    assert t["boxes"].tolist() == [[40.0, 5.0, 55.0, 10.0]] and torch.equal(t["mask"], m.flip(-1))


def test_save_model_as_the_readme_says(tmp_path):
    path = augstudio.save_model(_net(), tmp_path / "my_cnn.pt2", classes=["cat", "coffee"],
                                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    lm = augstudio.load_model(str(path))
    assert lm.classes == ["cat", "coffee"] and tuple(lm.mean) == pytest.approx((0.485, 0.456, 0.406))
