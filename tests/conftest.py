"""Shared test setup: headless Qt, small real images, and a few dataset folders made per test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("AUGSTUDIO_SETTINGS_DIR", "")  # set per test by the GUI fixtures

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def samples_root() -> Path:
    return SAMPLES


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A small ImageFolder of real photos (skimage.data), two classes."""
    from skimage import data

    root = tmp_path / "photos"
    pics = {"cat": [data.chelsea(), data.cat() if hasattr(data, "cat") else data.chelsea()[::-1]],
            "thing": [data.coffee(), data.astronaut()]}
    for cls, arrs in pics.items():
        (root / cls).mkdir(parents=True)
        for i, a in enumerate(arrs):
            im = Image.fromarray(np.ascontiguousarray(a)).resize((96, 64))
            im.save(root / cls / f"{cls}_{i}.{'jpg' if i == 0 else 'png'}")
    return root


@pytest.fixture
def wafer_folder(tmp_path) -> Path:
    """A copy of three classes of the bundled wafer maps (categorical palette PNGs)."""
    root = tmp_path / "wafers"
    for cls in ("Center", "Donut", "none"):
        shutil.copytree(SAMPLES / "wafers" / cls, root / cls)
    return root


@pytest.fixture
def one_torch_thread():
    """Small images on a shared 2-core machine: intra-op threads only add contention (exports and their
    tests run one torch thread per worker); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
