"""Export with a batch stage: mixed images + labels.csv + manifest, resumable, bad files skipped; read back
with SoftLabelFolder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import augstudio
from augstudio.core.base.errors import DatasetError
from augstudio.core.base.jobs import run_job
from augstudio.core.engine.recipe import Recipe
from augstudio.core.workflows.export import export_job


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def mixed_export(photo_folder, tmp_path):
    (photo_folder / "thing" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    before = _tree(photo_folder)
    recipe = Recipe.from_dict({"seed": 3, "steps": [],
                               "batch": [{"op": "mixup"}, {"op": "label_smoothing", "eps": 0.1}]})
    out = tmp_path / "out"
    summary = run_job(export_job(photo_folder, recipe, out, copies=2))
    assert _tree(photo_folder) == before  # never writes into the source
    return photo_folder, out, summary, recipe


def test_export_writes_mixed_images_and_soft_labels(mixed_export):
    src, out, summary, _ = mixed_export
    assert summary.written == 8 and "8 images written" in summary.line()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["source"] for e in errors] == ["thing/broken.png"]
    rows = list(csv.reader((out / "labels.csv").open()))
    assert rows[0] == ["file", "cat", "thing"]
    assert len(rows) == 9
    # the class-folder layout of a plain export: <class>/<stem>__<copy>.png
    assert all(name.split("/")[0] in ("cat", "thing") and "__" in name for name, *_ in rows[1:])
    manifest = {r["output"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    classes = ["cat", "thing"]
    for name, *vals in rows[1:]:
        vec = np.array([float(v) for v in vals])
        rec = manifest[name]
        lam = rec["batch"][0]["params"]["lam"]
        ya = np.eye(2)[classes.index(rec["source"].split("/")[0])]
        yb = np.eye(2)[classes.index(rec["partner"].split("/")[0])]
        np.testing.assert_allclose(vec, 0.9 * (lam * ya + (1 - lam) * yb) + 0.05, atol=2e-6)
        assert rec["source"] != rec["partner"]
        # pixels: lam * a + (1 - lam) * b (no per-image steps)
        a = np.asarray(Image.open(src / rec["source"]).convert("RGB"), dtype=np.float64)
        b = np.asarray(Image.open(src / rec["partner"]).convert("RGB"), dtype=np.float64)
        got = np.asarray(Image.open(out / name), dtype=np.float64)
        assert np.abs(got - (lam * a + (1 - lam) * b)).max() <= 1.0


def test_soft_label_folder_reads_it_back(mixed_export):
    _, out, _, _ = mixed_export
    ds = augstudio.SoftLabelFolder(out)
    assert len(ds) == 8 and ds.classes == ["cat", "thing"]
    img, y = ds[0]
    assert img.dtype == torch.float32 and img.shape == (3, 64, 96) and 0 <= img.min() and img.max() <= 1
    assert y.shape == (2,) and y.sum().item() == pytest.approx(1.0, abs=1e-5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 64, 96) and yb.shape == (4, 2)


def test_resume_and_rerun_are_byte_identical(mixed_export):
    src, out, _, recipe = mixed_export
    first = _tree(out)
    again = run_job(export_job(src, recipe, out, copies=2))
    assert again.written == 0 and again.skipped_existing == 8
    victim = sorted(out.rglob("*__*.png"))[3]
    victim.unlink()
    (out / "labels.csv").unlink()
    resumed = run_job(export_job(src, recipe, out, copies=2))
    assert resumed.written == 2  # resume is per source, as in a plain export: both copies of that source
    assert _tree(out) == first


def test_puzzlemix_export_records_the_mask(photo_folder, tmp_path):
    recipe = Recipe.from_dict({"seed": 0, "steps": [], "batch": [{"op": "puzzlemix", "block_num": 4}]})
    out = tmp_path / "pm"
    summary = run_job(export_job(photo_folder, recipe, out))
    assert summary.written == 4
    rec = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    params = rec["batch"][0]["params"]
    mask = np.array(params["block_mask"])
    assert mask.shape == (4, 4) and set(np.unique(mask)) <= {0.0, 0.5, 1.0}
    assert params["ratio"] == pytest.approx(mask.mean(), abs=1e-6)
    assert params["saliency"] == "image-gradient"
    ya = np.eye(2)[["cat", "thing"].index(rec["source"].split("/")[0])]
    yb = np.eye(2)[["cat", "thing"].index(rec["partner"].split("/")[0])]
    np.testing.assert_allclose(rec["label"], params["ratio"] * ya + (1 - params["ratio"]) * yb, atol=2e-6)


def test_categorical_images_are_reported_not_mixed(wafer_folder, tmp_path):
    recipe = Recipe.from_dict({"steps": [], "batch": [{"op": "mixup"}]})
    summary = run_job(export_job(wafer_folder, recipe, tmp_path / "w"))
    assert summary.written == 0 and summary.bad > 0
    assert "categorical" in summary.errors[0]["error"]


def test_soft_label_folder_messages(tmp_path):
    with pytest.raises(DatasetError, match="labels.csv: not found"):
        augstudio.SoftLabelFolder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,a,b\nx.png,0.5\n")
    with pytest.raises(DatasetError, match="line 2 has 1 label values"):
        augstudio.SoftLabelFolder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,a\n../x.png,1\n")
    with pytest.raises(DatasetError, match="unsafe file name"):
        augstudio.SoftLabelFolder(tmp_path)
