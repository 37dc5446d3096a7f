"""``assay bench remote_reduce``: the partitioned barriers with the output on a local disk vs on S3.

The same corpus and spec as ``assay bench scale`` (``dedup.exact`` -> ``dedup.minhash`` ->
``dedup.softdedup`` -> ``filter.threshold`` percentile), run with ``workers`` / ``partitions``
twice: output in a local folder, then on S3 (moto's standalone server on loopback, from
``.venv-moto``; pyarrow's S3 client reaches it through ``AWS_ENDPOINT_URL`` only). Reported per
barrier, from the reduce markers: the reduce's wall time, how many processes ran its tasks and
whether the driver was one of them (reduce tasks do their own I/O through ``pipeline.storage``:
on S3 they read artifacts and write scratch and state there, nothing is staged on the driver).
Both runs must give the same ``snapshot_id``.

``--task-docs N,M,...`` measures instead the **memory of each reduce task** with its artifacts,
scratch and state on S3 and, in the same run, in a local folder: the three dedup barriers'
reduce plans (exact, MinHash, SoftDedup) over the map artifacts of N documents, 1 and 4
partitions, every task in its own child of a fork server that preloads what the executor's pool
preloads; a child first touches its store (the S3 client's set-up is per process, not per
document), resets its peak (``/proc/self/clear_refs``), runs the task and reports ``VmHWM``
minus its RSS before the task. Reported per barrier and partition count: the largest task's MB,
MB per million documents of its partition, and the growth between the sizes.

moto is a Python server on the same cores: S3 figures measure moto's cost too, not a real
object store's; compare them with the local run of the same command, not across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
BARRIERS = ("dedup.exact", "dedup.minhash", "dedup.softdedup", "filter.threshold")


def _run(inp: Path, out: str, workers: int, partitions: int) -> dict[str, Any]:
    from bench.scale import STAGES
    from pipeline import storage
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    spec = PipelineSpec.from_dict({"name": "bench-remote-reduce", "input": {"paths": [str(inp)]},
                                   "output": {"dir": out}, "stages": STAGES})
    t0 = time.perf_counter()
    m = run_spec(spec, progress=False, workers=workers, partitions=partitions)
    wall = time.perf_counter() - t0
    reduces = {}
    for b in BARRIERS:
        mk = storage.read_json(f"{out}/_work/markers/reduce-{b}.json")
        procs = mk.get("task_processes")  # absent in markers of code before the storage-I/O reduces
        reduces[b] = {"wall_s": round(mk["wall_s"], 3), "ran": mk["ran"], "steps": mk["steps"],
                      "task_processes": len(procs) if procs is not None else None,
                      "driver_ran_tasks": mk["driver"] in procs if procs is not None else None}
    return {"wall_s": round(wall, 2), "snapshot_id": m["snapshot_id"], "docs_out": m["totals"]["rows"],
            "objects": len(storage.list_files(out)), "reduces": reduces,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def _status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def _measured_task(task: Any, touch: str, conn: Any) -> None:
    """In a fresh fork-server child: touch the store, reset the peak, run ``task``, send (result, MB)."""
    from pipeline import storage

    try:
        storage.list_files(touch)  # the store's client is made once per process: not the task's memory
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            pass
        base = _status_mb("VmRSS")
        res = task()
        conn.send((True, res, _status_mb("VmHWM") - base))
    except BaseException as e:  # noqa: BLE001 - re-raised in the parent
        conn.send((False, repr(e), 0.0))
    finally:
        conn.close()


def _child_runner(ctx: Any, touch: str, peaks: list[tuple[str, float]]):  # type: ignore[no-untyped-def]
    def run(tasks):  # type: ignore[no-untyped-def]
        out = []
        for t in tasks:  # one at a time: each task's peak is its own
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_measured_task, args=(t, touch, send))
            proc.start()
            send.close()
            ok, res, mb = recv.recv()
            proc.join()
            if not ok:
                raise RuntimeError(f"reduce task {t.fn.__name__} failed: {res}")
            peaks.append((t.fn.__name__, mb))
            out.append(res)
        return out

    return run


def task_memory(data: Path, sizes: list[int], tmp: Path, s3_root: str, parts_list: tuple[int, ...] = (1, 4),
                log: Any = print) -> dict[str, Any]:
    """Largest reduce task's own memory per barrier, partitions and store (local folder, S3)."""
    import multiprocessing

    import pyarrow as pa

    from bench.scale import STAGES, build_corpus
    from pipeline import storage
    from pipeline.preload import modules_for
    from pipeline.reduce import ReduceContext, drive, write_table
    from pipeline.registry import get_stage_class
    from pipeline.stage import StageContext

    stages = [get_stage_class(c["kind"])({k: v for k, v in c.items() if k != "kind"}) for c in STAGES[:3]]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(modules_for(stages))
    rows: dict[str, Any] = {}
    for n in sizes:
        inp = tmp / f"tm-in-{n}"
        got = build_corpus(data, n, 5000, inp)
        shards = sorted(inp.glob("*.jsonl"))
        for cfg, stage in zip(STAGES[:3], stages):
            stage.setup()
            kind = cfg["kind"]
            roots = {"local": str(tmp / f"tm-{n}-{kind}"), "s3": f"{s3_root}/tm-{n}-{kind}"}
            arts: dict[str, list[tuple[int, str]]] = {k: [] for k in roots}
            for i, f in enumerate(shards):
                recs = [json.loads(x) for x in f.read_text().splitlines()]
                t = pa.table({"doc_id": [r["id"] for r in recs],
                              "text": pa.array([r["text"] for r in recs], pa.large_string())})
                art = stage.map(t, StageContext("m", shard_index=i))
                for where, root in roots.items():
                    loc = f"{root}/art/part-{i:05d}.parquet"
                    storage.makedirs(f"{root}/art")
                    write_table(loc, art)
                    arts[where].append((i, loc))
            for where, root in roots.items():
                for parts in parts_list:
                    state, scratch = f"{root}/state-{parts}", f"{root}/scratch-{parts}"
                    storage.makedirs(state)
                    storage.makedirs(scratch)
                    peaks: list[tuple[str, float]] = []
                    t0 = time.perf_counter()
                    drive(stage.reduce_plan(ReduceContext(arts[where], state, scratch, parts, len(shards))),
                          _child_runner(ctx, f"{root}/art", peaks))
                    top = max(peaks, key=lambda x: x[1])
                    by_task: dict[str, float] = {}
                    for fn, mb in peaks:
                        by_task[fn] = round(max(by_task.get(fn, 0.0), mb), 1)
                    row = {"docs": got, "store": where, "barrier": kind, "partitions": parts,
                           "tasks": len(peaks), "max_task_mb": round(top[1], 1), "task": top[0], "by_task": by_task,
                           "mb_per_million_partition_docs": round(top[1] / (got / parts) * 1e6, 1),
                           "reduce_s": round(time.perf_counter() - t0, 2),
                           "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
                    rows[f"{kind} {where} P={parts} n={got}"] = row
                    log(json.dumps(row))
    # growth between the smallest and the largest size, per million docs of a partition
    growth: dict[str, Any] = {}
    for cfg in STAGES[:3]:
        for where in ("local", "s3"):
            for parts in parts_list:
                pts = sorted((r["docs"], r["max_task_mb"]) for r in rows.values()
                             if r["barrier"] == cfg["kind"] and r["store"] == where and r["partitions"] == parts)
                if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
                    growth[f"{cfg['kind']} {where} P={parts}"] = round(
                        (pts[-1][1] - pts[0][1]) / ((pts[-1][0] - pts[0][0]) / parts) * 1e6, 1)
    return {"rows": list(rows.values()), "growth_mb_per_million_partition_docs": growth}


@contextlib.contextmanager
def _moto_bucket(exe: Path) -> Iterator[None]:
    """moto's S3 server on a loopback port with an empty bucket ``bench``, this process's
    environment pointing at it (set before any fork server starts: its children inherit it)."""
    from pipeline import storage
    from tests.s3server import S3_ENV, free_port, loopback_server

    port = free_port()
    with loopback_server([str(exe), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server"):
        os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
        storage._filesystem.cache_clear()
        import pyarrow.fs as pafs

        pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                          endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True).create_dir("bench")
        yield


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="assay bench remote_reduce", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "pretrain_raw.jsonl.zst")
    ap.add_argument("--docs", type=int, default=25000)
    ap.add_argument("--per-shard", type=int, default=2500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--json", dest="json_out", type=Path, help="write the results here too")
    ap.add_argument("--task-docs", default="", help="comma list of corpus sizes: measure each reduce task's memory "
                    "on S3 and on a local folder at these sizes (instead of the whole runs)")
    a = ap.parse_args(argv)
    try:
        task_sizes = [int(x) for x in a.task_docs.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--task-docs: expected comma-separated document counts, got {a.task_docs!r}") from None
    if any(n < 1 for n in task_sizes):
        raise SystemExit(f"--task-docs: every size must be at least 1, got {a.task_docs!r}")
    sys.path.insert(0, str(REPO))
    from bench.scale import build_corpus
    from tests.s3server import moto_server_bin

    exe = moto_server_bin()
    if exe is None:
        raise SystemExit("moto_server not found: run `make venv-moto`")
    if task_sizes:
        with tempfile.TemporaryDirectory(prefix="assay-remote-tm-") as tmp:
            with _moto_bucket(exe):
                tm = task_memory(a.data, task_sizes, Path(tmp), "s3://bench")
        print(f"{'barrier':16} {'P':>2} {'store':>5} " + " ".join(f"{'MB @' + str(n):>10}" for n in task_sizes)
              + "  growth MB per million docs of a partition")
        for key, g in tm["growth_mb_per_million_partition_docs"].items():
            kind, where, p = key.split()
            mbs = [next((r["max_task_mb"] for r in tm["rows"] if r["barrier"] == kind and r["store"] == where
                         and f"P={r['partitions']}" == p and r["docs"] == n), float("nan")) for n in task_sizes]
            print(f"{kind:16} {p[2:]:>2} {where:>5} " + " ".join(f"{m:>10.1f}" for m in mbs) + f"  {g:>8.1f}")
        if a.json_out:
            a.json_out.write_text(json.dumps(tm, indent=2))
        return
    res: dict[str, Any] = {"docs": a.docs, "workers": a.workers, "partitions": a.partitions}
    with tempfile.TemporaryDirectory(prefix="assay-remote-reduce-") as tmp:
        inp = Path(tmp) / "in"
        res["docs_in"] = build_corpus(a.data, a.docs, a.per_shard, inp)
        res["local"] = _run(inp, str(Path(tmp) / "out"), a.workers, a.partitions)
        with _moto_bucket(exe):
            res["s3"] = _run(inp, "s3://bench/out", a.workers, a.partitions)
    res["same_output"] = res["local"]["snapshot_id"] == res["s3"]["snapshot_id"]
    res["driver_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'barrier':18} {'local reduce s':>15} {'S3 reduce s':>12}  tasks ran in (S3)")
    for b in BARRIERS:
        lo, s3 = res["local"]["reduces"][b], res["s3"]["reduces"][b]
        where = f"{s3['ran']} x{s3['task_processes']} processes" + (" incl. the driver" if s3["driver_ran_tasks"] else "")
        if s3["task_processes"] is None:
            where = f"{s3['ran']} (processes not recorded)"
        print(f"{b:18} {lo['wall_s']:>15.2f} {s3['wall_s']:>12.2f}  {where}")
    print(f"whole run: local {res['local']['wall_s']} s, S3 {res['s3']['wall_s']} s; same snapshot: {res['same_output']}")
    print(json.dumps(res, indent=2))
    if a.json_out:
        a.json_out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
