"""A simulated two-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU per node, both on this machine):
export runs on both nodes and writes the same tree as the local engine, byte for byte; evaluate runs its
(arm, seed) trainings as tasks there and gives the numbers of a local run (results.json identical but for
the time taken). One test, so a parallel run starts the cluster once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from augstudio.core.base.jobs import run_job  # noqa: E402
from augstudio.core.workflows.export import export_job  # noqa: E402

RECIPE = {"seed": 11, "steps": [{"op": "rotate", "degrees": [-30, 30]}, {"op": "hflip", "p": 0.5}]}


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 100 << 20})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
        ray.init(address=cluster.address, logging_level="warning")
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_two_node_cluster_exports_the_local_tree_and_evaluates_to_the_local_numbers(two_nodes, samples_root,
                                                                                     tmp_path):
    import torch

    torch.set_num_threads(1)
    src = tmp_path / "src"
    for cls in ("circle", "star"):
        (src / cls).mkdir(parents=True)
        for p in sorted((samples_root / "shapes" / cls).iterdir())[:10]:
            shutil.copy(p, src / cls / p.name)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    local = run_job(export_job(src, RECIPE, tmp_path / "local", copies=2))
    s = run_job(export_job(src, RECIPE, tmp_path / "cluster", copies=2, engine="ray"))
    assert s.written == local.written == 40
    assert s.nodes == 2, "the tasks ran on both nodes"
    assert files_of(tmp_path / "cluster") == files_of(tmp_path / "local")

    # evaluate: 2 seeds x 3 arms = 6 runs, one task each, spread over both nodes
    from augstudio.core.workflows.evaluate import evaluate_job
    from augstudio.core.workflows.report import results_json

    digits = _digits(tmp_path / "digits")
    recipes = [{"seed": 1, "steps": [{"op": "rotate", "degrees": 15}]},
               {"seed": 2, "steps": [{"op": "hflip"}], "batch": [{"op": "mixup", "alpha": 0.4}]}]
    kw = {"epochs": 2, "seeds": [0, 1], "image_size": 8, "device": "cpu", "batch_size": 16}
    local = run_job(evaluate_job(digits, recipes, threads=1, **kw))
    remote = run_job(evaluate_job(digits, recipes, engine="ray", **kw))
    for r in (local, remote):
        r.pop("seconds")
    assert results_json(remote) == results_json(local)
    assert [len(a["runs"]) for a in remote["arms"]] == [2, 2, 2]


def _digits(root: Path) -> Path:
    """sklearn's 8x8 digits, 10 per class, as gray PNGs."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    seen = {k: 0 for k in range(10)}
    for img, y in zip(d.images, d.target):
        if seen[y] < 10:
            (root / str(y)).mkdir(parents=True, exist_ok=True)
            Image.fromarray((img * 255 / 16).round().astype(np.uint8), "L").save(root / str(y) / f"{seen[y]}.png")
            seen[y] += 1
    return root
