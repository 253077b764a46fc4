"""dataset.py: ImageFolder layout equal to torchvision's, flat folders, hidden files, symlink loops."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from augstudio.core.base.errors import DatasetError
from augstudio.core.base.jobs import run_job
from augstudio.core.io.dataset import check_job, require_images, scan


def _torchvision_view(root):
    from torchvision.datasets import ImageFolder

    tv = ImageFolder(str(root), loader=lambda p: p)
    samples = [(os.path.relpath(p, root).replace(os.sep, "/"), t) for p, t in tv.samples]
    return tv.classes, samples


def _ours(root):
    ds = scan(root)
    return ds.classes, [(it.path, it.label) for it in ds.items]


def test_same_classes_and_samples_as_torchvision_on_the_bundled_dataset(samples_root):
    for sub in ("wafers", "shapes"):
        assert _ours(samples_root / sub) == _torchvision_view(samples_root / sub)


def test_same_as_torchvision_with_nested_folders_and_odd_names(tmp_path, astronaut):
    a = np.asarray(astronaut)[::32, ::32]
    files = ["b/z.png", "b/a/1.png", "b/a b/2.JPG", "b/a-c/3.jpeg", "b/A/4.png", "a/x.PNG", "a/sub/deep/y.bmp",
             "c c/ü.png", "c c/x.txt", "a2/q.tif"]
    for rel in files:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".txt":
            p.write_text("not an image")
        else:
            Image.fromarray(a).save(p, format={"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}.get(
                p.suffix[1:].lower(), p.suffix[1:].upper()))
    ours = _ours(tmp_path)
    assert ours == _torchvision_view(tmp_path)
    assert len(ours[1]) == 9


def test_flat_folder(tmp_path, astronaut):
    for name in ("b.png", "a.jpg"):
        astronaut.resize((16, 16)).save(tmp_path / name)
    ds = scan(tmp_path)
    assert ds.layout == "flat" and ds.classes == []
    assert [(it.path, it.label, it.class_name) for it in ds.items] == [("a.jpg", -1, None), ("b.png", -1, None)]


def test_loose_files_next_to_class_folders_are_reported(tmp_path, astronaut):
    (tmp_path / "cls").mkdir()
    astronaut.resize((16, 16)).save(tmp_path / "cls" / "a.png")
    astronaut.resize((16, 16)).save(tmp_path / "loose.png")
    ds = scan(tmp_path)
    assert [it.path for it in ds.items] == ["cls/a.png"]
    assert [(p.path, p.reason) for p in ds.problems] == [
        ("loose.png", "image outside any class folder; ignored in ImageFolder layout")]


def test_hidden_files_and_folders_are_skipped(tmp_path, astronaut):
    (tmp_path / "cls" / ".thumbs").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for rel in ("cls/a.png", "cls/.hidden.png", "cls/.thumbs/t.png", ".git/x.png", "cls/._a.png"):
        astronaut.resize((8, 8)).save(tmp_path / rel)
    ds = scan(tmp_path)
    assert [it.path for it in ds.items] == ["cls/a.png"] and ds.classes == ["cls"]


def test_symlink_loops_are_survived(tmp_path, astronaut):
    (tmp_path / "cls" / "sub").mkdir(parents=True)
    astronaut.resize((8, 8)).save(tmp_path / "cls" / "sub" / "a.png")
    os.symlink(tmp_path / "cls", tmp_path / "cls" / "sub" / "back")  # folder loop
    os.symlink(tmp_path, tmp_path / "cls" / "root")  # loop to the root
    os.symlink("self.png", tmp_path / "cls" / "self.png")  # file loop
    ds = scan(tmp_path)
    assert [it.path for it in ds.items] == ["cls/sub/a.png"]
    reasons = {p.path: p.reason for p in ds.problems}
    assert "symbolic link loop" in reasons["cls/sub/back"]
    assert "symbolic link loop" in reasons["cls/root"]
    assert "symbolic link loop" in reasons["cls/self.png"]


def test_symlinked_class_folder_is_followed_once(tmp_path, astronaut):
    outside = tmp_path / "outside"
    outside.mkdir()
    astronaut.resize((8, 8)).save(outside / "o.png")
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    astronaut.resize((8, 8)).save(root / "real" / "r.png")
    os.symlink(outside, root / "linked")
    ds = scan(root)
    assert [it.path for it in ds.items] == ["linked/o.png", "real/r.png"]


def test_errors_for_missing_file_and_empty(tmp_path):
    f = tmp_path / "f.png"
    f.write_bytes(b"x")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        scan(f)
    with pytest.raises(DatasetError, match="no images found"):
        require_images(scan(_empty(tmp_path)))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_check_job_is_cancellable_and_counts(tmp_path, samples_root):
    from augstudio.core.base.errors import JobCancelled
    from augstudio.core.base.jobs import CancelToken

    root = tmp_path / "w"
    shutil.copytree(samples_root / "wafers" / "Donut", root / "Donut")
    (root / "Donut" / "bad.png").write_bytes(b"\x89PNG garbage")
    ds = scan(root)
    summary = run_job(check_job(ds))
    assert summary.checked == len(ds) and summary.ok == len(ds) - 1
    assert [p.path for p in summary.bad] == ["Donut/bad.png"]
    token = CancelToken()
    seen = []

    def stop_after_two(p):
        seen.append(p.done)
        if p.done == 2:
            token.cancel()

    with pytest.raises(JobCancelled, match="checked 2 of"):
        run_job(check_job(ds, cancel=token), stop_after_two)
    assert seen == [1, 2]
