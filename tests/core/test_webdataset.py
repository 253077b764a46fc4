"""--format webdataset: tar shards whose every sample holds the same image bytes as a folder export, read
back with the ``webdataset`` package in a training loop; deterministic shards; resume by shard."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import leftovers  # noqa: E402

from augstudio.cli import main  # noqa: E402
from augstudio.core.base.errors import JobCancelled, RecipeError  # noqa: E402
from augstudio.core.base.jobs import CancelToken, run_job  # noqa: E402
from augstudio.core.io.webdataset import read_shard, sample_key, shard_bytes, shard_urls  # noqa: E402
from augstudio.core.workflows.export import export_job  # noqa: E402

RECIPE = {"seed": 7, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-20, 20]}]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture
def small(tmp_path, samples_root) -> Path:
    """12 shapes and 6 wafer maps (palette PNGs) in three classes, plus one broken file."""
    root = tmp_path / "small"
    for cls, n in (("circle", 6), ("square", 6)):
        (root / cls).mkdir(parents=True)
        for p in sorted((samples_root / "shapes" / cls).iterdir())[:n]:
            shutil.copy(p, root / cls / p.name)
    (root / "wafer").mkdir()
    for p in sorted((samples_root / "wafers" / "Donut").iterdir())[:6]:
        shutil.copy(p, root / "wafer" / p.name)
    (root / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shards_hold_the_folder_exports_bytes_and_read_back_with_webdataset(small, tmp_path):
    wds = pytest.importorskip("webdataset")
    folder = run_job(export_job(small, RECIPE, tmp_path / "folder", copies=2))
    s = run_job(export_job(small, RECIPE, tmp_path / "wds", copies=2, fmt="webdataset", shard_size=7))
    assert s.written == folder.written == 36 and s.bad == folder.bad == 1
    assert s.shards == 7 and "shard-{000000..000006}.tar" in s.line()  # 19 items, 3 per shard (7 // 2 copies)
    out = tmp_path / "wds"
    assert sorted(p.name for p in out.glob("*.tar")) == [f"shard-{k:06d}.tar" for k in range(7)]
    assert not [p for p in out.rglob("*") if p.is_dir()], "no loose image folders"

    fold = tmp_path / "folder"
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    seen = []
    for sample in wds.WebDataset(str(out / shard_urls(s.shards)), shardshuffle=False):
        rec = json.loads(sample["json"])
        ext = rec["output"].rsplit(".", 1)[1]
        assert sample[ext] == (fold / rec["output"]).read_bytes(), rec["output"]
        assert sample["__key__"] == rec["key"] and rec["shard"] in sample["__url__"]
        assert int(sample["cls"]) == ["circle", "square", "wafer"].index(rec["class"])
        seen.append(rec)
    assert seen == manifest, "each sample's json is its manifest line, in manifest order"
    assert [{k: v for k, v in r.items() if k not in ("shard", "key")} for r in manifest] == [
        json.loads(line) for line in (fold / "manifest.jsonl").read_text().splitlines()]
    assert (out / "errors.jsonl").read_bytes() == (fold / "errors.jsonl").read_bytes()
    assert [r["key"] for r in manifest] == sorted(r["key"] for r in manifest)
    # wafer maps stay palette PNGs inside the shards
    assert any(r["output"].startswith("wafer/") and r["output"].endswith(".png") for r in manifest)
    assert leftovers(out) == []


def test_shard_headers_are_fixed_and_the_bytes_do_not_depend_on_order_or_workers(small, tmp_path):
    a = run_job(export_job(small, RECIPE, tmp_path / "a", copies=1, fmt="webdataset", shard_size=5, workers=1))
    run_job(export_job(small, RECIPE, tmp_path / "b", copies=1, fmt="webdataset", shard_size=5, workers=2))
    assert files_of(tmp_path / "a").keys() == files_of(tmp_path / "b").keys()
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) for i in infos} == {(0, 0, 0, "", "", 0o644)}
    assert a.shards == 4
    samples = [(sample_key(3), {"png": b"x", "json": b"{}"}), (sample_key(1), {"cls": b"0", "png": b"y"})]
    assert shard_bytes(samples) == shard_bytes(samples[::-1])
    back = read_shard(io.BytesIO(shard_bytes(samples)))
    assert back == [(sample_key(1), {"cls": b"0", "png": b"y"}), (sample_key(3), {"json": b"{}", "png": b"x"})]
    with pytest.raises(ValueError, match="must not hold"):
        shard_bytes([("a.b", {"png": b""})])


def test_resume_rewrites_only_missing_shards_and_keeps_the_errors(small, tmp_path):
    out = tmp_path / "wds"
    run_job(export_job(small, RECIPE, out, copies=2, fmt="webdataset", shard_size=6))
    before = files_of(out)
    again = run_job(export_job(small, RECIPE, out, copies=2, fmt="webdataset", shard_size=6))
    assert again.written == 0 and again.skipped_existing == 36 and again.bad == 1
    assert files_of(out) == before
    (out / "shard-000001.tar").unlink()  # circles 3..5
    third = run_job(export_job(small, RECIPE, out, copies=2, fmt="webdataset", shard_size=6))
    assert third.written == 6 and third.skipped_existing == 30
    assert files_of(out) == before

    # cancelled after the first shard: the journal keeps it (and its bad item), the re-run does the rest
    out2 = tmp_path / "wds2"
    token = CancelToken()
    job = export_job(small, RECIPE, out2, copies=2, fmt="webdataset", shard_size=6, cancel=token)
    with pytest.raises(JobCancelled):
        for p in job:
            if p.done:
                token.cancel()
    assert sorted(p.name for p in out2.glob("*.tar")) == ["shard-000000.tar"]
    fourth = run_job(export_job(small, RECIPE, out2, copies=2, fmt="webdataset", shard_size=6))
    assert fourth.skipped_existing == 6 and fourth.written == 30 and fourth.bad == 1
    assert files_of(out2) == before and leftovers(out2) == []
    with pytest.raises(Exception, match="shard_size"):  # another shard size would mix two exports
        run_job(export_job(small, RECIPE, out, copies=2, fmt="webdataset", shard_size=4))
    with pytest.raises(RecipeError, match="shard-size"):
        run_job(export_job(small, RECIPE, tmp_path / "x", fmt="webdataset", shard_size=0))


def test_a_training_loop_streams_the_shards(small, tmp_path, capsys):
    """The README example: a WebDataset pipeline into a DataLoader, images as tensors with their class."""
    wds = pytest.importorskip("webdataset")
    import torch

    out = tmp_path / "wds"
    assert main(["export", str(small), "-r", _recipe(tmp_path), "-o", str(out), "-n", "2",
                 "--format", "webdataset", "--shard-size", "8"]) == 0
    assert "WebDataset shards" in capsys.readouterr().out
    urls = str(out / "shard-{000000..000004}.tar")

    dataset = (wds.WebDataset(urls, shardshuffle=False)
               .decode("torchrgb")
               .to_tuple("png", "cls")
               .map(lambda s: (torch.nn.functional.interpolate(s[0][None], size=(32, 32))[0], s[1]))
               .batched(8))
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=0)
    n = 0
    for images, labels in loader:
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
        assert set(labels.tolist()) <= {0, 1, 2}
        n += len(labels)
    assert n == 36


def test_batch_stage_soft_labels_ride_in_each_samples_json(small, tmp_path):
    recipe = {"seed": 3, "steps": [{"op": "hflip", "p": 0.5}], "batch": [{"op": "mixup", "alpha": 0.4}]}
    shapes = tmp_path / "shapes"
    for cls in ("circle", "square"):
        shutil.copytree(small / cls, shapes / cls)
    (shapes / "square" / "broken.png").unlink()
    run_job(export_job(shapes, recipe, tmp_path / "folder", copies=1))
    run_job(export_job(shapes, recipe, tmp_path / "wds", copies=1, fmt="webdataset", shard_size=4))
    labels = (tmp_path / "wds" / "labels.csv").read_text()
    assert labels == (tmp_path / "folder" / "labels.csv").read_text()
    for k in range(3):
        for _key, parts in read_shard(tmp_path / "wds" / f"shard-{k:06d}.tar"):
            rec = json.loads(parts["json"])
            assert len(rec["label"]) == 2 and abs(sum(rec["label"]) - 1) < 1e-5
            assert parts["png"] == (tmp_path / "folder" / rec["output"]).read_bytes()


def _recipe(tmp_path) -> str:
    p = tmp_path / "r.json"
    p.write_text(json.dumps(RECIPE))
    return str(p)
