"""Test-time augmentation: exact views, merge rules against their formulas, recipe validation, and the
evaluation on real wafer maps with a probe trained in the test (numbers recomputed independently)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from augstudio.core.base.errors import DatasetError, RecipeError
from augstudio.core.base.jobs import CancelToken, run_job
from augstudio.core.io.dataset import Dataset, scan
from augstudio.core.io.images import Picture, pil_to_picture, read_image
from augstudio.core.models import loading as models
from augstudio.core.workflows.tta import (
    Classifier,
    classifier_from_loaded,
    evaluate_job,
    merge_probs,
    predict_one,
)
from augstudio.core.workflows.tta_views import TTARecipe, load_tta

ROOT = Path(__file__).resolve().parents[2]
WAFERS = ROOT / "resources" / "samples" / "wafers"


# -- a small CNN trained on the bundled wafer maps (seeded, about 1 s of CPU) ---------------------------
def _net(n_classes: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.AvgPool2d(2),  # 64 -> 32 first: 4x cheaper to train
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, n_classes))


def onehot(pic: Picture) -> torch.Tensor:
    return torch.nn.functional.one_hot(pic.pixels[0].long().clamp(0, 2), 3).permute(2, 0, 1).float()


def split(n_train: int = 10):
    ds = scan(WAFERS)
    train = [it for it in ds.items if int(it.path[-7:-4]) < n_train]
    held = [it for it in ds.items if int(it.path[-7:-4]) >= n_train]
    return ds, train, held


def train_wafer_model(epochs: int = 30, n_train: int = 10):
    """(LoadedModel, classes) for a CNN trained on the first n_train maps of each class, no augmentation."""
    torch.set_num_threads(1)
    ds, train, _ = split(n_train)
    m = _net(len(ds.classes))
    x = torch.stack([onehot(read_image(ds.abspath(it))) for it in train])
    y = torch.tensor([it.label for it in train])
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(ep))
        for s in range(0, len(x), 30):
            b = perm[s:s + 30]
            loss = torch.nn.functional.cross_entropy(m(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    lm = models.LoadedModel(m, None, (0.0,), (1.0,), list(ds.classes), "wafer-cnn", "onehot", 3, "test")
    return lm


@pytest.fixture(scope="module")
def wafer_model():
    return train_wafer_model()


def d4_reference(x: torch.Tensor) -> list[torch.Tensor]:
    """The dihedral group written out independently: rot90 k (k = 0..3), then hflip of each."""
    return [torch.rot90(x, k, (-2, -1)) for k in range(4)] + [torch.rot90(x.flip(-1), k, (-2, -1)) for k in range(4)]


# -- views --------------------------------------------------------------------------------------------------
def test_d4_views_are_the_eight_symmetries():
    x = torch.arange(3 * 5 * 5, dtype=torch.uint8).view(3, 5, 5)
    pic = Picture(x, "rgb")
    tta = load_tta("d4")
    got = [v.apply(pic).pixels for v in tta.views]
    ref = d4_reference(x)
    assert len(got) == 8
    for g, r in zip(got, ref):
        assert torch.equal(g, r)
    assert len({tuple(g.flatten().tolist()) for g in got}) == 8  # all distinct on an asymmetric image
    assert tta.names[:4] == ["identity", "rot90:1", "rot90:2", "rot90:3"]


def test_ten_crop_matches_torchvision(astronaut):
    pic = pil_to_picture(astronaut.resize((101, 77)))
    for size in (50, [41, 60]):
        tta = TTARecipe.from_dict({"views": [{"ten_crop": size}]})
        ref = TF.ten_crop(pic.pixels, size if isinstance(size, list) else [size, size])
        got = [v.apply(pic).pixels for v in tta.views]
        assert len(got) == 10
        for g, r in zip(got, ref):
            assert torch.equal(g, r)
    five = TTARecipe.from_dict({"views": [{"five_crop": 0.5}]})
    assert [tuple(v.apply(pic).pixels.shape) for v in five.views] == [(3, 38, 50)] * 5  # round(77*.5), round(101*.5)


def test_zoom_keeps_size_and_categories():
    pic = read_image(WAFERS / "Donut" / "donut_000.png")
    tta = TTARecipe.from_dict({"views": [{"scales": [0.5, 1.0, 1.5]}]})
    out = [v.apply(pic) for v in tta.views]
    assert [o.size for o in out] == [(64, 64)] * 3
    assert torch.equal(out[1].pixels, pic.pixels)
    for o in out:
        assert o.kind == "categorical"
        assert set(o.pixels.unique().tolist()) <= {0, 1, 2}
    small = out[0].pixels[0]
    assert small[:16].eq(0).all() and small[:, :16].eq(0).all()  # zoomed out: border filled with 0
    from torchvision.transforms import InterpolationMode

    half = TF.resize(pic.pixels, [32, 32], interpolation=InterpolationMode.NEAREST)[0]
    assert torch.equal(small[16:48, 16:48], half)  # the shrunk image sits in the centre


def test_composition_applies_left_to_right():
    x = torch.arange(12, dtype=torch.uint8).view(1, 3, 4)
    v = TTARecipe.from_dict({"views": [["vflip", {"rot90": 1}]]}).views[0]
    assert v.name == "vflip+rot90:1"
    assert torch.equal(v.apply(Picture(x, "gray")).pixels, torch.rot90(x.flip(-2), 1, (-2, -1)))


# -- merge rules vs their formulas ---------------------------------------------------------------------------
P = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]]], dtype=torch.float64)  # 1 x 3 views x 3


def test_merge_rules_formulas():
    assert torch.allclose(merge_probs(P, "mean"), torch.tensor([[1.3, 1.2, 0.5]], dtype=torch.float64) / 3)
    g = torch.tensor([(0.7 * 0.1 * 0.5) ** (1 / 3), (0.2 * 0.6 * 0.4) ** (1 / 3), (0.1 * 0.3 * 0.1) ** (1 / 3)],
                     dtype=torch.float64)
    assert torch.allclose(merge_probs(P, "gmean")[0], g / g.sum())
    mx = torch.tensor([0.7, 0.6, 0.3], dtype=torch.float64)
    assert torch.allclose(merge_probs(P, "max")[0], mx / mx.sum())
    v = merge_probs(P, "vote")[0]
    assert torch.allclose(v, torch.tensor([2 / 3, 1 / 3, 0], dtype=torch.float64), atol=1e-8)
    m = torch.tensor([1.3, 1.2, 0.5], dtype=torch.float64) / 3
    s = m ** 2 / (m ** 2).sum()  # temperature 0.5 -> power 2
    assert torch.allclose(merge_probs(P, "sharpen", 0.5)[0], s)
    for rule in ("mean", "gmean", "max", "vote", "sharpen"):
        assert torch.allclose(merge_probs(P, rule).sum(-1), torch.ones(1, dtype=torch.float64))


def test_vote_tie_goes_to_higher_mean_probability():
    p = torch.tensor([[[0.9, 0.1], [0.45, 0.55]]], dtype=torch.float64)  # one vote each; mean favours class 0
    assert int(merge_probs(p, "vote")[0].argmax()) == 0
    p2 = torch.tensor([[[0.51, 0.49], [0.1, 0.9]]], dtype=torch.float64)
    assert int(merge_probs(p2, "vote")[0].argmax()) == 1


# -- the recipe format ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, words", [
    ({"views": ["identity", "spin"]}, ["view 2", "unknown view 'spin'", "hflip"]),
    ({"views": [{"rot90": 4}]}, ["view 1", "rot90", "1, 2 or 3"]),
    ({"views": [{"ten_crop": 1.5}]}, ["ten_crop", "fraction"]),
    ({"views": [{"five_crop": [3]}]}, ["five_crop", "[height, width]"]),
    ({"views": "d8"}, ["unknown TTA preset 'd8'", "d4"]),
    ({"views": []}, ["non-empty list"]),
    ({"views": "d4", "merge": "median"}, ["'merge'", "gmean", "vote"]),
    ({"views": "d4", "merge": "sharpen", "temperature": 0}, ["temperature", "0.01"]),
    ({"views": "d4", "merg": "mean"}, ["unknown key", "merg"]),
    ({"merge": "mean"}, ["no 'views'", "d4"]),
    ({"augstudio_tta": 2, "views": "d4"}, ["version 2", "upgrade"]),
    ({"views": [{"scales": [0]}]}, ["scales", "0.1 .. 10"]),
    ({"views": ["rot90"]}, ["'rot90' needs a value", "{rot90: 1}"]),
])
def test_recipe_errors_name_the_problem(data, words):
    with pytest.raises(RecipeError) as e:
        TTARecipe.from_dict(data, "my_tta.yaml")
    msg = str(e.value)
    assert msg.startswith("my_tta.yaml: ")
    for w in words:
        assert w in msg, msg


def test_recipe_file_round_trip(tmp_path):
    src = {"augstudio_tta": 1, "views": ["identity", "hflip", {"rot90": 1}, {"ten_crop": 0.875},
                                          {"scales": [0.9, 1.1]}], "merge": "sharpen", "temperature": 0.25}
    for name in ("t.yaml", "t.json"):
        r = TTARecipe.from_dict(src)
        r.save(tmp_path / name)
        back = load_tta(str(tmp_path / name))
        assert back.to_dict() == src
        assert back.names == r.names and len(back.names) == 1 + 1 + 1 + 10 + 2
    (tmp_path / "bad.yaml").write_text("views: [identity, {rot90: 7}]\n")
    with pytest.raises(RecipeError, match="bad.yaml: view 2"):
        load_tta(str(tmp_path / "bad.yaml"))
    with pytest.raises(RecipeError, match="neither a TTA preset"):
        load_tta("dd4")


# -- evaluation on real data ---------------------------------------------------------------------------------
def test_d4_tta_on_wafer_maps_not_worse_and_numbers_recomputed(wafer_model):
    ds, _, held = split()
    clf = classifier_from_loaded(wafer_model, "cpu")
    test_ds = Dataset(ds.root, ds.classes, held)
    progress = []
    rep = run_job(evaluate_job(test_ds, clf, "d4", batch_size=50), progress.append)
    assert progress[-1].done == progress[-1].total == len(held)

    # independent recomputation: one-hot batch, torch.rot90 / flip, softmax, mean over the 8 views
    x = torch.stack([onehot(read_image(ds.abspath(it))) for it in held])
    y = torch.tensor([it.label for it in held])
    with torch.no_grad():
        p_plain = torch.softmax(wafer_model.module(x), 1)
        p_tta = torch.stack([torch.softmax(wafer_model.module(v), 1) for v in d4_reference(x)]).mean(0)
    a, b = p_plain.argmax(1), p_tta.argmax(1)
    assert rep.n == len(held) == 45
    assert rep.correct_plain == int((a == y).sum())
    assert rep.correct_tta == int((b == y).sum())
    assert rep.accuracy_tta >= rep.accuracy_plain
    k = len(ds.classes)
    conf = torch.zeros(k, k, dtype=torch.long)
    conf.index_put_((y, b), torch.ones_like(y), accumulate=True)
    assert rep.confusion_tta == conf.tolist()
    fixed = [held[i].path for i in range(len(held)) if a[i] != y[i] and b[i] == y[i]]
    broke = [held[i].path for i in range(len(held)) if a[i] == y[i] and b[i] != y[i]]
    assert rep.fixed == fixed and rep.broke == broke
    for ci, c in enumerate(ds.classes):
        sel = y == ci
        assert rep.per_class[c]["tta"] == pytest.approx(float((b[sel] == ci).float().mean()))
        assert rep.per_class[c]["plain"] == pytest.approx(float((a[sel] == ci).float().mean()))
    for item, pt in zip(rep.items, p_tta):
        assert item["tta_conf"] == pytest.approx(float(pt.max()), abs=1e-5)
    table = rep.table()
    assert f"{rep.accuracy_plain:.1%} | {rep.accuracy_tta:.1%}" in table and "d4 (8 views)" in table
    print(f"\nwafer held-out accuracy: plain {rep.accuracy_plain:.3f}, d4 TTA {rep.accuracy_tta:.3f}, "
          f"fixed {len(rep.fixed)}, broke {len(rep.broke)}")


def test_evaluate_skips_bad_files_and_checks_classes(wafer_model, tmp_path):
    root = tmp_path / "held"
    for cls in ("Center", "Donut"):
        (root / cls).mkdir(parents=True)
        for f in sorted((WAFERS / cls).glob("*.png"))[10:12]:
            shutil.copy(f, root / cls / f.name)
    (root / "Donut" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    clf = classifier_from_loaded(wafer_model, "cpu")
    rep = run_job(evaluate_job(root, clf, {"views": "flips", "merge": "vote"}))
    assert rep.n == 4
    assert [s["path"] for s in rep.skipped] == ["Donut/broken.png"]
    assert set(rep.per_class) == {"Center", "Donut"}
    (root / "Wrong").mkdir()
    shutil.copy(WAFERS / "none" / "none_000.png", root / "Wrong" / "a.png")
    with pytest.raises(DatasetError, match="Wrong.*not classes of the model"):
        run_job(evaluate_job(root, clf, "d4"))
    tok = CancelToken()
    tok.cancel()
    from augstudio.core.base.errors import JobCancelled

    shutil.rmtree(root / "Wrong")
    with pytest.raises(JobCancelled):
        run_job(evaluate_job(root, clf, "d4", cancel=tok))


def test_predict_one_lists_every_view(wafer_model):
    clf = classifier_from_loaded(wafer_model, "cpu")
    pic = read_image(WAFERS / "Scratch" / "scratch_012.png")
    res = predict_one(clf, pic, load_tta("d4"))
    assert [r["view"] for r in res["views"]] == load_tta("d4").names
    with torch.no_grad():
        ps = [torch.softmax(wafer_model.module(v[None]), 1)[0] for v in d4_reference(onehot(pic))]
    for r, p in zip(res["views"], ps):
        assert r["pred"] == clf.classes[int(p.argmax())]
        assert r["confidence"] == pytest.approx(float(p.max()), abs=1e-6)
    assert res["merged"]["confidence"] == pytest.approx(float(torch.stack(ps).mean(0).max()), abs=1e-6)


def test_model_output_shape_is_checked():
    clf = Classifier(torch.nn.Flatten(), ["a", "b"], lambda p: p.pixels.float())
    from augstudio.core.base.errors import ModelError

    with pytest.raises(ModelError, match="expected 1 x 2 class scores"):
        predict_one(clf, Picture(torch.zeros(1, 4, 4, dtype=torch.uint8), "gray"), load_tta("identity"))


# -- the command -------------------------------------------------------------------------------------------
def save_torchscript(lm, path: Path) -> Path:
    meta = {"classes": lm.classes, "input_mode": "onehot", "num_categories": 3, "mean": [0.0], "std": [1.0]}
    torch.jit.save(torch.jit.script(lm.module), str(path), _extra_files={"augstudio.json": json.dumps(meta)})
    return path


def test_cli_tta_report_and_json(wafer_model, tmp_path, capsys):
    from augstudio.cli import main

    ds, _, held = split()
    root = tmp_path / "held"
    for it in held:
        (root / it.class_name).mkdir(parents=True, exist_ok=True)
        shutil.copy(ds.abspath(it), root / it.path)
    model = save_torchscript(wafer_model, tmp_path / "wafer.ts")
    out = tmp_path / "report.json"
    with pytest.warns(UserWarning, match="runs code"):
        code = main(["tta", "--model", str(model), "--allow-code", "--data", str(root), "--tta", "d4",
                     "--device", "cpu", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    rep = json.loads(out.read_text())
    clf = classifier_from_loaded(wafer_model, "cpu")
    direct = run_job(evaluate_job(root, clf, "d4"))
    assert rep["accuracy_tta"] == direct.accuracy_tta and rep["accuracy_plain"] == direct.accuracy_plain
    assert rep["confusion_tta"] == direct.confusion_tta and rep["fixed"] == direct.fixed
    assert "| **all** | 45 |" in text and "Confusion matrix" in text
    assert main(["tta", "--model", str(model), "--allow-code", "--data", str(root), "--tta", "nope"]) == 2
    assert "neither a TTA preset" in capsys.readouterr().err
    assert main(["tta", "--model", str(model), "--data", str(root)]) == 2  # TorchScript refused without opt-in: a bad argument
    assert "allow" in capsys.readouterr().err
