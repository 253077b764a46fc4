"""--engine ray on a local Ray with 2 CPUs: the same tree as the local engine with -j 2, byte for byte (also
as WebDataset shards); a killed Ray worker's task is retried and leaves no partial file; a cancel stops the
tasks and the re-run resumes; a GPU asked of a cluster without one is explained. One Ray for the module
(started and stopped here); two tests only, so a parallel run starts at most two."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import leftovers  # noqa: E402

from augstudio.cli import main  # noqa: E402
from augstudio.core.base.errors import JobCancelled  # noqa: E402
from augstudio.core.base.jobs import CancelToken, run_job  # noqa: E402
from augstudio.core.workflows.export import PARTIAL, export_job  # noqa: E402

GEOMETRIC = {"seed": 7, "steps": [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": [-20, 20]},
                                  {"op": "translate", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5}]}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """A Ray of 2 CPUs on this machine, for this module only; nothing of it is left running afterwards."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 << 20,
             logging_level="warning")
    try:
        yield
    finally:
        ray.shutdown()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def subset(tmp_path_factory, samples_root) -> Path:
    """A subset of the bundled samples: 3 shape classes of photos-like PNG/JPEG and 2 wafer classes (palette)."""
    root = tmp_path_factory.mktemp("ray") / "samples"
    for group, classes, n in (("shapes", ("circle", "square", "triangle"), 8), ("wafers", ("Donut", "Scratch"), 6)):
        for cls in classes:
            src = samples_root / group / cls
            if not src.is_dir():
                continue
            (root / group / cls).mkdir(parents=True)
            for p in sorted(src.iterdir())[:n]:
                shutil.copy(p, root / group / cls / p.name)
    return root


@pytest.fixture(scope="module")
def reference(subset, tmp_path_factory) -> dict:
    """The local engine's tree (one worker: -j 1 and -j 2 are byte-identical, see test_export)."""
    out = tmp_path_factory.mktemp("local") / "out"
    s = run_job(export_job(subset, GEOMETRIC, out, copies=2, workers=1))
    assert s.written > 40 and s.bad == 0
    return files_of(out)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ray_export_is_byte_identical_to_local_workers_2(subset, reference, tmp_path, capsys):
    local2 = tmp_path / "local2"
    run_job(export_job(subset, GEOMETRIC, local2, copies=2, workers=2))
    assert files_of(local2) == reference
    s = run_job(export_job(subset, GEOMETRIC, tmp_path / "ray", copies=2, engine="ray"))
    assert s.nodes == 1 and "on 1 Ray node" in s.line()
    tree = files_of(tmp_path / "ray")
    assert tree.keys() == reference.keys()
    assert [k for k in tree if tree[k] != reference[k]] == []
    # the same again through the command line: resumes, writes nothing
    rc = main(["export", str(subset), "-r", _recipe(tmp_path), "-o", str(tmp_path / "ray"), "-n", "2",
               "--engine", "ray"])
    assert rc == 0 and files_of(tmp_path / "ray") == reference
    assert "0 images written, 72 already there" in capsys.readouterr().out

    # WebDataset shards made by Ray tasks (one shard per task) equal the local engine's
    run_job(export_job(subset, GEOMETRIC, tmp_path / "wds_local", copies=2, fmt="webdataset", shard_size=10))
    w = run_job(export_job(subset, GEOMETRIC, tmp_path / "wds_ray", copies=2, fmt="webdataset", shard_size=10,
                           engine="ray"))
    assert w.shards == 8 and files_of(tmp_path / "wds_ray") == files_of(tmp_path / "wds_local")

    # a GPU asked of a cluster without one: explained, exit code 2, nothing written
    rc = main(["export", str(subset), "-r", _recipe(tmp_path), "-o", str(tmp_path / "gpu"), "--engine", "ray",
               "--device", "cuda"])
    assert rc == 2 and "the Ray cluster has no GPU" in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists()


def _ray_task_workers():
    """Ray worker processes of this test's Ray that are running an export chunk now."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "_run_chunk" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def test_a_killed_ray_worker_is_retried_and_a_cancelled_export_resumes(subset, reference, tmp_path):
    out = tmp_path / "ray"
    job = export_job(subset, GEOMETRIC, out, copies=2, engine="ray")
    killed = []
    summary = None
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            summary = stop.value
            break
        deadline = time.monotonic() + 20
        while p.done and not killed and time.monotonic() < deadline:
            busy = _ray_task_workers()
            if busy:
                os.kill(busy[0].pid, signal.SIGKILL)  # mid-task: Ray runs its chunk again on another worker
                killed.append(busy[0].pid)
            else:
                time.sleep(0.005)
    assert killed, "a Ray worker running an export task was killed"
    assert summary.written == sum(1 for k in reference if k.endswith(".png")) and summary.bad == 0
    assert files_of(out) == reference, "every output, the manifest and the errors file as the local engine's"
    assert leftovers(out) == [], "no temporary or half-written files"
    again = run_job(export_job(subset, GEOMETRIC, out, copies=2, engine="ray"))
    assert again.written == 0 and files_of(out) == reference

    # cancel (as Ctrl-C does): the tasks in flight are cancelled, no partial file, the re-run resumes
    out = tmp_path / "cancelled"
    token = CancelToken()
    job = export_job(subset, GEOMETRIC, out, copies=2, engine="ray", cancel=token)
    with pytest.raises(JobCancelled, match="Run it again to resume"):
        for p in job:
            if p.done:
                token.cancel()
    assert (out / PARTIAL).exists() and not (out / "manifest.jsonl").exists()
    assert [p for p in leftovers(out) if not p.endswith(PARTIAL)] == []
    s = run_job(export_job(subset, GEOMETRIC, out, copies=2, engine="ray"))
    assert s.skipped_existing > 0 and files_of(out) == reference


def _recipe(tmp_path) -> str:
    p = tmp_path / "r.json"
    p.write_text(json.dumps(GEOMETRIC))
    return str(p)
