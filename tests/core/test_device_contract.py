"""The device contract, proven without a GPU: every tensor augstudio makes states its device.

While ``torch.set_default_device("meta")`` is in force and the inputs stay on the CPU, a tensor made
without an explicit ``device=`` lands on ``meta`` and the first operation that meets a CPU tensor fails
loudly, exactly as a CPU constant meeting a CUDA batch would on a GPU machine. Every registered op (per
image and batched), every batch op (with and without a model), saliency, PuzzleMix and TTA run under it;
the registries are iterated, so a new op is covered without anyone remembering it.
"""

from __future__ import annotations

import contextlib
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from augstudio.core.engine.recipe import Recipe
from augstudio.core.io.images import as_picture
from augstudio.core.ops.registry import all_batch_ops, all_ops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_property import random_step  # noqa: E402

# style methods need weight files for adain / fast; the stylize op's weight-free methods are covered
OP_VALUES = {"stylize": [{"method": "randconv"}, {"method": "stats"}],
             "normalize": [{"mean": [0.5], "std": [0.25]}]}


@contextlib.contextmanager
def meta_default():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    pics = [data.astronaut(), data.coffee(), data.chelsea()]
    return torch.stack([torch.from_numpy(np.asarray(Image.fromarray(a).resize((40, 40)))).permute(2, 0, 1)
                        for a in pics])


@pytest.fixture(scope="module")
def wafers(samples_root):
    paths = sorted((samples_root / "wafers").glob("*/*.png"))[::40][:3]
    return torch.stack([as_picture(Image.open(p))[0].pixels for p in paths])


def test_the_harness_catches_a_tensor_made_without_a_device(photos):
    """Control: code that makes a CPU-meant constant without ``device=`` fails under the harness."""
    def careless(x):
        return x + torch.tensor([1], dtype=x.dtype).view(1, 1, 1)

    careless(photos[0])  # fine on a CPU-only run
    with meta_default(), pytest.raises((RuntimeError, NotImplementedError)):
        careless(photos[0])


def _configs(name):
    return OP_VALUES.get(name, [{}])


@pytest.mark.parametrize("name", sorted(all_ops()))
def test_every_op_makes_its_tensors_on_the_device_of_its_input(name, photos, wafers):
    ops = all_ops()
    cls = ops[name]
    rng = random.Random(0)
    # (containers draw nested steps from every family, so they run on photos only)
    categorical = cls.categorical != "refuse" and cls.family != "container"
    kinds = [("rgb", photos)] + ([("categorical", wafers)] if categorical else [])
    for values in _configs(name):
        steps = [{"op": name, **values}]
        if cls.family == "container":  # nested steps from every family
            steps = [{"op": name, "steps": [random_step(rng, 1) for _ in range(3)]}]
        recipe = Recipe.from_dict({"seed": 1, "steps": steps})
        for kind, x in kinds:
            items = [f"i{i}" for i in range(len(x))]
            ref, _ = recipe.apply_batch(x, items, kind=kind)
            with meta_default():
                out, _ = recipe.apply_batch(x, items, kind=kind)  # batched
                one = recipe.apply(x[0], item=items[0], categorical=kind == "categorical")  # per image
            assert out.device.type == "cpu" and torch.equal(out, ref)
            assert torch.equal(one, ref[0])


@pytest.mark.parametrize("name", sorted(all_batch_ops()))
@pytest.mark.parametrize("with_model", [False, True])
def test_every_batch_op_makes_its_tensors_on_the_device_of_its_input(name, with_model, photos):
    from augstudio.core.models.networks import ProbeNet

    model = ProbeNet(3, width=4, depth=2, seed=0).eval() if with_model else None
    step = {"op": name}
    if name == "one_of":  # a switch between the mixing ops, as timm's Mixup(switch_prob) does
        step["steps"] = [{"op": "mixup"}, {"op": "cutmix"}, {"op": "puzzlemix"}]
    recipe = Recipe.from_dict({"seed": 2, "steps": [], "batch": [step]})
    x = photos.float() / 255
    y = torch.tensor([0, 1, 2])
    stage = recipe.batch_transform(3, model=model)
    ref_x, ref_y = stage(x, y, key=0)
    with meta_default():
        out_x, out_y = stage(x, y, key=0)
    assert out_x.device.type == "cpu" and torch.allclose(out_x, ref_x) and torch.allclose(out_y, ref_y)


def test_saliency_and_puzzlemix_pair_keep_to_the_device_of_their_inputs(photos):
    from augstudio.core.engine.mixing import mix_pair
    from augstudio.core.io.images import Picture
    from augstudio.core.methods.saliency import compute_saliency
    from augstudio.core.models.loading import LoadedModel
    from augstudio.core.models.networks import ProbeNet

    net = ProbeNet(3, width=4, depth=2, seed=0).eval()
    lm = LoadedModel(module=net, input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, classes=["a", "b", "c"],
                     name="probe")
    pics = [Picture(photos[i], "rgb") for i in range(2)]
    ref = compute_saliency(lm, pics, method="smoothgrad", samples=2)
    xa, xb = photos[0].float() / 255, photos[1].float() / 255
    ref_pm = mix_pair(xa, xb, "puzzlemix", lam=0.5, seed=0, model=lm, block_num=4)
    with meta_default():
        res = compute_saliency(lm, pics, method="smoothgrad", samples=2)
        pm = mix_pair(xa, xb, "puzzlemix", lam=0.5, seed=0, model=lm, block_num=4)
    for a, b in zip(res.maps, ref.maps):
        assert a.device.type == "cpu" and torch.allclose(a, b)
    assert torch.equal(pm["mask"], ref_pm["mask"]) and torch.allclose(pm["mixed"], ref_pm["mixed"])


def test_tta_keeps_to_the_device_of_its_inputs(photos):
    from augstudio.core.io.images import Picture
    from augstudio.core.models.loading import LoadedModel
    from augstudio.core.models.networks import ProbeNet
    from augstudio.core.workflows.tta import classifier_from_loaded, predict_views
    from augstudio.core.workflows.tta_views import load_tta

    net = ProbeNet(3, width=4, depth=2, seed=0).eval()
    clf = classifier_from_loaded(LoadedModel(module=net, input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3,
                                             classes=["a", "b", "c"], name="probe"), "cpu")
    pics = [Picture(photos[i], "rgb") for i in range(3)]
    tta = load_tta("d4")
    ref = predict_views(clf, pics, tta)
    with meta_default():
        got = predict_views(clf, pics, tta)
    assert torch.allclose(torch.as_tensor(got[0]), torch.as_tensor(ref[0]))


@pytest.mark.parametrize("method", ["texture", "transfer", "randconv", "stats"])
def test_style_methods_keep_to_the_device_they_are_given(method, photos):
    """Texture synthesis and transfer (random multi-scale features: no weights needed) and the weight-free
    randomisers, through the one style dispatcher, with nothing made on the default device."""
    from augstudio.core.base.jobs import run_job
    from augstudio.core.methods.style.dispatch import StyleSettings, style_job

    settings = StyleSettings(iterations=2, size=(24, 24), max_size=32, preview_every=1, seed=3)
    content, style = photos[0], photos[1]
    ref = run_job(style_job(method, settings, content, [style], device="cpu"))
    with meta_default():
        got = run_job(style_job(method, settings, content, [style], device="cpu"))
    a, b = torch.as_tensor(np.asarray(ref.image)), torch.as_tensor(np.asarray(got.image))
    assert torch.equal(a, b)


def _job_cases(tmp_path, samples_root):
    """Every long job, small: (name, thunk) pairs run once normally and once under the harness."""
    import shutil

    from augstudio.core.base.jobs import run_job
    from augstudio.core.workflows.evaluate import evaluate_job
    from augstudio.core.workflows.export import export_job
    from augstudio.core.workflows.probe import train_probe_job

    data = tmp_path / "wafers"
    for cls in ("Center", "Donut"):
        shutil.copytree(samples_root / "wafers" / cls, data / cls)
    recipe = {"seed": 1, "steps": [{"op": "rot90"}, {"op": "rotate", "degrees": 20, "interpolation": "nearest"}]}
    counter = iter(range(100))
    from augstudio.core.models.loading import LoadedModel
    from augstudio.core.models.networks import ProbeNet
    from augstudio.core.workflows.distill import distill_job
    from augstudio.core.workflows.tta import classifier_from_loaded
    from augstudio.core.workflows.tta import evaluate_job as tta_job

    clf = classifier_from_loaded(LoadedModel(module=ProbeNet(2, width=4, depth=2, seed=0).eval(), input_size=(32, 32),
                                             mean=(0.5,) * 3, std=(0.25,) * 3, classes=["Center", "Donut"],
                                             name="probe"), "cpu")
    return {
        "tta": lambda: (lambda r: (r.correct_plain, r.correct_tta, r.confusion_tta))(run_job(tta_job(data, clf, "d4"))),
        "distill": lambda: run_job(distill_job(data / "Donut", clf, tmp_path / f"dist{next(counter)}", "flips",
                                               threshold=0.0)).kept,
        "export": lambda: run_job(export_job(data, recipe, tmp_path / f"out{next(counter)}", copies=1)).written,
        "evaluate": lambda: run_job(evaluate_job(data, [recipe], epochs=1, seeds=[0], device="cpu"))["arms"][1][
            "runs"][0]["probs"],
        "probe": lambda: run_job(train_probe_job(data, device="cpu", epochs=1, size=16, width=4, reuse=False,
                                                 out=tmp_path / f"probe{next(counter)}.pt")).val_accuracy,
    }


@pytest.mark.parametrize("job", ["export", "evaluate", "probe", "tta", "distill"])
def test_jobs_keep_to_their_device(job, tmp_path, samples_root, monkeypatch):
    monkeypatch.setenv("AUGSTUDIO_SETTINGS_DIR", str(tmp_path / "settings"))
    run = _job_cases(tmp_path, samples_root)[job]
    ref = run()
    with meta_default():
        got = run()
    assert got == ref


# -- one regression test per bug found by reading (each failed before its fix) ------------------------------
def test_regression_preprocess_normalises_on_the_batch_device(photos):
    """models.preprocess made mean/std on the CPU: a batch on the model's GPU failed at ``batch - mean``."""
    from augstudio.core.io.images import Picture
    from augstudio.core.models.loading import LoadedModel, preprocess
    from augstudio.core.models.networks import ProbeNet

    lm = LoadedModel(module=ProbeNet(3, width=4, depth=2, seed=0).eval(), input_size=(24, 24), mean=(0.5,) * 3,
                     std=(0.25,) * 3, classes=["a", "b", "c"], name="probe")
    ref = preprocess(photos.float() / 255, lm)
    with meta_default():
        got = preprocess(photos.float() / 255, lm)
        cat = preprocess([Picture(photos[0, :1], "categorical", palette=[0, 0, 0, 255, 0, 0] * 128)], lm)
    assert torch.equal(got, ref) and cat.device.type == "cpu"


def test_regression_stylize_never_picks_cuda_behind_the_callers_back(photos, monkeypatch):
    """stylize used CUDA whenever it existed, ignoring --device; in a forked DataLoader worker that touched
    CUDA it failed. Now it runs where its input is: with CUDA 'available' it still never asks for it."""
    recipe = Recipe.from_dict({"seed": 0, "steps": [{"op": "stylize", "method": "randconv"}]})
    ref = recipe.apply(photos[0], item="a")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "_lazy_init", lambda: (_ for _ in ()).throw(AssertionError("CUDA touched")))
    assert torch.equal(recipe.apply(photos[0], item="a"), ref)


def test_regression_puzzlemix_takes_a_half_precision_model(photos):
    """puzzlemix forced float32 inputs: a .half() (or bfloat16) model crashed in its first layer."""
    from augstudio.core.methods.puzzlemix import saliency
    from augstudio.core.models.networks import ProbeNet

    x = photos.float() / 255
    for dtype in (torch.float16, torch.bfloat16):
        net = ProbeNet(3, width=4, depth=2, seed=0).eval().to(dtype)
        s = saliency(net, x, torch.tensor([0, 1, 2]))
        assert s.dtype == torch.float32 and s.shape == (3, 40, 40) and torch.isfinite(s).all()


@pytest.mark.parametrize("box_mode", ["corners", "pixels"])
def test_targets_keep_to_the_device_of_the_image(photos, box_mode):
    """Masks, boxes and keypoints through geometry, erasing, containers and a policy, per image and batched:
    every tensor the targets engine makes states its device."""
    recipe = Recipe.from_dict({"seed": 2, "steps": [
        {"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-30, 30]}, {"op": "trivial_augment"},
        {"op": "one_of", "steps": [{"op": "scale"}, {"op": "translate"}]}, {"op": "cutout", "holes": 2},
        {"op": "random_resized_crop", "size": [32, 32]}], "targets": {"drop_erased_boxes": True, "min_visibility": 0.2,
                                                        "box_mode": box_mode}})
    mask = torch.zeros(40, 40, dtype=torch.int64)
    mask[5:25, 8:30] = 3
    targets = {"mask": mask, "boxes": [[8, 5, 30, 25]], "box_labels": [3], "keypoints": [[10, 10], [35, 35]]}
    items = [f"i{i}" for i in range(len(photos))]
    ref, ref_t, _ = recipe.apply_batch(photos, items, targets=[targets] * len(photos))
    with meta_default():
        out, got, _ = recipe.apply_batch(photos, items, targets=[targets] * len(photos))
        _, one = recipe.apply(photos[0], item=items[0], targets=targets)
    assert torch.equal(out, ref)
    for a, b in zip(ref_t, got):
        assert all(b[k].device.type == "cpu" and torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(one[k], ref_t[0][k]) for k in one)
