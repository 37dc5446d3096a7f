"""RayExecutor: the same plan on Ray Data, with actor pools sized from declared resources.

Each segment's shard tasks become a Ray Dataset of task rows; ``map_batches`` sends them, one
shard per call, to a pool of actors that each hold one :class:`ShardWorker` (so stage
``setup()`` — model loading — happens once per actor). Barrier reduces run on the driver
between segments. Because the actors run exactly the code the LocalExecutor runs and outputs
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
from pipeline.spec import PipelineSpec


class _RayShardActor:
    def __init__(self, spec_data: dict[str, Any], root: str):
        self.worker = ShardWorker(spec_data, root)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = []
        for seg, shard, path, last in zip(batch["seg"], batch["shard"], batch["path"], batch["last"], strict=True):
            marker = self.worker.run(int(seg), int(shard), str(path), bool(last))
            out.append(json.dumps(marker))
        return {"marker": out}


class RayExecutor(BaseExecutor):
    def __init__(self, address: str = "auto", progress: bool = True, num_cpus: int | None = None):
        super().__init__(progress)
        self.address = address
        self.num_cpus = num_cpus
        self._started = False

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if self.address and self.address != "auto":
            ray.init(address=self.address, **kw)
            return
        try:
            ray.init(address="auto", **kw)  # join a running local cluster if there is one
        except (ConnectionError, RuntimeError):
            ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kw)
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
        stages = seg.all_stages() or []
        want_cpus = max([st.resources.cpus for st in stages] + [1.0])
        want_gpus = max([st.resources.gpus for st in stages] + [0.0])
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        pool = max(1, min(len(tasks), int(cluster_cpus // want_cpus)))
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
        )
        for row in out.iter_rows():
            yield json.loads(row["marker"])
