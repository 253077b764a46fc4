"""The Ray engine: the independent units of a job (export items or shards, evaluate runs) as Ray tasks.

``ray_results`` is the cluster counterpart of ``pool.ordered_results``: the same worker class
(``worker = make(*make_args)``, then ``worker.process(unit)``) runs inside Ray worker processes, on the
cluster at ``address`` or on a Ray started on this machine. Every result is a pure function of its unit, so
where a unit runs changes no byte; results come back as they finish (callers that need an order sort them).

How it maps onto Ray:

- one Ray task runs a *chunk* of consecutive units; the chunk size adapts so a task takes about
  ``TARGET_TASK_S`` (one-item tasks cost about a millisecond of scheduling each, which is comparable to a
  small image's whole work) while the last chunks shrink, so the cluster stays busy to the end;
- the worker object is made once per Ray worker process and job (``make`` and its arguments go into the
  object store once and are fetched by a worker only when it first sees the job);
- at most ``2 x (parallel slots)`` tasks are in flight, so a cancel waits only for those, and a job of a
  million units never floods the scheduler; the slot count is read again every ``RESCAN_S`` (autoscaling);
- a worker process that dies (killed, out of memory, its node lost) has its task retried by Ray
  (``max_retries``); every write a task makes is atomic, and the job removes the temporary files that a
  killed task left once the job ends. After the retries an error says to run the command again (it
  resumes);
- cancel (``CancelToken``, Ctrl-C, the generator closed): ``shutdown`` cancels the tasks in flight
  (``ray.cancel(force=True)``: queued tasks never start, running ones lose their worker process) and waits
  for them to end; the job then removes the temporary files of writes cut short (finished outputs stay,
  the re-run resumes);
- tasks ask Ray for ``cpus`` CPUs and ``gpus`` GPUs each (``--device cuda`` asks for one GPU per task).

Ray is optional (``pip install 'augstudio[ray]'``); it is imported only here, only when used.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable

from augstudio.core.base.errors import AugstudioError, OutputError, ParamError

TARGET_TASK_S = 0.25  # a task's wished-for length: long against Ray's per-task cost, short for retries
MAX_CHUNK = 64
RESCAN_S = 10.0
MAX_RETRIES = 3
CANCEL_WAIT_S = 60.0
KILL_GRACE_S = 0.5

_WORKERS: dict[str, object] = {}  # in a Ray worker process: the worker object of the current job


def require_ray():
    try:
        import ray  # deferred: ray (optional extra)
    except ImportError:
        raise ParamError("--engine ray needs Ray, which is not installed: pip install 'augstudio[ray]' "
                         "(on every machine of the cluster, with the same augstudio)") from None
    return ray


class RaySession:
    """Connect to the cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; without one, the
    ``RAY_ADDRESS`` environment variable) or start a Ray on this machine; use a Ray already initialised in
    this process as it is. Only a Ray this session started is shut down when it ends."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.started = False

    def __enter__(self) -> RaySession:
        ray = require_ray()
        if ray.is_initialized():
            return self
        kw = {"include_dashboard": False, "logging_level": logging.WARNING}
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(address="local", num_cpus=self.num_cpus, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise ParamError(f"cannot start or reach {where}: {e}. Check --address (e.g. auto, HOST:6379 or "
                             "ray://HOST:10001), or leave it out to start Ray on this machine.") from None
        self.started = True
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.started:
            self.started = False
            require_ray().shutdown()

    @staticmethod
    def resources() -> dict:
        return dict(require_ray().cluster_resources())


def _run_chunk(key: str, box: list, units: list) -> dict:
    """Inside a Ray worker: ``worker.process`` for each unit of the chunk, the worker made once per job."""
    import ray  # deferred: ray (runs only inside a Ray worker)

    worker = _WORKERS.get(key)
    if worker is None:
        make, args = ray.get(box[0])
        _WORKERS.clear()  # a worker process serves one job at a time; do not keep an old job's worker
        worker = _WORKERS[key] = make(*args)
    t0 = time.perf_counter()
    results = [worker.process(u) for u in units]
    return {"results": results, "seconds": time.perf_counter() - t0,
            "node": ray.get_runtime_context().get_node_id()}


def _slots(cpus: float, gpus: float) -> int:
    res = RaySession.resources()
    n = int(res.get("CPU", 0) // cpus) if cpus else 1 << 30
    if gpus:
        n = min(n, int(res.get("GPU", 0) // gpus))
    return max(1, n)


class RayJob:
    """The tasks of one job in flight; ``shutdown`` (the process pool's name, so callers treat both alike)
    cancels them and waits until they have ended."""

    def __init__(self):
        self.pending: dict = {}
        self.nodes: dict[str, int] = {}  # node id -> units run there
        self.tasks = 0

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        if not self.pending:
            return
        ray = require_ray()
        refs = list(self.pending)
        self.pending.clear()
        if cancel_futures:
            # force: the worker process is killed, not interrupted. An interrupt (KeyboardInterrupt inside the
            # task) could land in the middle of an import or of torch and leave a process that Ray reuses
            # half-initialised; a killed one is replaced. A write it had begun leaves only a temporary file,
            # which the job removes after this wait.
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished, or its worker is gone
                    pass
        if wait:  # wait until every task has ended, so none writes after the job has cleaned up
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
            if cancel_futures:
                time.sleep(KILL_GRACE_S)  # the kill of a cancelled worker lands a moment after its task ends


def ray_results(units: list, make: Callable, make_args: tuple, holder: list, *, cpus: float = 1,
                gpus: float = 0, chunk: int | None = None, max_retries: int = MAX_RETRIES):
    """``make(*make_args).process(unit)`` for every unit, in Ray tasks, yielded as they finish.

    Needs a connected Ray (``RaySession``). ``chunk``: units per task (None: adaptive). ``holder`` receives
    the ``RayJob``, whose ``shutdown`` the caller runs whatever happens to the generator."""
    ray = require_ray()
    if not units:
        return
    job = RayJob()
    holder.append(job)
    remote = ray.remote(_run_chunk).options(num_cpus=cpus, num_gpus=gpus, max_retries=max_retries,
                                            retry_exceptions=False, scheduling_strategy="SPREAD")
    key = uuid.uuid4().hex
    box = [ray.put((make, make_args))]  # in a list: Ray passes the reference, the worker fetches it once
    slots, scanned = _slots(cpus, gpus), time.monotonic()
    todo = deque(units)
    per_unit: float | None = None  # seconds per unit, measured

    def next_chunk() -> list:
        if chunk is not None:
            n = chunk
        elif per_unit is None:
            n = 1  # the first tasks measure what a unit costs
        else:
            n = round(TARGET_TASK_S / max(per_unit, 1e-6))
            n = min(n, -(-len(todo) // (2 * slots)))  # the last chunks shrink: every slot busy to the end
        n = max(1, min(n, MAX_CHUNK, len(todo)))
        return [todo.popleft() for _ in range(n)]

    def submit() -> None:
        while todo and len(job.pending) < 2 * slots:
            part = next_chunk()
            job.pending[remote.remote(key, box, part)] = len(part)
            job.tasks += 1

    submit()
    while job.pending:
        ready, rest = ray.wait(list(job.pending), num_returns=1, timeout=1.0)
        if not ready:
            continue
        if rest:  # every other result already there, in one call (the driver's cost grows with the cluster)
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        outs = []
        for ref in ready:
            n = job.pending.pop(ref)
            out = _get(ray, ref, n, max_retries)
            job.nodes[out["node"]] = job.nodes.get(out["node"], 0) + n
            s = out["seconds"] / max(1, n)
            per_unit = s if per_unit is None else 0.8 * per_unit + 0.2 * s
            outs.append(out)
        if time.monotonic() - scanned > RESCAN_S:
            slots, scanned = _slots(cpus, gpus), time.monotonic()
        submit()  # the freed slots get work before this generator hands the results on
        for out in outs:
            yield from out["results"]


def _get(ray, ref, n: int, max_retries: int) -> dict:
    """One finished task's output; an error raised by augstudio inside it as itself, a dead worker as an
    OutputError that says how to go on."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # our code raised inside the task
        cause = getattr(e, "cause", None)
        if isinstance(cause, AugstudioError):
            raise cause from None
        raise
    except ray.exceptions.RayError as e:  # the worker or its node died, after Ray's retries
        raise OutputError(f"a Ray worker died {max_retries + 1} times on the same {n} item(s) ({type(e).__name__}: "
                          f"killed, out of memory, or its node was lost); finished outputs are kept. Run the "
                          "same command again to resume, with more memory per task if it was short.") from None


def gpus_for(device: str | None, resources: dict) -> tuple[str, float]:
    """What a task asks Ray for, and the device it runs on, for a user's ``--device``: ``cuda`` (or
    ``cuda:N``: inside a task the GPU Ray gives is the only one visible) asks for one GPU; ``auto``/None
    asks for one when the cluster has GPUs; ``cpu`` never does."""
    kind = str(device or "auto").split(":")[0]
    has_gpu = resources.get("GPU", 0) > 0
    if kind == "cuda":
        if not has_gpu:
            raise ParamError(f"--device {device}: the Ray cluster has no GPU (resources: "
                             f"{', '.join(f'{k} {v:g}' for k, v in sorted(resources.items()) if k in ('CPU', 'GPU'))}); "
                             "use --device cpu, or add GPU nodes")
        return "cuda", 1.0
    if kind == "auto":
        return ("cuda", 1.0) if has_gpu else ("cpu", 0.0)
    if kind == "mps":
        raise ParamError("--device mps cannot be used with --engine ray; use cpu or cuda")
    return kind, 0.0


__all__ = ["RaySession", "RayJob", "ray_results", "require_ray", "gpus_for"]
