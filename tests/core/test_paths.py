"""Paths: nothing a dataset, recipe, journal or link holds can make augstudio write outside the chosen output
folder, and the source folder is never written (hashed before and after every job)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import tree_hash  # noqa: E402

from augstudio.core.base.errors import OutputError  # noqa: E402
from augstudio.core.base.jobs import run_job  # noqa: E402
from augstudio.core.io.dataset import Item  # noqa: E402
from augstudio.core.io.outputs import safe_rel  # noqa: E402
from augstudio.core.workflows.export import PARTIAL, export_job, plan_outputs  # noqa: E402

RECIPE = {"seed": 5, "steps": [{"op": "vflip", "p": 0.5}]}


@pytest.fixture
def src(tmp_path, samples_root) -> Path:
    root = tmp_path / "src"
    shutil.copytree(samples_root / "wafers" / "Scratch", root / "Scratch")
    return root


def outside_files(tmp_path: Path, out: Path, src: Path) -> list[str]:
    """Files under tmp_path that are neither in the output folder nor in the source."""
    found = []
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            r = p.resolve()
            if not (r.is_relative_to(out.resolve()) or r.is_relative_to(src.resolve())
                    or p.name in ("target.txt",)):
                found.append(str(p))
    return found


@pytest.mark.parametrize("rel", ["../x.png", "a/../../x.png", "/etc/x.png", "a\\..\\x.png", "a/\x00.png",
                                 "..", "a/.."])
def test_unsafe_relative_paths_are_refused(rel):
    with pytest.raises(OutputError, match="unsafe output path"):
        safe_rel(rel)


def test_plan_refuses_item_names_that_climb_out():
    items = [Item("../../evil.png", 0, "..")]
    with pytest.raises(OutputError, match="could escape the output folder"):
        plan_outputs(items, 1, "png")
    assert plan_outputs([Item("a..b/c..d.png", 0, "a..b")], 1, "png") == {
        "a..b/c..d.png": ((0, "a..b/c..d__0.png", "png"),)}


def test_output_symlink_into_the_source_is_refused(src, tmp_path):
    link = tmp_path / "out_link"
    link.symlink_to(src / "Scratch")
    before = tree_hash(src)
    with pytest.raises(OutputError, match="inside the source folder"):
        run_job(export_job(src, RECIPE, link))
    assert tree_hash(src) == before


def test_symlinked_output_folder_writes_only_into_its_target(src, tmp_path):
    real = tmp_path / "real_out"
    real.mkdir()
    link = tmp_path / "out_link"
    link.symlink_to(real)
    before = tree_hash(src)
    s = run_job(export_job(src, RECIPE, link))
    assert s.written == 15
    assert len(list(real.rglob("*.png"))) == 15
    assert outside_files(tmp_path, real, src) == []
    assert tree_hash(src) == before


def test_symlinked_class_folder_inside_the_output_does_not_carry_writes_out(src, tmp_path):
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "Scratch").symlink_to(elsewhere)
    before = tree_hash(src)
    s = run_job(export_job(src, RECIPE, out))
    assert s.written == 0 and s.bad == 15
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert all("is a link that leads outside" in e["error"] for e in errors)
    assert list(elsewhere.iterdir()) == []
    assert tree_hash(src) == before


def test_symlinked_output_file_is_replaced_not_followed(src, tmp_path):
    out = tmp_path / "out"
    run_job(export_job(src, RECIPE, out))
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    victim = sorted((out / "Scratch").iterdir())[0]
    victim.unlink()
    victim.symlink_to(target)  # someone planted a link where an output goes
    run_job(export_job(src, RECIPE, out))
    assert target.read_text() == "keep me"
    assert not victim.is_symlink()


def test_a_journal_that_names_paths_outside_is_refused(src, tmp_path):
    out = tmp_path / "out"
    run_job(export_job(src, RECIPE, out))
    (out / "manifest.jsonl").unlink()
    first = sorted((out / "Scratch").iterdir())[0]
    rec = {"source": f"Scratch/{first.name.split('__')[0]}.png",
           "records": [{"output": "../../escaped.png", "source": "x", "copy": 0}]}
    (out / PARTIAL).write_text(json.dumps(rec) + "\n")
    with pytest.raises(OutputError, match="unsafe output path"):
        run_job(export_job(src, RECIPE, out))
    assert not (tmp_path / "escaped.png").exists()


def test_class_folder_named_with_dots_stays_inside(tmp_path, samples_root):
    src = tmp_path / "src"
    shutil.copytree(samples_root / "wafers" / "Loc", src / "..Loc..")  # hidden: skipped
    shutil.copytree(samples_root / "wafers" / "Loc", src / "Loc..x")
    out = tmp_path / "out"
    s = run_job(export_job(src, RECIPE, out))
    assert s.written == 15
    assert {p.parent.name for p in out.rglob("*.png")} == {"Loc..x"}
    assert outside_files(tmp_path, out, src) == []


def test_source_is_never_written_even_when_it_is_read_only_to_us(src, tmp_path):
    os.chmod(src / "Scratch", 0o555)
    try:
        before = tree_hash(src)
        run_job(export_job(src, RECIPE, tmp_path / "out", copies=2))
        assert tree_hash(src) == before
    finally:
        os.chmod(src / "Scratch", 0o755)
