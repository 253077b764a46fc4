"""Export: byte-identical for 1 vs 2 workers, resume, DST inside SRC refused, errors.jsonl, exit codes."""

from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import leftovers, tree_hash  # noqa: E402

from augstudio.cli import main  # noqa: E402
from augstudio.core.base.errors import JobCancelled, OutputError, RecipeError  # noqa: E402
from augstudio.core.base.jobs import CancelToken, run_job  # noqa: E402
from augstudio.core.engine.recipe import load_recipe  # noqa: E402
from augstudio.core.io import images  # noqa: E402
from augstudio.core.workflows.export import export_job  # noqa: E402

RECIPE = {"seed": 7, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-20, 20]},
                               {"op": "brightness", "factor": [0.7, 1.3], "p": 0.5}]}
GEOMETRIC = {"seed": 7, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-20, 20]},
                                  {"op": "translate", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5}]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def shapes(tmp_path, samples_root) -> Path:
    root = tmp_path / "shapes"
    for cls in ("circle", "square"):
        shutil.copytree(samples_root / "shapes" / cls, root / cls)
    return root


def test_workers_1_and_2_give_byte_identical_outputs_on_the_sample_dataset(samples_root, tmp_path):
    before = tree_hash(samples_root)
    s1 = run_job(export_job(samples_root, GEOMETRIC, tmp_path / "w1", copies=4, workers=1))
    s2 = run_job(export_job(samples_root, GEOMETRIC, tmp_path / "w2", copies=4, workers=2))
    assert s1.written == s2.written == 4 * 195 and s1.bad == s2.bad == 0
    f1, f2 = files_of(tmp_path / "w1"), files_of(tmp_path / "w2")
    assert f1.keys() == f2.keys()
    assert [k for k in f1 if f1[k] != f2[k]] == []
    assert len([k for k in f1 if k.endswith(".png")]) == 780
    assert tree_hash(samples_root) == before
    # wafer maps stay palette PNGs with their three categories
    wafer = Image.open(tmp_path / "w1" / "wafers" / "Donut" / sorted(
        p.name for p in (tmp_path / "w1" / "wafers" / "Donut").iterdir())[0])
    assert wafer.mode == "P" and set(np.unique(np.asarray(wafer))) <= {0, 1, 2}


def test_a_batch_stage_export_runs_in_two_worker_processes_and_equals_one(shapes, tmp_path, monkeypatch):
    """The batch stage is a phase of the same export job: -j 2 runs the per-image and mixing work in two
    worker processes, and the tree equals -j 1 byte for byte, in the plain export's class-folder layout."""
    from augstudio.core.workflows import pool

    pools = []

    class Recording(pool.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            pools.append(self)

        def submit(self, *a, **k):
            fut = super().submit(*a, **k)
            self.pids = {p.pid for p in self._processes.values()}
            return fut

    monkeypatch.setattr(pool, "ProcessPoolExecutor", Recording)
    recipe = {"seed": 4, "steps": [{"op": "rotate", "degrees": 10}],
              "batch": [{"op": "mixup"}, {"op": "cutmix", "p": 0.5}, {"op": "label_smoothing"}]}
    s1 = run_job(export_job(shapes, recipe, tmp_path / "w1", copies=2, workers=1))
    assert pools == []
    s2 = run_job(export_job(shapes, recipe, tmp_path / "w2", copies=2, workers=2))
    assert len(pools) == 1 and pools[0]._max_workers == 2 and len(pools[0].pids) == 2
    assert s1.written == s2.written == 60
    f1, f2 = files_of(tmp_path / "w1"), files_of(tmp_path / "w2")
    assert f1 == f2
    names = sorted(k for k in f1 if k.endswith(".png"))
    assert len(names) == 60 and all(k.split("/")[0] in ("circle", "square") and "__" in k for k in names)
    assert {"labels.csv", "manifest.jsonl", "errors.jsonl", "recipe.yaml"} <= set(f1)


def test_manifest_records_replay_to_the_same_pixels(shapes, tmp_path):
    out = tmp_path / "out"
    run_job(export_job(shapes, RECIPE, out, copies=2))
    recipe = load_recipe(RECIPE)
    pipe = recipe.pipeline()
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 60 and {r["copy"] for r in lines} == {0, 1}
    for rec in lines[:6]:
        src = images.read_image(shapes / rec["source"])
        again = pipe.replay(src, rec["steps"])
        np.testing.assert_array_equal(images.read_image(out / rec["output"]).pixels.numpy(), again.pixels.numpy())
        # and the same as applying the recipe by (seed, item, copy), as training would
        direct = recipe.apply(src, item=rec["source"], copy=rec["copy"])
        np.testing.assert_array_equal(direct.pixels.numpy(), again.pixels.numpy())
    assert load_recipe(out / "recipe.yaml").steps == recipe.steps


def test_resume_after_cancel_gives_the_same_bytes(shapes, tmp_path):
    ref = tmp_path / "ref"
    run_job(export_job(shapes, RECIPE, ref, copies=2))
    out = tmp_path / "out"
    token = CancelToken()

    def cancel_at_5(p):
        if p.done == 5:
            token.cancel()

    with pytest.raises(JobCancelled, match="after 5 of 30 images"):
        run_job(export_job(shapes, RECIPE, out, copies=2, cancel=token), cancel_at_5)
    assert len(list(out.rglob("*.png"))) == 10, "stopped within one item: 5 sources x 2 copies"
    assert leftovers(out) == [str(out / "manifest.partial.jsonl")], "only the resume journal remains"
    again = run_job(export_job(shapes, RECIPE, out, copies=2))
    assert again.skipped_existing == 10 and again.written == 50
    assert files_of(out) == files_of(ref)
    # a finished export run again does nothing and changes nothing
    third = run_job(export_job(shapes, RECIPE, out, copies=2))
    assert third.written == 0 and third.skipped_existing == 60
    assert files_of(out) == files_of(ref)


def test_deleted_output_is_rewritten_on_resume(shapes, tmp_path):
    out = tmp_path / "out"
    run_job(export_job(shapes, RECIPE, out, copies=1))
    ref = files_of(out)
    victim = sorted(out.rglob("*.png"))[3]
    victim.unlink()
    s = run_job(export_job(shapes, RECIPE, out, copies=1))
    assert s.written == 1 and s.skipped_existing == 29, "only the missing output is made again"
    assert files_of(out) == ref


def test_rerun_with_another_recipe_or_seed_is_refused_not_mixed(shapes, tmp_path):
    out = tmp_path / "out"
    run_job(export_job(shapes, RECIPE, out, copies=1))
    ref = files_of(out)
    with pytest.raises(OutputError, match="different recipe; resuming into it would mix two exports"):
        run_job(export_job(shapes, RECIPE, out, copies=1, seed=99))
    with pytest.raises(OutputError, match="different copies"):
        run_job(export_job(shapes, RECIPE, out, copies=2))
    assert files_of(out) == ref


def test_output_inside_source_is_refused(shapes):
    for out in (shapes, shapes / "circle" / "aug", shapes.parent):
        with pytest.raises(OutputError, match="source"):
            run_job(export_job(shapes, RECIPE, out))
    assert not (shapes / "circle" / "aug").exists()


def test_errors_jsonl_lists_bad_sources(shapes, tmp_path):
    (shapes / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "out"
    s = run_job(export_job(shapes, RECIPE, out))
    assert s.bad == 1 and s.written == 30
    errs = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert errs == [{"source": "circle/broken.jpg", "error": errs[0]["error"]}]
    assert "circle/broken.jpg" not in (out / "manifest.jsonl").read_text()


def test_categorical_outputs_stay_png_with_format_jpg(wafer_folder, tmp_path):
    out = tmp_path / "out"
    s = run_job(export_job(wafer_folder, {"steps": [{"op": "rotate", "degrees": 30}]}, out, fmt="jpg"))
    assert s.written == 45
    names = [p.name for p in out.rglob("*") if p.is_file() and p.parent != out]
    assert names and all(n.endswith(".png") for n in names)


def test_bad_arguments_raise_before_any_output(shapes, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RecipeError, match="--copies must be >= 1"):
        run_job(export_job(shapes, RECIPE, out, copies=0))
    with pytest.raises(RecipeError, match="--workers must be >= 1"):
        run_job(export_job(shapes, RECIPE, out, workers=0))
    with pytest.raises(RecipeError, match="unknown op|no op"):
        run_job(export_job(shapes, {"steps": [{"op": "hflipp"}]}, out))
    assert not out.exists()


# -- exit codes of the real CLI entry point (in-process) ----------------------------------------------------
def _recipe_file(tmp_path, data) -> str:
    p = tmp_path / "r.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_exit_code_0_when_done(shapes, tmp_path, capsys):
    code = main(["export", str(shapes), "-r", _recipe_file(tmp_path, RECIPE), "-o", str(tmp_path / "o")])
    assert code == 0
    assert "export done: 30 images written" in capsys.readouterr().out


def test_exit_code_2_for_bad_recipe_bad_args_and_bad_output(shapes, tmp_path, capsys):
    bad = _recipe_file(tmp_path, {"steps": [{"op": "rotate", "degrees": "lots"}]})
    assert main(["export", str(shapes), "-r", bad, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "augstudio export: error:" in err and "degrees" in err
    good = _recipe_file(tmp_path, RECIPE)
    assert main(["export", str(shapes), "-r", good, "-o", str(shapes / "x")]) == 2
    assert "inside the source folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "-r", good, "-o", str(tmp_path / "o")]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert main(["export", str(shapes), "-r", good]) == 2  # argparse: --out is required
    assert main(["export", str(shapes), "-r", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


def test_exit_code_1_when_the_disk_fills(shapes, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = images.write_file

    def fill_after_4(path, data):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(images, "write_file", fill_after_4)
    code = main(["export", str(shapes), "-r", _recipe_file(tmp_path, RECIPE), "-o", str(tmp_path / "o")])
    assert code == 1
    assert "disk full" in capsys.readouterr().err


def test_export_refuses_an_unknown_top_level_key_unless_told_not_to_be_strict(shapes, tmp_path, capsys):
    """A `step:` typo loads as a recipe without steps: an export would write every image unaugmented."""
    typo = _recipe_file(tmp_path, {"seed": 1, "step": [{"op": "hflip"}]})
    assert main(["export", str(shapes), "-r", typo, "-o", str(tmp_path / "o")]) == 2
    assert "unknown top-level key 'step'; did you mean 'steps'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.warns(UserWarning, match="did you mean 'steps'"):
        assert main(["export", str(shapes), "-r", typo, "-o", str(tmp_path / "o"), "--no-strict"]) == 0


def test_a_resume_on_a_cpu_whose_opencv_rounds_otherwise_is_refused(shapes, tmp_path, monkeypatch):
    """Bilinear warps round ~0.06% of pixels the other way where OpenCV runs Intel's IPP kernels: the export
    records which kernels this machine runs, and a resume where they differ (a shared folder finished on
    another machine) is refused rather than mixing the two roundings; the same machine resumes as before."""
    from augstudio.core.kernels import cv
    from augstudio.core.workflows.export import STATE

    out = tmp_path / "out"
    run_job(export_job(shapes, RECIPE, out, copies=1))
    state = json.loads((out / STATE).read_text())
    assert state["cpu_kernels"] == cv.rounding() and cv.rounding().startswith("OpenCV ")
    assert run_job(export_job(shapes, RECIPE, out, copies=1)).skipped_existing == 30  # the same machine
    other = cv.rounding().replace(" with IPP", "") if "IPP" in cv.rounding() else cv.rounding() + " with IPP"
    monkeypatch.setattr(cv, "rounding", lambda: other)
    with pytest.raises(OutputError, match="different cpu_kernels; resuming into it would mix two exports"):
        run_job(export_job(shapes, RECIPE, out, copies=1))
