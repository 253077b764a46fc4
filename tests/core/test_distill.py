"""Data distillation: ensembled TTA labels vs single-view labels on held-out wafer maps, the output
layout and labels.csv, resuming, temp files, bad files, and a source folder that is never written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from augstudio.core.base.errors import JobCancelled, OutputError, RecipeError
from augstudio.core.base.jobs import CancelToken, run_job
from augstudio.core.io.dataset import scan
from augstudio.core.io.images import read_image
from augstudio.core.models import loading as models
from augstudio.core.workflows.distill import JOURNAL, distill_job, read_labels
from augstudio.core.workflows.tta import classifier_from_loaded

ROOT = Path(__file__).resolve().parents[2]
WAFERS = ROOT / "resources" / "samples" / "wafers"
N_TRAIN = 7  # per class; the other 8 maps of each class are the unlabelled pool (72 images)


def _onehot(pic) -> torch.Tensor:
    return torch.nn.functional.one_hot(pic.pixels[0].long().clamp(0, 2), 3).permute(2, 0, 1).float()


def _train(epochs: int = 30):
    """A small CNN trained (seeded, no augmentation) on the first N_TRAIN maps of each class."""
    torch.set_num_threads(1)
    ds = scan(WAFERS)
    train = [it for it in ds.items if int(it.path[-7:-4]) < N_TRAIN]
    with torch.random.fork_rng():
        torch.manual_seed(1)
        m = torch.nn.Sequential(
            torch.nn.AvgPool2d(2),  # 64 -> 32 first: 4x cheaper to train
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, len(ds.classes)))
    x = torch.stack([_onehot(read_image(ds.abspath(it))) for it in train])
    y = torch.tensor([it.label for it in train])
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(ep))
        for s in range(0, len(x), 21):
            b = perm[s:s + 21]
            loss = torch.nn.functional.cross_entropy(m(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    return models.LoadedModel(m, None, (0.0,), (1.0,), list(ds.classes), "wafer-cnn", "onehot", 3, "test")


@pytest.fixture(scope="module")
def wafer_model():
    return _train()


@pytest.fixture
def unlabeled(tmp_path):
    """The held-out maps in one flat folder under anonymous names; the true labels kept aside."""
    ds = scan(WAFERS)
    root = tmp_path / "unlabeled"
    root.mkdir()
    truth = {}
    for it in ds.items:
        if int(it.path[-7:-4]) >= N_TRAIN:
            name = hashlib.sha1(it.path.encode()).hexdigest()[:10] + ".png"
            shutil.copy(ds.abspath(it), root / name)
            truth[name] = it.class_name
    return root, truth


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_distilled_labels_beat_single_view_at_same_coverage(wafer_model, unlabeled, tmp_path):
    src, truth = unlabeled
    clf = classifier_from_loaded(wafer_model, "cpu")
    out = tmp_path / "distilled"
    s = run_job(distill_job(src, clf, out, tta="d4", threshold=0.9))
    rows = read_labels(out)
    assert len(rows) == len(truth) == 72 and s.labelled == 72
    kept = [r for r in rows if r["kept"]]
    assert s.kept == len(kept) and 0 < len(kept) < len(rows)
    assert all(r["confidence"] >= 0.9 for r in kept) and all(r["confidence"] < 0.9 for r in rows if not r["kept"])
    acc_tta = sum(truth[r["source"]] == r["label"] for r in kept) / len(kept)

    # single-view labels at the same coverage: the same number of images, most confident first
    x = torch.stack([_onehot(read_image(src / r["source"])) for r in rows])
    with torch.no_grad():
        p = torch.softmax(wafer_model.module(x), 1)
    conf, pred = p.max(1)
    top = conf.argsort(descending=True, stable=True)[:len(kept)]
    acc_single = sum(truth[rows[i]["source"]] == clf.classes[int(pred[i])] for i in top.tolist()) / len(kept)
    acc_all_single = sum(truth[r["source"]] == clf.classes[int(k)] for r, k in zip(rows, pred)) / len(rows)
    acc_all_tta = sum(truth[r["source"]] == r["label"] for r in rows) / len(rows)
    print(f"\ndistill d4 @0.9: coverage {len(kept)}/{len(rows)} = {s.coverage:.3f}, accuracy {acc_tta:.3f}; "
          f"single view at same coverage {acc_single:.3f}; all images: tta {acc_all_tta:.3f} single {acc_all_single:.3f}")
    assert acc_tta >= acc_single

    # the kept images are byte copies filed under the predicted class
    for r in kept:
        assert r["output"] == f"{r['label']}/{r['source']}"
        assert (out / r["output"]).read_bytes() == (src / r["source"]).read_bytes()
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert on_disk == sorted(r["output"] for r in kept)
    assert sum(s.per_class.values()) == len(kept)
    # soft labels are distributions whose max is the confidence
    for r in rows:
        assert sum(r["soft"].values()) == pytest.approx(1.0, abs=1e-4)
        assert max(r["soft"].values()) == pytest.approx(r["confidence"], abs=1e-6)
        assert max(r["soft"], key=r["soft"].get) == r["label"]


def test_resume_bad_files_and_source_untouched(wafer_model, unlabeled, tmp_path):
    src, truth = unlabeled
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    (src / "empty.jpg").write_bytes(b"")
    before = tree_digest(src)
    clf = classifier_from_loaded(wafer_model, "cpu")

    # one full run, for reference
    ref = tmp_path / "ref"
    s_ref = run_job(distill_job(src, clf, ref, tta="flips", threshold=0.8, batch_size=12))
    assert s_ref.bad == 2 and {e["source"] for e in s_ref.errors} == {"broken.png", "empty.jpg"}
    errs = [json.loads(line) for line in (ref / "errors.jsonl").read_text().splitlines()]
    assert [e["source"] for e in errs] == ["broken.png", "empty.jpg"]

    # a run cancelled part-way, plus the debris of a kill: a temp file and a half-written journal line
    out = tmp_path / "out"
    tok = CancelToken()
    job = distill_job(src, clf, out, tta="flips", threshold=0.8, batch_size=12, cancel=tok)
    seen = 0
    with pytest.raises(JobCancelled):
        for p in job:
            seen = p.done
            if p.done >= 20:
                tok.cancel()
    assert 20 <= seen < 74
    (out / "Center").mkdir(exist_ok=True)
    (out / "Center" / ".x.png.999.tmp").write_bytes(b"half")
    with open(out / JOURNAL, "a") as f:
        f.write('{"source": "abc')
    s = run_job(distill_job(src, clf, out, tta="flips", threshold=0.8, batch_size=12))
    assert s.resumed >= 20
    got, want = read_labels(out), read_labels(ref)
    assert [(r["source"], r["kept"], r["label"], r["output"]) for r in got] == \
        [(r["source"], r["kept"], r["label"], r["output"]) for r in want]
    assert [r["confidence"] for r in got] == pytest.approx([r["confidence"] for r in want], abs=1e-5)
    assert not list(out.rglob("*.tmp"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == sorted(p.relative_to(ref) for p in ref.rglob("*.png"))

    # a finished run re-run does no work and rewrites no image
    images_before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    s2 = run_job(distill_job(src, clf, out, tta="flips", threshold=0.8, batch_size=12))
    assert s2.resumed == 72 and s2.kept == s.kept and s2.bad == 2  # the two bad files are tried again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == images_before
    # a bad file that was fixed is labelled on the next run
    shutil.copy(src / sorted(truth)[0], src / "broken.png")
    s3 = run_job(distill_job(src, clf, out, tta="flips", threshold=0.8, batch_size=12))
    assert s3.bad == 1 and s3.labelled == 73 and "broken.png" in {r["source"] for r in read_labels(out)}
    shutil.copy(src / "empty.jpg", src / "broken.png")  # back to a bad file (for the digest below)
    before["broken.png"] = tree_digest(src)["broken.png"]

    # different settings into the same folder are refused; so are outputs inside the source
    with pytest.raises(OutputError, match="other settings"):
        run_job(distill_job(src, clf, out, tta="flips", threshold=0.5))
    with pytest.raises(OutputError, match="inside the unlabelled folder"):
        run_job(distill_job(src, clf, src / "out", tta="flips"))
    with pytest.raises(RecipeError, match="threshold"):
        run_job(distill_job(src, clf, tmp_path / "x", threshold=1.5))
    assert tree_digest(src) == before


def test_cli_distill(wafer_model, unlabeled, tmp_path, capsys):
    from augstudio.cli import main

    src, truth = unlabeled
    meta = {"classes": wafer_model.classes, "input_mode": "onehot", "num_categories": 3, "mean": [0.0], "std": [1.0]}
    model = tmp_path / "wafer.ts"
    torch.jit.save(torch.jit.script(wafer_model.module), str(model), _extra_files={"augstudio.json": json.dumps(meta)})
    out = tmp_path / "cli_out"
    with pytest.warns(UserWarning, match="runs code"):
        code = main(["distill", "--model", str(model), "--allow-code", "--unlabeled", str(src), "--out", str(out),
                     "--tta", "d4", "--threshold", "0.9", "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    rows = read_labels(out)
    kept = sum(r["kept"] for r in rows)
    assert f"{kept} of 72 images kept" in text
    assert "model: wafer.ts (9 classes, cpu)" in text
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(r["output"] for r in rows if r["kept"])
    assert os.path.exists(out / "distill.json")
    assert main(["distill", "--model", str(model), "--allow-code", "--unlabeled", str(src), "--out",
                 str(src / "inside")]) == 2
    assert "never writes into the source" in capsys.readouterr().err
    assert main(["distill", "--model", "probe", "--unlabeled", str(src), "--out", str(tmp_path / "p")]) == 2  # probe without labelled data: a bad argument
    assert "--probe-data" in capsys.readouterr().err
