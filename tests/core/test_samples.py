import json

import numpy as np
from PIL import Image

from augstudio.core.io import samples
from augstudio.core.io.dataset import scan


def test_bundled_samples_match_a_fresh_deterministic_build(tmp_path, samples_root):
    built = samples.build(tmp_path / "s")
    for rel in ["wafers/Donut/donut_003.png", "shapes/star/star_007.jpg", "shapes/boxes.json",
                "shapes/annotations.json", "wafers/annotations.json"]:
        assert (built / rel).read_bytes() == (samples_root / rel).read_bytes(), rel


def test_bundled_samples_shape_and_size(samples_root):
    total = sum(p.stat().st_size for p in samples_root.rglob("*") if p.is_file())
    assert total < 3_000_000
    wafers = scan(samples_root / "wafers")
    assert wafers.classes == sorted(samples.WAFER_CLASSES)
    assert all(n == samples.PER_CLASS for n in wafers.counts().values())
    im = Image.open(samples_root / "wafers" / "Scratch" / "scratch_000.png")
    assert im.mode == "P" and im.size == (64, 64)
    values = set(np.unique(np.asarray(im)).tolist())
    assert values == {0, 1, 2}
    shapes = scan(samples_root / "shapes")
    assert shapes.classes == sorted(samples.SHAPE_CLASSES)
    boxes = json.loads((samples_root / "shapes" / "boxes.json").read_text())
    assert set(boxes) == {it.path for it in shapes.items}
    for x0, y0, x1, y1 in boxes.values():
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and (x1 - x0) > 20


def test_wafer_classes_look_like_their_names(samples_root):
    def fail_fraction(cls):
        fr = []
        for p in sorted((samples_root / "wafers" / cls).glob("*.png")):
            a = np.asarray(Image.open(p))
            fr.append((a == 2).sum() / max(1, (a > 0).sum()))
        return np.mean(fr)

    assert fail_fraction("Near-full") > 0.75
    assert fail_fraction("none") < 0.06
    assert 0.15 < fail_fraction("Random") < 0.45


def test_bundled_samples_carry_masks_boxes_and_keypoints(samples_root):
    """The shapes' COCO annotations: the box of boxes.json, a mask whose bounding box it is, and the
    polygon's vertices as keypoints on the mask's outline; the wafers': a defect region over fail dies for
    the patterned classes, none for Random and none."""
    import torch

    from augstudio.core.io.targets import read_targets

    shapes = read_targets(samples_root / "shapes")
    boxes = json.loads((samples_root / "shapes" / "boxes.json").read_text())
    assert shapes.problems == [] and len(shapes.items) == len(boxes)
    for it in shapes.items:
        t = it.targets
        assert t["boxes"].tolist() == [[float(v) for v in boxes[it.image]]]
        ys, xs = torch.nonzero(t["mask"][0], as_tuple=True)
        assert [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1] == boxes[it.image]
        n = {"circle": 1, "square": 4, "triangle": 3, "star": 10}[it.image.split("/")[0]]
        assert t["keypoints"].shape == (n, 2) and bool(t["keypoint_visible"].all())
        x1, y1, x2, y2 = boxes[it.image]
        k = t["keypoints"]
        assert bool(((k[:, 0] >= x1 - 1) & (k[:, 0] <= x2 + 1) & (k[:, 1] >= y1 - 1) & (k[:, 1] <= y2 + 1)).all())
    wafers = read_targets(samples_root / "wafers")
    assert wafers.problems == [] and len(wafers.items) == len(samples.WAFER_CLASSES) * samples.PER_CLASS
    for it in wafers.items:
        t = it.targets
        cls = it.image.split("/")[0]
        if cls in ("Random", "none"):
            assert len(t["boxes"]) == 0
            continue
        assert wafers.classes[int(t["box_labels"][0])] == cls
        region = t["mask"][0].bool().numpy()
        fails = np.asarray(Image.open(samples_root / "wafers" / it.image)) == 2
        assert (fails & region).sum() >= 0.5 * region.sum() or cls == "Near-full"
