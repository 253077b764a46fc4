"""Bring your own model, as the README says: a user's own CNN class trained on an ImageFolder, saved with
``augstudio.save_model``, then ``augstudio tta``, ``distill``, ``saliency --model`` and ``mix --model`` on the
file. TTA's single-view accuracy equals the user's own evaluation of the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T

import augstudio
from augstudio.cli import main
from augstudio.core.base.errors import ModelError

MEAN, STD = (0.3, 0.3, 0.3), (0.35, 0.35, 0.35)


class MyCNN(nn.Module):
    """A user's own classifier (not an augstudio or torchvision architecture)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def digits_folders(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path_factory.mktemp("own")
    for k, (img, y) in enumerate(zip(d.images[:600], d.target[:600])):
        split = "train" if k < 450 else "test"
        folder = root / split / str(y)
        folder.mkdir(parents=True, exist_ok=True)
        arr = (img * 255 / 16).round().astype(np.uint8)
        Image.fromarray(arr, "L").resize((16, 16), Image.BILINEAR).convert("RGB").save(folder / f"{k:04d}.png")
    return root / "train", root / "test"


@pytest.fixture(scope="module")
def trained(digits_folders, tmp_path_factory):
    train_dir, test_dir = digits_folders
    torch.manual_seed(0)
    tf = T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(MEAN, STD)])
    train = torchvision.datasets.ImageFolder(str(train_dir), transform=tf)
    net = MyCNN(len(train.classes))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    for _ in range(6):
        net.train()
        for x, y in loader:
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    test = torchvision.datasets.ImageFolder(str(test_dir), transform=tf)
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in torch.utils.data.DataLoader(test, batch_size=64))
    path = augstudio.save_model(net, tmp_path_factory.mktemp("model") / "mycnn.pt2", classes=train.classes,
                                mean=MEAN, std=STD, input_size=(16, 16))
    return net, path, correct, len(test)


def test_save_model_round_trip_and_messages(trained, tmp_path):
    net, path, _, _ = trained
    lm = augstudio.load_model(path)
    assert lm.classes == [str(i) for i in range(10)] and lm.mean == MEAN and lm.std == STD
    assert lm.input_size == (16, 16) and lm.source == "exported"
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(lm.module(x), net(x), atol=1e-5)
    lm.module.eval()  # an exported graph refuses eval(); the wrapper keeps the contract
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(lm.module(xg).sum(), xg)  # saliency needs input gradients
    assert g.shape == x.shape
    with pytest.raises(ModelError, match="needs mean and std"):
        augstudio.save_model(net, tmp_path / "x.pt2", classes=list("0123456789"), mean=None, std=None)
    with pytest.raises(ModelError, match="one name per output"):
        augstudio.save_model(net, tmp_path / "x.pt2", classes=["a", "b"], mean=MEAN, std=STD, input_size=(16, 16))


def test_any_size_model_exports_with_dynamic_height_and_width(trained, tmp_path):
    net, _, _, _ = trained
    path = augstudio.save_model(net, tmp_path / "any.pt2", classes=list("0123456789"), mean=MEAN, std=STD)
    lm = augstudio.load_model(path)
    assert lm.input_size is None
    for size in (16, 24, 40):
        x = torch.rand(3, 3, size, size + 8)
        with torch.no_grad():
            assert torch.allclose(lm.module(x), net(x), atol=1e-5)


def test_the_cli_commands_take_the_saved_model(trained, digits_folders, tmp_path, capsys):
    net, path, correct, total = trained
    train_dir, test_dir = digits_folders
    # tta: the plain pass is the user's own single-view evaluation, image for image
    report = tmp_path / "tta.json"
    assert main(["tta", "--model", str(path), "--data", str(test_dir), "--tta", "flips", "--device", "cpu",
                 "--json", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["n"] == total and rep["correct_plain"] == correct, (rep["correct_plain"], correct)
    capsys.readouterr()
    # distill: labels unlabelled images with the model over the TTA views
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for p in sorted(test_dir.rglob("*.png"))[:12]:
        (unlabeled / p.name).write_bytes(p.read_bytes())
    assert main(["distill", "--model", str(path), "--unlabeled", str(unlabeled), "--out", str(tmp_path / "dist"),
                 "--tta", "flips", "--threshold", "0.0", "--device", "cpu"]) == 0
    assert len((tmp_path / "dist" / "labels.csv").read_text().splitlines()) == 13
    # saliency and mix with --model
    img = sorted(test_dir.rglob("*.png"))[0]
    assert main(["saliency", "--model", str(path), "--image", str(img), "--out", str(tmp_path / "sal"),
                 "--device", "cpu"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["class"] in [str(i) for i in range(10)]
    img_b = sorted(test_dir.rglob("*.png"))[-1]
    assert main(["mix", "--model", str(path), "--a", str(img), "--b", str(img_b), "--method", "puzzlemix",
                 "--out", str(tmp_path / "mix"), "--device", "cpu"]) == 0
    info = json.loads((tmp_path / "mix" / "mix.json").read_text())
    assert info["saliency"] == f"model {path}"
