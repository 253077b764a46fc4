"""augstudio export --targets: the source's masks, boxes and keypoints are exported in its own format, moved
by the same draws as the pixels (equal to what the training dataset gives), byte-identical across -j and
re-runs, with what was dropped in the manifest; an identity recipe round-trips every format."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import leftovers, tree_hash  # noqa: E402
from test_target_formats import _picture, _same_targets, coco_root, voc_root, yolo_root  # noqa: E402,F401

from augstudio.cli import main  # noqa: E402
from augstudio.core.engine.recipe import load_recipe  # noqa: E402
from augstudio.core.io.targets import read_targets  # noqa: E402

MOVING = {"seed": 3, "targets": {"min_visibility": 0.5},
          "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-20, 20]},
                    {"op": "random_resized_crop", "size": [48, 48], "scale": [0.2, 0.6]},
                    {"op": "color_jitter", "brightness": 0.3}]}


def _recipe(tmp_path, data, name="r.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return str(p)


def _source_of(output: str) -> str:
    """``images/a__1.png`` -> the stem ``images/a`` and copy 1."""
    p = PurePosixPath(output)
    stem, copy = p.stem.rsplit("__", 1)
    return str(p.with_name(stem)), int(copy)


@pytest.fixture
def shapes(tmp_path, samples_root) -> Path:
    dst = tmp_path / "shapes"
    shutil.copytree(samples_root / "shapes", dst)
    return dst


def test_exported_targets_are_the_training_datasets_and_identical_across_workers(shapes, tmp_path):
    r = _recipe(tmp_path, MOVING)
    for j in ("1", "2"):
        assert main(["export", str(shapes), "-r", r, "-o", str(tmp_path / f"j{j}"), "-n", "2", "-j", j,
                     "--targets"]) == 0
    assert tree_hash(tmp_path / "j1") == tree_hash(tmp_path / "j2") and not leftovers(tmp_path / "j1")
    out = read_targets(tmp_path / "j1")
    assert out.format == "coco" and out.problems == [] and len(out.items) == 120
    recipe = load_recipe(MOVING)
    src = read_targets(shapes)
    index = {str(PurePosixPath(it.image).with_suffix("")): i for i, it in enumerate(src.items)}
    data = {c: recipe.dataset(shapes, copy=c, targets=True, output="plain") for c in (0, 1)}
    lost = 0
    for it in out.items[::7]:
        stem, copy = _source_of(it.image)
        img, want = data[copy][index[stem]]
        got = it.targets
        assert tuple(img.shape[-2:]) == it.size
        assert torch.equal(got["box_labels"], want["box_labels"])
        assert torch.allclose(got["boxes"], want["boxes"], atol=1e-3), (it.image, got["boxes"], want["boxes"])
        assert torch.equal(got["mask"], want["mask"]), it.image  # instance masks, one per kept box
        lost += len(want["boxes"]) == 0
    manifest = [json.loads(line) for line in (tmp_path / "j1" / "manifest.jsonl").read_text().splitlines()]
    records = [s for rec in manifest for s in rec["steps"] if "targets_lost" in s]
    assert records, "crops to 20-60% of the image drop some boxes under min_visibility 0.5"
    reasons = {e["reason"] for s in records for e in s["targets_lost"]}
    assert any("visib" in why for why in reasons), reasons
    # a re-run of the finished export changes nothing
    assert main(["export", str(shapes), "-r", r, "-o", str(tmp_path / "j1"), "-n", "2", "--targets"]) == 0
    assert tree_hash(tmp_path / "j1") == tree_hash(tmp_path / "j2")


def _mask_folder(root: Path) -> Path:
    for name, (w, h) in {"a": (40, 30), "sub/b": (25, 35)}.items():
        _picture(root / "images" / f"{name}.png", w, h, rects=[(2, 3, 10, 12)])
        m = np.zeros((h, w), np.uint8)
        m[3:12, 2:10] = 1
        m[20:25, 5:15] = 2
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(root / "masks" / f"{name}.png")
    return root


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "masks"])
def test_an_identity_export_round_trips_every_format(fmt, request, tmp_path):
    root = _mask_folder(tmp_path / "m") if fmt == "masks" else request.getfixturevalue(f"{fmt}_root")
    src = read_targets(root)
    assert src.format == fmt and src.problems == []
    assert main(["export", str(root), "-r", _recipe(tmp_path, {"steps": []}), "-o", str(tmp_path / "o"),
                 "--targets"]) == 0
    back = read_targets(tmp_path / "o", fmt)
    assert back.problems == [] and back.classes == src.classes
    by_stem = {str(PurePosixPath(it.image).with_suffix("")): it for it in src.items}
    assert len(back.items) == len(src.items)
    for it in back.items:
        stem, copy = _source_of(it.image)
        a = by_stem[stem]
        assert copy == 0 and a.size == it.size
        _same_targets(a.targets, it.targets, box_atol=1e-4, where=it.image)


def test_what_cannot_carry_targets_is_refused_before_anything_is_written(shapes, tmp_path, capsys):
    out = tmp_path / "o"
    mixed = _recipe(tmp_path, {"steps": [], "batch": [{"op": "mixup"}]})
    assert main(["export", str(shapes), "-r", mixed, "-o", str(out), "--targets"]) == 2
    assert "batch stage" in capsys.readouterr().err and not out.exists()
    augmix = _recipe(tmp_path, {"steps": [{"op": "augmix"}]}, "a.json")
    assert main(["export", str(shapes), "-r", augmix, "-o", str(out), "--targets"]) == 2
    assert "augmix" in capsys.readouterr().err and not out.exists()
    plain = _recipe(tmp_path, {"steps": []}, "p.json")
    assert main(["export", str(shapes), "-r", plain, "-o", str(out), "--targets", "--format", "webdataset"]) == 2
    assert "webdataset" in capsys.readouterr().err and not out.exists()
    bare = tmp_path / "bare"
    bare.mkdir()
    Image.new("RGB", (8, 8)).save(bare / "x.png")
    assert main(["export", str(bare), "-r", plain, "-o", str(out), "--targets"]) == 2
    assert "no dataset format recognised" in capsys.readouterr().err
