"""Bad input, one case per test: each asserts the message the user sees, and that browsing (scan + header
read) and export skip and report the bad item and carry on."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import build_corpus, tree_hash  # noqa: E402

from augstudio.core.base.errors import DatasetError, ImageError  # noqa: E402
from augstudio.core.base.jobs import run_job  # noqa: E402
from augstudio.core.io import images  # noqa: E402
from augstudio.core.io.dataset import check_job, scan  # noqa: E402
from augstudio.core.workflows.export import export_job  # noqa: E402

RECIPE = {"seed": 1, "steps": [{"op": "hflip", "p": 0.5}]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "data")


def _read_error(path) -> str:
    with pytest.raises(ImageError) as ei:
        images.read_image(path)
    msg = str(ei.value)
    assert str(path) in msg, "the message must name the file"
    return msg


# -- odd but valid files are read -------------------------------------------------------------------
@pytest.mark.parametrize("rel", ["good/gray16.png", "good/float32.tif", "good/cmyk.jpg",
                                 "good/palette_transparent.png", "good/onebit.png", "good/exif_rotated.jpg",
                                 "good/animated.gif", "good/with space.png", "good/ünïcødé_图像.png",
                                 "good/-leading-dash.png", "good/--help.png"])
def test_awkward_but_valid_files_are_read(corpus, rel):
    pic = images.read_image(corpus.root / rel)
    assert pic.kind == corpus.good[rel]
    assert pic.pixels.dtype.__str__() == "torch.uint8"
    w, h, _mode = images.read_header(corpus.root / rel)
    if rel == "good/exif_rotated.jpg":  # orientation 6: the header is the stored size, pixels are turned
        assert pic.size == (w, h)
    else:
        assert pic.size == (h, w)


def test_animated_gif_gives_its_first_frame(corpus):
    pic = images.read_image(corpus.root / "good/animated.gif")
    rgb = np.asarray(images.picture_to_pil(pic).convert("RGB"))
    assert np.all(rgb == 30), "the first frame is a flat 30-grey"


# -- bad files: one test each, asserting the words the user sees -----------------------------------
def test_zero_byte_file(corpus):
    msg = _read_error(corpus.root / "bad/zero.jpg")
    assert "empty file (0 bytes)" in msg and "re-export or remove it" in msg


def test_truncated_jpeg(corpus):
    msg = _read_error(corpus.root / "bad/truncated.jpg")
    assert "truncated" in msg and "re-export or re-download" in msg


def test_truncated_png(corpus):
    msg = _read_error(corpus.root / "bad/truncated.png")
    assert "truncated" in msg and "re-export or re-download" in msg


def test_text_named_jpg(corpus):
    msg = _read_error(corpus.root / "bad/text.jpg")
    assert "not an image" in msg and "holds text" in msg and "proper extension" in msg


def test_html_named_png(corpus):
    msg = _read_error(corpus.root / "bad/page.png")
    assert "HTML" in msg and "failed download" in msg


def test_decompression_bomb_is_refused_before_decoding(corpus):
    msg = _read_error(corpus.root / "bad/bomb.png")
    assert "10,000,000,000 pixels" in msg and "decompression bomb" in msg and "AUGSTUDIO_MAX_PIXELS" in msg
    with pytest.raises(ImageError, match="decompression bomb"):
        images.read_header(corpus.root / "bad/bomb.png")


def test_broken_symlink(corpus):
    msg = _read_error(corpus.root / "links/broken.png")
    assert "broken symbolic link" in msg and "remove the link" in msg


def test_symlink_loop(corpus):
    msg = _read_error(corpus.root / "links/loop_a.png")
    assert "symbolic link loop" in msg


def test_unreadable_file_message(corpus, monkeypatch, tmp_path):
    """Root reads any file whatever its mode, so the permission failure is injected at open()."""
    target = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(target)
    real_open = Image.open

    def deny(fp, *a, **k):
        if Path(fp) == target:
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", deny)
    msg = _read_error(target)
    assert "permission denied" in msg and "chmod +r" in msg
    # the scan flags it too: it judges readability from the file's mode bits, as an ordinary user would
    from augstudio.core.io import dataset

    monkeypatch.setattr(dataset, "_EUID", 54321)  # not root, not the owner, in none of its groups
    monkeypatch.setattr(dataset, "_GROUPS", set())
    ds = scan(tmp_path)
    assert ds.problems == [], "mode 644: others may read"
    target.chmod(0o640)
    ds = scan(tmp_path)
    assert [(p.path, p.reason) for p in ds.problems] == [("locked.png", "file not readable (permission denied)")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode; the injected test above "
                    "covers the message")
def test_unreadable_file_real_permissions(tmp_path):  # pragma: no cover - runs for non-root users
    target = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(target)
    target.chmod(0)
    try:
        assert "permission denied" in _read_error(target)
    finally:
        target.chmod(0o644)


def test_empty_class_folder_and_folder_without_images_are_reported(corpus):
    ds = scan(corpus.root)
    reasons = {p.path: p.reason for p in ds.problems}
    for folder in ("empty_class", "no_images"):
        assert reasons[folder] == "class folder has no images; ignored"
    assert ds.classes == ["bad", "good"], "folders without images are not classes (as in torchvision)"


def test_flat_folder_with_no_images(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    ds = scan(tmp_path)
    assert len(ds) == 0
    with pytest.raises(DatasetError, match="no images found"):
        run_job(export_job(tmp_path, RECIPE, tmp_path.parent / "out_empty"))


def test_missing_source_folder(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        scan(tmp_path / "nope")


# -- browsing and export carry on and count the bad items ----------------------------------------------
def test_scan_lists_links_as_problems_not_items(corpus):
    ds = scan(corpus.root)
    assert sorted(it.path for it in ds.items) == sorted([*corpus.good, *corpus.bad])
    reasons = {p.path: p.reason for p in ds.problems}
    for rel, words in corpus.links.items():
        assert words in reasons[rel]
    assert reasons["bad/zero.jpg"] == "empty file (0 bytes)"


def test_browsing_header_check_skips_and_counts(corpus):
    ds = scan(corpus.root)
    summary = run_job(check_job(ds, decode=True))
    assert summary.checked == corpus.n_items
    assert summary.ok == len(corpus.good)
    assert sorted(p.path for p in summary.bad) == sorted(corpus.bad)
    for p in summary.bad:
        assert corpus.bad[p.path] in p.reason
    # header-only reading (what thumbnails need first) already catches the ones without a valid header
    quick = run_job(check_job(ds))
    assert {p.path for p in quick.bad} == {"bad/zero.jpg", "bad/text.jpg", "bad/page.png", "bad/bomb.png"}


def test_export_skips_reports_and_counts_bad_items(corpus, tmp_path):
    before = tree_hash(corpus.root)
    out = tmp_path / "out"
    summary = run_job(export_job(corpus.root, RECIPE, out, copies=2))
    assert summary.written == 2 * len(corpus.good)
    bad_sources = set(corpus.bad) | set(corpus.links)
    assert summary.bad == len(bad_sources)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["source"] for e in errors} == bad_sources
    for e in errors:
        words = corpus.bad.get(e["source"]) or corpus.links[e["source"]]
        assert words in e["error"]
    assert tree_hash(corpus.root) == before, "the source folder was written"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert "good/-leading-dash__1.png" in written and "good/ünïcødé_图像__0.png" in written
    assert "good/with space__0.png" in written


# -- untrusted model files (augstudio.core.models.load_model) ---------------------------------------------
def _evil_payloads(marker: Path):
    import pickle

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    yield "raw pickle", pickle.dumps({"state_dict": {}, "x": Evil()}, protocol=2)
    for legacy in (False, True):
        buf = __import__("io").BytesIO()
        torch.save({"arch": "resnet18", "state_dict": {"w": torch.zeros(2)}, "x": Evil()}, buf,
                   _use_new_zipfile_serialization=not legacy)
        yield ("legacy torch.save" if legacy else "zip torch.save"), buf.getvalue()
    buf = __import__("io").BytesIO()
    torch.save(torch.nn.Linear(3, 2), buf)  # a whole pickled module: code by reference
    yield "pickled nn.Module", buf.getvalue()


def test_malicious_or_pickled_model_files_never_run(tmp_path):
    from augstudio.core.base.errors import ModelError
    from augstudio.core.models.loading import load_model

    marker = tmp_path / "pwned"
    for name, data in _evil_payloads(marker):
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        path.write_bytes(data)
        with pytest.raises(ModelError) as ei:
            load_model(path)
        assert str(path) in str(ei.value), name
        assert "refused" in str(ei.value) or "not a readable PyTorch checkpoint" in str(ei.value), name
        # the opt-in flag is for TorchScript only: it never unpickles arbitrary objects
        with pytest.raises(ModelError):
            load_model(path, allow_code=True)
        assert not marker.exists(), f"{name}: code ran"


# -- the other long jobs carry on past the same bad files ---------------------------------------------------
def _tiny_classifier(n_classes: int):
    import torch

    from augstudio.core.models import loading as models
    from augstudio.core.workflows.tta import classifier_from_loaded

    g = torch.Generator().manual_seed(0)
    m = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, n_classes))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    lm = models.LoadedModel(m.eval(), (16, 16), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), ["bad", "good"][:n_classes],
                            "tiny", "rgb", 0, "test")
    return classifier_from_loaded(lm, device="cpu")


def test_tta_evaluation_and_distillation_skip_and_report_bad_files(corpus, tmp_path):
    from augstudio.core.workflows.distill import distill_job
    from augstudio.core.workflows.tta import evaluate_job

    before = tree_hash(corpus.root)
    bad = set(corpus.bad)
    clf = _tiny_classifier(2)
    report = run_job(evaluate_job(corpus.root, clf, batch_size=8))
    skipped = {s["path"]: s["error"] for s in report.skipped}
    assert set(skipped) == bad
    for rel, words in corpus.bad.items():
        assert words in skipped[rel]
    summary = run_job(distill_job(corpus.root, clf, tmp_path / "distilled", threshold=0.0, batch_size=8))
    reported = {e["source"]: e["error"] for e in summary.errors}
    assert bad <= set(reported)
    for rel in bad:
        assert corpus.bad[rel] in reported[rel]
    assert tree_hash(corpus.root) == before
