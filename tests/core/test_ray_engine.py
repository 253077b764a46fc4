"""What the Ray engine asks the cluster for, without starting Ray: a GPU per task for --device cuda (or auto on
a cluster with GPUs), none for cpu, a clear message for a cluster without GPUs, CPUs per evaluate run from
--threads; and the message when Ray is not installed."""

from __future__ import annotations

import sys

import pytest

from augstudio.cli import main
from augstudio.core.base.errors import ParamError
from augstudio.core.base.jobs import run_job
from augstudio.core.workflows import ray_engine
from augstudio.core.workflows.export import export_job
from augstudio.core.workflows.ray_engine import gpus_for


def test_gpus_for_each_device():
    gpu_cluster, cpu_cluster = {"CPU": 32.0, "GPU": 4.0}, {"CPU": 32.0}
    assert gpus_for("cuda", gpu_cluster) == ("cuda", 1.0)
    assert gpus_for("cuda:1", gpu_cluster) == ("cuda", 1.0)  # inside a task its one GPU is cuda:0
    assert gpus_for("auto", gpu_cluster) == ("cuda", 1.0) and gpus_for(None, gpu_cluster) == ("cuda", 1.0)
    assert gpus_for("auto", cpu_cluster) == ("cpu", 0.0)
    assert gpus_for("cpu", gpu_cluster) == ("cpu", 0.0)
    with pytest.raises(ParamError, match="has no GPU"):
        gpus_for("cuda", cpu_cluster)
    with pytest.raises(ParamError, match="mps"):
        gpus_for("mps", gpu_cluster)


class _Stop(Exception):
    pass


@pytest.fixture
def fake_gpu_cluster(monkeypatch):
    """RaySession and ray_results replaced: a 'cluster' with 2 GPUs; what the job asks for is recorded."""
    asked = []

    class FakeSession:
        def __init__(self, address=None, num_cpus=None):
            asked.append({"address": address, "num_cpus": num_cpus})

        def __enter__(self):
            return self

        def close(self):
            asked.append("closed")

        @staticmethod
        def resources():
            return {"CPU": 8.0, "GPU": 2.0}

    def fake_results(units, make, make_args, holder, **kw):
        asked.append({"units": len(units), "make": make.__name__, **kw})
        raise _Stop
        yield  # a generator, as the real one

    monkeypatch.setattr(ray_engine, "RaySession", FakeSession)
    monkeypatch.setattr(ray_engine, "ray_results", fake_results)
    return asked


def test_export_asks_for_one_gpu_per_task_with_device_cuda(fake_gpu_cluster, tmp_path, samples_root):
    src = samples_root / "shapes"
    with pytest.raises(_Stop):
        run_job(export_job(src, {"steps": [{"op": "hflip"}]}, tmp_path / "o", engine="ray", device="cuda",
                           address="ray://head:10001"))
    assert fake_gpu_cluster[0] == {"address": "ray://head:10001", "num_cpus": 1}
    assert fake_gpu_cluster[1]["gpus"] == 1.0 and fake_gpu_cluster[1]["cpus"] == 1
    assert fake_gpu_cluster[1]["make"] == "ItemWorker" and fake_gpu_cluster[-1] == "closed"
    fake_gpu_cluster.clear()
    with pytest.raises(_Stop):
        run_job(export_job(src, {"steps": [{"op": "hflip"}]}, tmp_path / "o2", engine="ray", device="cuda",
                           gpus_per_task=0.25, fmt="webdataset", workers=None))
    assert fake_gpu_cluster[1]["gpus"] == 0.25 and fake_gpu_cluster[1]["make"] == "ShardWorker"
    fake_gpu_cluster.clear()
    with pytest.raises(_Stop):
        run_job(export_job(src, {"steps": [{"op": "hflip"}]}, tmp_path / "o3", engine="ray", device="cpu"))
    assert fake_gpu_cluster[1]["gpus"] == 0.0


def test_evaluate_asks_for_a_gpu_per_run_when_the_cluster_has_them(fake_gpu_cluster, wafer_folder):
    from augstudio.core.workflows.evaluate import evaluate_job

    with pytest.raises(_Stop):
        run_job(evaluate_job(wafer_folder, [], epochs=1, seeds=3, engine="ray", threads=2))
    ask = fake_gpu_cluster[1]
    assert ask == {"units": 3, "make": "RunWorker", "cpus": 2, "gpus": 1.0, "chunk": 1}
    assert fake_gpu_cluster[-1] == "closed"


def test_without_ray_installed_the_message_says_what_to_install(monkeypatch, tmp_path, samples_root, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc = main(["export", str(samples_root / "shapes"), "-r", str(_recipe(tmp_path)), "-o", str(tmp_path / "o"),
               "--engine", "ray"])
    assert rc == 2 and "pip install 'augstudio[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("steps:\n  - {op: hflip}\n")
    return p
