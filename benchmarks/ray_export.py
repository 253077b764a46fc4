"""What the Ray engine costs on one machine, and a paper estimate of what N nodes would give.

    python benchmarks/ray_export.py                   # 2,000 images x 2 copies, 2 CPUs
    python benchmarks/ray_export.py --images 400      # quicker
    python benchmarks/ray_export.py --json ray.json   # every number

Needs ``pip install -e '.[ray]'`` and scikit-image. Ray Data's ``map_batches`` is timed too when
``ray.data`` imports (it needs pyarrow and pandas: ``pip install 'ray[data]'``); otherwise that row is
skipped.

The images are 128x128 crops of ``skimage.data`` pictures (four classes, PNG), made once into a temporary
folder. Every run writes into a fresh folder; the trees are compared with the local engine's byte for byte.

Runs, in rounds (``--repeat``, interleaved, so a change in the machine's load hits every kind alike):

- ``local -j 1``: one warm process: the work itself, per item;
- ``local -j 2``: the process pool as a user runs it (forkserver, torch preloaded, started by the job);
- ``ray, cold``: ``--engine ray`` as a user runs it: the job starts Ray on 2 CPUs, its workers start and
  import torch inside the run, the job stops Ray at the end;
- ``ray, warm``: a Ray already running with warm workers (what every job after the first sees on a cluster);
- ``ray, warm, 1 item per task``: the same without chunking: the per-task scheduling cost;
- ``Ray Data map_batches``: the same ``ItemWorker`` over batches of 16, as plain tasks (worker cached per
  process, like the engine) and as an actor pool of 2 (fresh actor processes), results streamed back to
  the driver, which journals them as the export does (no manifest or final files: a lower bound).

Each run is timed in wall seconds (best of the rounds) and in CPU seconds of every process involved (this
one, the pool's or Ray's workers, Ray's own services; median of the rounds), which depends far less on
what else the machine does. The driver's own CPU per item (reading results, the journal, progress) is
what one driver can feed at most, whatever the cluster size: the N-node estimate is capped by it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RECIPE = {"seed": 0, "steps": [
    {"op": "hflip", "p": 0.5},
    {"op": "rotate", "degrees": 15},
    {"op": "color_jitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3},
    {"op": "random_resized_crop", "size": 112, "scale": [0.25, 1.0], "ratio": [0.75, 4 / 3]},
    {"op": "gaussian_noise", "std": 0.05},
    {"op": "cutout", "holes": 1, "side": [0.1, 0.3]},
]}


def make_images(root: Path, n: int, side: int = 128) -> Path:
    """``n`` crops of ``side`` x ``side`` from four skimage pictures (one class each), seeded."""
    from PIL import Image
    from skimage import data

    sources = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
               "rocket": data.rocket()}
    rng = np.random.default_rng(0)
    names = list(sources)
    for k in range(n):
        cls = names[k % len(names)]
        img = sources[cls]
        y = int(rng.integers(0, img.shape[0] - side))
        x = int(rng.integers(0, img.shape[1] - side))
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img[y:y + side, x:x + side])).save(root / cls / f"{k:05d}.png")
    return root


def tree_digest(root: Path, images_only: bool = False) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and (not images_only or p.suffix == ".png"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


class CpuMeter:
    """CPU seconds used by this process and every process below it (pool workers, Ray's workers and its
    own services) while a run lasts: sampled every 0.1 s, so processes that come and go are counted too.
    Unlike wall time, this hardly depends on what else the machine is doing."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.base = self.sample()
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def sample(self) -> dict[int, float]:
        out = {}
        for p in [self.me, *self.me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except self.psutil.Error:
                pass
        return out

    def loop(self):
        while not self.stop.wait(0.1):
            self.seen.update(self.sample())

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        self.seen.update(self.sample())
        return sum(t - self.base.get(pid, 0.0) for pid, t in self.seen.items())


def timed_export(src, out, **kw) -> tuple[float, float, object, float]:
    """(wall seconds, CPU seconds of this process and its descendants, summary, CPU seconds of this process
    alone) of one export."""
    from augstudio.core.base.jobs import run_job
    from augstudio.core.workflows.export import export_job

    shutil.rmtree(out, ignore_errors=True)
    meter = CpuMeter()
    t0, c0 = time.perf_counter(), time.process_time()
    s = run_job(export_job(src, RECIPE, out, copies=COPIES, **kw))
    return time.perf_counter() - t0, meter.done(), s, time.process_time() - c0


def warm_workers(src: Path, work: Path, cpus: int) -> None:
    """Start every worker of the running Ray and take it through a first small export (imports, first
    calls of the kernels), as the workers of a long-running cluster are."""
    import ray

    @ray.remote(num_cpus=1)
    def start(_):
        import augstudio.core.workflows.export_items  # noqa: F401

        time.sleep(0.5)  # hold the slot so each task lands on its own worker
        return os.getpid()

    ray.get([start.remote(i) for i in range(cpus)])
    small = work / "warm_src"
    if not small.exists():
        for cls in sorted(p.name for p in src.iterdir()):
            (small / cls).mkdir(parents=True)
            for p in sorted((src / cls).iterdir())[:8]:
                shutil.copy(p, small / cls / p.name)
    timed_export(small, work / "warm_out", engine="ray")


def _item_tasks(src: Path, out: Path):
    from augstudio.core.io.dataset import scan
    from augstudio.core.workflows.export import plan_outputs
    from augstudio.core.workflows.export_items import ItemTask

    ds = scan(src, check_files=False)
    plan = plan_outputs(ds.items, COPIES, "png")
    return [ItemTask(str(ds.root), str(out.resolve()), i, it.path, it.class_name, plan[it.path])
            for i, it in enumerate(ds.items)]


WORKER_ARGS = ({"seed": RECIPE["seed"], "steps": RECIPE["steps"]}, 1, None, "cpu", True)


def _batch_fn(batch, tasks, key):
    """Ray Data task variant: the ItemWorker is cached per worker process (as the tasks engine does)."""
    from augstudio.core.workflows import ray_engine
    from augstudio.core.workflows.export_items import ItemWorker

    worker = ray_engine._WORKERS.get(key)
    if worker is None:
        worker = ray_engine._WORKERS[key] = ItemWorker(*WORKER_ARGS)
    return {"res": np.array([json.dumps(worker.process(tasks[int(i)])) for i in batch["i"]], dtype=object)}


def ray_data_export(src: Path, out: Path, actors: bool, cpus: int) -> tuple[float, float, None, float]:
    """The same per-item work through Ray Data ``map_batches`` (batches of 16), results streamed back to the
    driver, which journals them as the export does. ``actors``: an actor pool of ItemWorkers (fresh
    processes); else plain tasks with the worker cached per process."""
    import ray

    from augstudio.core.workflows.export_items import ItemWorker

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    meter = CpuMeter()
    t0, c0 = time.perf_counter(), time.process_time()
    tasks = _item_tasks(src, out)

    class Batch:
        def __init__(self, task_list):
            self.tasks = task_list
            self.worker = ItemWorker(*WORKER_ARGS)

        def __call__(self, batch):
            return {"res": np.array([json.dumps(self.worker.process(self.tasks[int(i)])) for i in batch["i"]],
                                    dtype=object)}

    dset = ray.data.from_items([{"i": i} for i in range(len(tasks))], override_num_blocks=64)
    if actors:
        dset = dset.map_batches(Batch, fn_constructor_args=(tasks,), batch_size=16, concurrency=cpus,
                                num_cpus=1, batch_format="numpy")
    else:
        dset = dset.map_batches(_batch_fn, fn_kwargs={"tasks": tasks, "key": str(out)}, batch_size=16,
                                num_cpus=1, batch_format="numpy")
    with open(out / "manifest.partial.jsonl", "w") as journal:
        for row in dset.iter_rows():
            journal.write(row["res"] + "\n")
    return time.perf_counter() - t0, meter.done(), None, time.process_time() - c0


COPIES = 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the runs, interleaved (default 2)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", default=None, help="make the images here and keep them (default: a temp folder)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    import ray

    work = Path(args.keep or tempfile.mkdtemp(prefix="augstudio-raybench-"))
    src = work / "src"
    if not src.exists():
        make_images(src, args.images)
    n = args.images
    res = {"images": n, "copies": COPIES, "cpus": args.cpus, "side": 128, "repeat": args.repeat,
           "load_average_before": os.getloadavg(), "runs": {}}
    runs: dict[str, list] = {}

    def record(name, out, result, check=None):
        wall, cpu, _, driver = result
        runs.setdefault(name, []).append((wall, cpu, driver))
        if check is not None:
            assert tree_digest(out, images_only=check == "images") == check_ref[check], f"{name} differs"
        print(f"  {name:34s} {wall:7.2f} s wall  {1e3 * cpu / n:6.1f} ms CPU per item", flush=True)

    # phase 1, no Ray running: the local engine, and --engine ray as a user runs it (the job starts Ray)
    print("phase 1: local engine; ray started by the job", flush=True)
    timed_export(src, work / "local1", workers=1)  # first calls in this process (imports, kernels)
    check_ref = {"tree": tree_digest(work / "local1"), "images": tree_digest(work / "local1", images_only=True)}
    for _ in range(args.repeat):
        record("local -j 1", work / "local1", timed_export(src, work / "local1", workers=1), "tree")
        record(f"local -j {args.cpus}", work / "local2",
               timed_export(src, work / "local2", workers=args.cpus), "tree")
        record("ray, cold (the job starts Ray)", work / "ray_cold",
               timed_export(src, work / "ray_cold", engine="ray", workers=args.cpus), "tree")

    # phase 2, a Ray already running with warm workers (what every job after the first sees on a cluster)
    print("phase 2: a Ray running with warm workers", flush=True)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="error")
    res["ray_init_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    warm_workers(src, work, args.cpus)
    res["ray_worker_warmup_s"] = round(time.perf_counter() - t0, 2)
    print(f"  (ray.init {res['ray_init_s']} s; workers started and through a first small export in "
          f"{res['ray_worker_warmup_s']} s)", flush=True)
    from augstudio.core.workflows import ray_engine

    original = ray_engine.ray_results

    def one_per_task(*a, **k):
        k["chunk"] = 1
        return original(*a, **k)

    try:
        import ray.data  # noqa: F401
        have_data = True
    except ImportError:
        have_data = False
    for _ in range(args.repeat):
        record("local -j 1", work / "local1", timed_export(src, work / "local1", workers=1), "tree")
        record("ray, warm", work / "ray_warm", timed_export(src, work / "ray_warm", engine="ray"), "tree")
        ray_engine.ray_results = one_per_task
        try:
            record("ray, warm, 1 item per task", work / "ray_chunk1",
                   timed_export(src, work / "ray_chunk1", engine="ray"), "tree")
        finally:
            ray_engine.ray_results = original
        if have_data:
            for actors, name in ((False, "Ray Data map_batches (tasks)"), (True, "Ray Data map_batches (actors)")):
                out = work / f"ray_data_{int(actors)}"
                record(name, out, ray_data_export(src, out, actors, args.cpus), "images")
    ray.shutdown()
    res["load_average_after"] = os.getloadavg()

    # -- table -------------------------------------------------------------------------------------------
    outputs = n * COPIES
    print(f"\n{n} images x {COPIES} copies, {args.cpus} CPUs; best wall of {args.repeat}, median CPU")
    print("| run | wall s (best) | outputs/s | CPU ms per item (all processes) |")
    print("|---|---:|---:|---:|")
    for name, vals in runs.items():
        wall = min(v[0] for v in vals)
        cpu = statistics.median(v[1] for v in vals) / n
        res["runs"][name] = {"wall_s": [round(v[0], 2) for v in vals], "cpu_s_per_item": cpu,
                             "driver_cpu_s_per_item": statistics.median(v[2] for v in vals) / n}
        print(f"| {name} | {wall:.2f} | {outputs / wall:.0f} | {1e3 * cpu:.1f} |")

    # -- the overhead and the N-node estimate ------------------------------------------------------------
    cpu_local = res["runs"]["local -j 1"]["cpu_s_per_item"]  # the work itself, in one warm process
    cpu_ray = res["runs"]["ray, warm"]["cpu_s_per_item"]
    cpu_one = res["runs"]["ray, warm, 1 item per task"]["cpu_s_per_item"]
    cold = min(v[0] for v in runs["ray, cold (the job starts Ray)"])
    local = min(v[0] for v in runs[f"local -j {args.cpus}"])
    startup = res["ray_init_s"] + res["ray_worker_warmup_s"]
    res.update({"cpu_local_s_per_item": cpu_local, "cpu_ray_s_per_item": cpu_ray,
                "ray_overhead_cpu_s_per_item": cpu_ray - cpu_local, "one_item_tasks_extra_cpu_s": cpu_one - cpu_ray,
                "ray_startup_s": startup, "cold_minus_local_s": cold - local})
    print(f"\nRay overhead: {1e3 * (cpu_ray - cpu_local):+.2f} ms CPU per item over one warm local process "
          f"({100 * (cpu_ray - cpu_local) / cpu_local:+.0f}%); one item per task: {1e3 * (cpu_one - cpu_ray):+.2f} ms "
          f"more; a cold start (Ray and its workers) {startup:.1f} s; cold run minus local run {cold - local:+.1f} s")
    # paper estimate: every CPU of N nodes busy at the Ray per-item cost, capped by the one driver, which
    # reads each result and journals it (its CPU per item measured on the warm run's driver alone)
    d = res["runs"]["ray, warm"]["driver_cpu_s_per_item"]
    print(f"driver (the process that runs the command): {1e3 * d:.2f} ms CPU per item -> at most "
          f"{1 / d:,.0f} items/s whatever the cluster")
    print("\n| nodes x CPUs | items/s, compute bound | driver bound | ImageNet train (1.28M images) x 2 copies |")
    print("|---|---:|---:|---:|")
    est = []
    for nodes, cpus in ((1, args.cpus), (4, 16), (16, 16), (64, 16)):
        compute = nodes * cpus / cpu_ray
        rate = min(compute, 1 / d)
        hours = (1_281_167 / rate + startup) / 3600
        est.append({"nodes": nodes, "cpus": cpus, "compute_items_per_s": compute, "items_per_s": rate,
                    "imagenet_hours": hours})
        print(f"| {nodes} x {cpus} | {compute:,.0f} | {1 / d:,.0f} | {60 * hours:.0f} min |")
    res["estimate"] = est
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
