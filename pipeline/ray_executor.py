"""RayExecutor: the same plan on Ray Data, with actor pools sized from declared resources.

Each segment's shard tasks become a Ray Dataset of task rows; ``map_batches`` sends them, one
shard per call, to a pool of actors that each hold one :class:`ShardWorker` (so stage
``setup()`` — model loading — happens once per actor). Barrier reduces are plans of
partitioned tasks (:mod:`pipeline.reduce`) that run as Ray tasks (0.5 CPU each, spread over
the nodes) between segments; the tasks do their own I/O through :mod:`pipeline.storage`, so
with outputs on shared storage (``s3://``, ``gs://``…) they run on any node; the driver sends
task descriptors and merges small results, never documents. Because the actors run exactly the code the LocalExecutor runs and outputs
are named from (segment, shard), both executors write the same files and the same manifest.

On small machines Ray Data can starve its own read tasks when actors hold every CPU (seen on
2 cores), so actors get fractional CPUs: the pool never claims more than ``cluster CPUs - 0.5``.
We never call ``ray.shutdown()`` on a cluster we did not start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.executor import BaseExecutor, ShardWorker
from pipeline.plan import make_plan
from pipeline.reduce import ReduceTask, run_traced
from pipeline.spec import PipelineSpec, SpecError


class _RayShardActor:
    def __init__(self, spec_data: dict[str, Any], root: str):
        import ray

        self.worker = ShardWorker(spec_data, root)
        self.actor_id = ray.get_runtime_context().get_actor_id() or ""

    def __del__(self) -> None:
        # Ray Data drops the UDF when it shuts an actor down gracefully: stages' teardown()
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.teardown()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = []
        for seg, shard, path, last in zip(batch["seg"], batch["shard"], batch["path"], batch["last"], strict=True):
            marker = self.worker.run(int(seg), int(shard), str(path), bool(last))
            out.append(json.dumps(marker))
        return {"marker": out, "actor": [self.actor_id] * len(out)}


def _wait_for_pid(pid: int, timeout_s: float) -> bool:
    """On an actor's node: wait until its worker process has exited (False if still there)."""
    import time

    deadline = time.monotonic() + timeout_s
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_for_actor_exit(actor_ids: set[str], timeout_s: float = 30.0) -> None:
    """Wait until a finished segment's actor processes have exited. Ray Data only drops its
    references when the dataset is done; each actor then shuts down gracefully on its own time,
    and its ``__del__`` runs the stages' ``teardown()``. Ray's actor table says DEAD as soon as
    the references are gone, while the process is still tearing down, so the wait is on the
    process itself: one 0-CPU task on each actor's node. Without it the next segment (or a
    ``ray.shutdown()`` right after the run) could cut a teardown off. Bounded: a process still
    there after ``timeout_s`` is left to Ray."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        from ray._private.state import actors as actor_info  # the GCS actor table; no dashboard needed
    except ImportError:  # pragma: no cover - another Ray layout: nothing to wait with
        return
    waits = []
    wait_pid = ray.remote(num_cpus=0, max_retries=0)(_wait_for_pid)
    for a in sorted(x for x in actor_ids if x):
        try:
            info = actor_info(actor_id=a) or {}
            pid, node = int(info.get("Pid") or 0), (info.get("Address") or {}).get("NodeID")
        except Exception:  # noqa: BLE001 - advisory: never fail a finished segment over it
            continue
        if pid and node:
            where = NodeAffinitySchedulingStrategy(node, soft=False)
            waits.append(wait_pid.options(scheduling_strategy=where).remote(pid, timeout_s))
    if waits:
        try:
            ray.get(waits, timeout=timeout_s + 10)
        except Exception:  # noqa: BLE001 - a node gone meanwhile: its actors are gone too
            pass


def _run_reduce_task(task: ReduceTask) -> tuple[Any, str]:
    return run_traced(task)


CODE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding pipeline/, synth/, ...


def _code_env() -> dict[str, Any]:
    """Ray's workers import this driver's code tree. Ray puts only the driver's script folder and
    working directory on their ``sys.path``; a driver started elsewhere (the service's job worker:
    ``python -m pipeline.service.worker`` in an empty folder) would leave them importing whatever
    ``pipeline`` the environment has installed — another checkout, or none (``No module named
    'synth'``). The code root goes first on their ``PYTHONPATH`` (a path that does not exist on a
    node is skipped by Python; installed images keep their own copy)."""
    parts = [CODE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != CODE_ROOT]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(parts)}}


class RayExecutor(BaseExecutor):
    def __init__(self, address: str = "auto", progress: bool = True, num_cpus: int | None = None,
                 partitions: int | None = None):
        super().__init__(progress, partitions)
        self.address = address
        self.num_cpus = num_cpus
        self._started = False

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True,
                              "runtime_env": _code_env()}
        address = self.address if self.address and self.address != "auto" else os.environ.get("RAY_ADDRESS") or "auto"
        if address != "auto":
            _require_reachable(address, "--ray")
            ray.init(address=address, **kw)
            return
        live = _live_local_cluster()
        if live is not None:
            ray.init(address=live, **kw)  # join the local cluster `ray start` left running
            return
        # "local" makes Ray start a fresh instance instead of retrying a dead cluster's address
        ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1, **kw)
        self._started = True

    def run(self, spec: PipelineSpec) -> dict[str, Any]:
        self._connect()
        try:
            return super().run(spec)
        finally:
            if self._started:
                import ray

                ray.shutdown()

    def _run_tasks(self, spec: PipelineSpec, root: Path, tasks: list[tuple[int, int, str, bool]]) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        import ray
        from ray.data import ActorPoolStrategy

        seg_idx = tasks[0][0]
        seg = make_plan(spec.build_stages()).segments[seg_idx]
        # the actors run the segment's stages and the map of the barrier that ends it
        stages = seg.all_stages() + ([seg.barrier_out] if seg.barrier_out else [])
        want_cpus = max([st.resources.cpus for st in stages] + [1.0])
        want_gpus = max([st.resources.gpus for st in stages] + [0.0])
        want_mem = max([st.resources.memory_gb for st in stages] + [0.0]) * 2**30
        resources = ray.cluster_resources()
        cluster_cpus = float(resources.get("CPU", 1.0))
        cluster_mem = float(resources.get("memory", 0.0))
        if want_mem and cluster_mem and want_mem > cluster_mem:
            raise SpecError(
                f"segment {seg_idx}: a stage declares Resources.memory_gb = {want_mem / 2**30:g} GB per worker, but the "
                f"Ray cluster has {cluster_mem / 2**30:.1f} GB of `memory` resource in all; add nodes or lower it"
            )
        pool = max(1, min(len(tasks), int(cluster_cpus // want_cpus)))
        if want_mem and cluster_mem:
            pool = max(1, min(pool, int(cluster_mem // want_mem)))
        actor_cpus = min(want_cpus, max(0.25, (cluster_cpus - 0.5) / pool))
        rows = [{"seg": s, "shard": i, "path": p, "last": last} for s, i, p, last in tasks]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = self.progress
        out = ds.map_batches(
            _RayShardActor,
            fn_constructor_args=(spec.model_dump(mode="json"), str(root)),
            batch_size=1,
            compute=ActorPoolStrategy(size=pool),
            num_cpus=actor_cpus,
            num_gpus=want_gpus or None,
            memory=int(want_mem) or None,  # Ray schedules actors only where this memory is free
        )
        actors: set[str] = set()
        for row in out.iter_rows():
            actors.add(row["actor"])
            yield json.loads(row["marker"])
        _wait_for_actor_exit(actors)

    def _reduce_partitions(self, spec: PipelineSpec) -> int:
        if self.partitions:
            return self.partitions
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1.0)))

    def _run_reduce_tasks(self, spec: PipelineSpec, root: Any, tasks: list[ReduceTask]) -> tuple[list[Any], str]:
        import ray

        # any node: tasks read and write locations (shared storage), not the driver's disk;
        # SPREAD puts a step's tasks on different nodes (their I/O and memory add up there)
        remote = ray.remote(num_cpus=0.5, max_retries=3, scheduling_strategy="SPREAD")(_run_reduce_task)
        return list(ray.get([remote.remote(t) for t in tasks])), "ray"

def _tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _host_port(address: str) -> tuple[str, int] | None:
    addr = address.split("://", 1)[-1].rstrip("/")
    host, _, port = addr.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def _require_reachable(address: str, flag: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a cluster address."""
    hp = _host_port(address)
    if hp is not None and not _tcp_reachable(*hp):
        raise SpecError(
            f"{flag} {address}: no Ray cluster answers at {hp[0]}:{hp[1]}; start one with "
            "`ray start --head` (or check the address), or use --ray auto for a local cluster"
        )


def _live_local_cluster() -> str | None:
    """The address of the local cluster ``ray start`` last recorded, if it is still alive.

    Ray keeps that address in ``<temp>/ray/ray_current_cluster`` after the cluster dies; given
    it, ``ray.init("auto")`` retries the dead address for minutes. A stale file is ignored (and
    reported) so that ``--ray auto`` starts a fresh local cluster at once.
    """
    import sys

    from ray._private.services import find_bootstrap_address
    from ray._private.utils import get_ray_address_file

    address = find_bootstrap_address(None)
    if not address:
        return None
    hp = _host_port(address)
    if hp is not None and _tcp_reachable(*hp):
        return address
    print(f"assay: ignoring a stale Ray cluster address {address} in {get_ray_address_file(None)} "
          "(nothing answers there: that cluster died); starting a fresh local Ray cluster", file=sys.stderr)
    return None
