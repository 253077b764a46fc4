"""Faults: kill -9 then re-run, Ctrl-C, a full disk, a read-only output folder, cancel. The real CLI runs in a
subprocess where the fault is a signal; in-process where it is an injected OSError."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import leftovers, tree_hash  # noqa: E402

from augstudio.cli import main  # noqa: E402
from augstudio.core.base.errors import JobCancelled, OutputError, WriteError  # noqa: E402
from augstudio.core.base.jobs import CancelToken, run_job  # noqa: E402
from augstudio.core.io import images  # noqa: E402
from augstudio.core.workflows.export import PARTIAL, export_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPE = {"seed": 11, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-25, 25]},
                                {"op": "contrast", "factor": [0.7, 1.3]}]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture
def shapes(tmp_path, samples_root) -> Path:
    root = tmp_path / "src"
    for cls in ("circle", "star"):
        shutil.copytree(samples_root / "shapes" / cls, root / cls)
    return root


@pytest.fixture
def many_shapes(tmp_path, samples_root) -> Path:
    """240 images (the circles and stars 8 times over): enough work left after the first outputs that a
    signal sent on seeing them always lands mid-export, however late a loaded machine schedules the test
    (with 30 images the export could finish first: seen once under load in a fresh clone)."""
    root = tmp_path / "many"
    for k in range(8):
        for cls in ("circle", "star"):
            shutil.copytree(samples_root / "shapes" / cls, root / f"{cls}_{k}")
    return root


@pytest.fixture
def recipe_file(tmp_path) -> Path:
    p = tmp_path / "recipe.json"
    p.write_text(json.dumps(RECIPE))
    return p


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def complete_pngs(root: Path) -> int:
    """Every image in ``root`` must decode fully (no half-written file); returns how many there are."""
    n = 0
    for p in root.rglob("*.png"):
        images.read_image(p)
        n += 1
    return n


def _interruptible() -> None:
    """In the child before it runs: Ctrl-C does what it does at a terminal. A suite started in the background
    by a shell without job control (``(make test &)``, a script's ``&``) inherits SIGINT ignored, and so would
    the CLI, which then runs to the end whatever the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(src, recipe_file, out, copies=2, workers=1) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "augstudio", "export", str(src), "-r", str(recipe_file),
                             "-o", str(out), "-n", str(copies), "-j", str(workers)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)


def wait_for_outputs(proc, out: Path, n: int, limit_s: float = 120) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the export ended before it could be interrupted: {proc.communicate()}")
        if out.exists() and sum(1 for _ in out.rglob("*.png")) >= n:
            return
        time.sleep(0.02)
    raise AssertionError("no outputs appeared")


def test_ctrl_c_then_kill_9_then_rerun_gives_byte_identical_outputs(many_shapes, recipe_file, tmp_path, capsys):
    """One source, three runs of the same command: Ctrl-C, kill -9, then to the end."""
    shapes = many_shapes
    n_images = sum(1 for _ in shapes.rglob("*.jpg"))
    before = tree_hash(shapes)
    ref = tmp_path / "ref"
    run_job(export_job(shapes, recipe_file, ref, copies=2))
    out = tmp_path / "out"

    # 1. Ctrl-C: stops within one item, says how far it got, leaves no temporary files
    proc = start_cli(shapes, recipe_file, out)
    wait_for_outputs(proc, out, 6)
    status = Path(f"/proc/{proc.pid}/status")  # Linux: the child's signal masks, for the message
    signals = [x for x in status.read_text().splitlines() if x.startswith("Sig")] if status.exists() else []
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (stdout, stderr, signals)
    assert "Traceback" not in stderr
    line = [x for x in stderr.splitlines() if "interrupted" in x][-1]
    assert "augstudio export: interrupted after" in line and "Run the same command again to resume" in line
    assert f" of {n_images} images" in line
    done = int(line.split("interrupted after ")[1].split(" of ")[0])
    assert len((out / PARTIAL).read_text().splitlines()) == done, "the message says how far the journal got"
    on_disk = complete_pngs(out)
    assert 2 * done <= on_disk <= 2 * (done + 1), "stopped within one item"
    assert leftovers(out) == [str(out / PARTIAL)], "no temporary files"

    # 2. kill -9 part-way through the resumed run, with 2 worker processes: they must not outlive it
    proc = start_cli(shapes, recipe_file, out, workers=2)
    wait_for_outputs(proc, out, on_disk + 6)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # returns only once no orphaned worker holds the pipes
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.jsonl").exists(), "the export was killed before it finished"
    assert on_disk + 6 <= complete_pngs(out) < 2 * n_images, "whatever the kill left is whole"

    # 3. the same command again (the CLI entry point, in this process) finishes the job
    assert main(["export", str(shapes), "-r", str(recipe_file), "-o", str(out), "-n", "2", "-j", "1"]) == 0
    assert "already there" in capsys.readouterr().out
    assert files_of(out) == files_of(ref), "an interrupted, killed and resumed export equals an uninterrupted one"
    assert leftovers(out) == []
    assert tree_hash(shapes) == before


def _full_disk_after(n_writes: int):
    calls = {"n": 0}
    real = images.write_file

    def write(path, data):
        calls["n"] += 1
        if calls["n"] > n_writes:
            with open(path, "wb") as f:  # the disk takes half, then is full
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    return write


def test_disk_full_is_a_clear_error_without_partial_files_and_resumes(shapes, recipe_file, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    run_job(export_job(shapes, recipe_file, ref, copies=2))
    out = tmp_path / "out"
    monkeypatch.setattr(images, "write_file", _full_disk_after(12))
    with pytest.raises(WriteError) as ei:
        run_job(export_job(shapes, recipe_file, out, copies=2))
    msg = str(ei.value)
    assert "disk full while writing into" in msg and "run the same command again" in msg
    assert leftovers(out) == [str(out / PARTIAL)], "no temporary or half-written files"
    assert complete_pngs(out) == 10  # the write probe, the fingerprint and 10 images, then the disk filled
    assert not (out / "manifest.jsonl").exists()
    monkeypatch.undo()  # space freed
    s = run_job(export_job(shapes, recipe_file, out, copies=2))
    assert s.skipped_existing == 10, "5 whole sources were journaled before the disk filled"
    assert files_of(out) == files_of(ref)


def test_read_only_output_folder(shapes, recipe_file, tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(images, "write_file", read_only)
    with pytest.raises(OutputError) as ei:
        run_job(export_job(shapes, recipe_file, out))
    assert not isinstance(ei.value, WriteError), "a read-only folder is a bad choice of folder (exit code 2)"
    assert f"cannot write into {out}" in str(ei.value) and "Choose a writable output folder" in str(ei.value)
    assert os.listdir(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the injected EROFS test above "
                    "covers the path")
def test_read_only_output_folder_real_permissions(shapes, recipe_file, tmp_path):  # pragma: no cover
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write into"):
            run_job(export_job(shapes, recipe_file, out))
    finally:
        out.chmod(0o755)


def test_disk_full_while_writing_the_journal(shapes, recipe_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    import builtins

    real_open = builtins.open

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, _s):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return FullFile(f) if str(file).endswith(PARTIAL) and "a" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(WriteError, match="disk full"):
        run_job(export_job(shapes, recipe_file, out))
    assert not [p for p in leftovers(out) if not p.endswith(PARTIAL)]


def test_cancel_with_two_workers_ends_cleanly_and_bad_items_are_skipped(shapes, recipe_file, tmp_path):
    (shapes / "circle" / "0bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # sorts first
    token = CancelToken()
    out = tmp_path / "out"

    def cancel_at_3(p):
        if p.done == 3:
            token.cancel()

    with pytest.raises(JobCancelled, match=r"after 3 of 31 images \(2 written\)"):
        run_job(export_job(shapes, recipe_file, out, copies=1, workers=2, cancel=token), cancel_at_3)
    on_disk = complete_pngs(out)
    # the items in flight (at most 2 per worker) finish their atomic writes; nothing else starts
    assert 2 <= on_disk <= 2 + 4
    assert not [p for p in leftovers(out) if not p.endswith(PARTIAL)]
    s = run_job(export_job(shapes, recipe_file, out, copies=1))
    assert s.skipped_existing == 2 and s.written == 28 and s.bad == 1


STYLIZED = {"augstudio_recipe": 1, "seed": 3,
            "steps": [{"op": "stylize", "method": "randconv"}, {"op": "stylize", "method": "stats", "p": 0.5},
                      {"op": "hflip", "p": 0.5}]}


def test_kill_9_during_a_stylized_export_then_rerun_is_byte_identical(many_shapes, tmp_path):
    """The style randomisation ops run inside the export job; a kill mid-way must not lose or corrupt data."""
    shapes = many_shapes  # enough work that the kill always lands mid-export
    total = 2 * sum(1 for _ in shapes.rglob("*.jpg"))
    rf = tmp_path / "stylized.json"
    rf.write_text(json.dumps(STYLIZED))
    ref = tmp_path / "ref"
    run_job(export_job(shapes, rf, ref, copies=2))
    out = tmp_path / "out"
    proc = start_cli(shapes, rf, out, workers=2)
    wait_for_outputs(proc, out, 8)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.jsonl").exists()
    assert 8 <= complete_pngs(out) < total, "whatever the kill left is whole"
    assert main(["export", str(shapes), "-r", str(rf), "-o", str(out), "-n", "2", "-j", "1"]) == 0
    assert files_of(out) == files_of(ref)
    assert leftovers(out) == []


MIXED = {"augstudio_recipe": 1, "seed": 5, "steps": [{"op": "hflip", "p": 0.5}],
         "batch": [{"op": "mixup", "alpha": 0.4}, {"op": "cutmix", "p": 0.5}, {"op": "label_smoothing"}]}


def test_kill_9_during_a_batch_stage_export_then_rerun_is_byte_identical(many_shapes, tmp_path):
    """The batch stage is a phase of the same export job: two worker processes, a kill mid-way, then the
    same command with one worker gives the bytes of an uninterrupted run (images, labels.csv, manifest)."""
    shapes = many_shapes  # enough work that the kill always lands mid-export
    total = 2 * sum(1 for _ in shapes.rglob("*.jpg"))
    rf = tmp_path / "mixed.json"
    rf.write_text(json.dumps(MIXED))
    ref = tmp_path / "ref"
    run_job(export_job(shapes, rf, ref, copies=2))
    assert (ref / "labels.csv").exists() and complete_pngs(ref) == total
    out = tmp_path / "out"
    proc = start_cli(shapes, rf, out, workers=2)
    wait_for_outputs(proc, out, 8)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.jsonl").exists() and not (out / "labels.csv").exists()
    assert 8 <= complete_pngs(out) < total, "whatever the kill left is whole"
    assert main(["export", str(shapes), "-r", str(rf), "-o", str(out), "-n", "2", "-j", "1"]) == 0
    assert files_of(out) == files_of(ref)
    assert leftovers(out) == []


def test_kill_9_during_a_distillation_then_rerun_is_byte_identical(tmp_path, samples_root):
    """Distillation journals each finished image; a kill mid-way, then the same command: same bytes."""
    import torch

    src = tmp_path / "unlabeled"
    src.mkdir()
    for i, p in enumerate(sorted((samples_root / "wafers").rglob("*.png")) * 2):
        shutil.copy(p, src / f"map_{i:03d}.png")  # 270 anonymous maps, flat
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    meta = {"classes": ["a", "b", "c"], "input_mode": "onehot", "num_categories": 3, "mean": [0.0], "std": [1.0]}
    model = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(net), str(model), _extra_files={"augstudio.json": json.dumps(meta)})

    def argv(out):
        return ["distill", "--model", str(model), "--allow-code", "--unlabeled", str(src), "--out", str(out),
                "--tta", "d4", "--threshold", "0", "--batch-size", "1", "--device", "cpu"]

    before = tree_hash(src)
    ref = tmp_path / "ref"
    with pytest.warns(UserWarning, match="runs code"):
        assert main(argv(ref)) == 0
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "augstudio", *argv(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_outputs(proc, out, 20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "labels.csv").exists(), "killed before it finished"
    with pytest.warns(UserWarning, match="runs code"):
        assert main(argv(out)) == 0
    assert files_of(out) == files_of(ref), "a killed and resumed distillation equals an uninterrupted one"
    assert leftovers(out) == []
    assert tree_hash(src) == before
