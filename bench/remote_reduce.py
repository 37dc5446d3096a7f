"""``assay bench remote_reduce``: the partitioned barriers with the output on a local disk vs on S3.

The same corpus and spec as ``assay bench scale`` (``dedup.exact`` -> ``dedup.minhash`` ->
``dedup.softdedup`` -> ``filter.threshold`` percentile), run with ``workers`` / ``partitions``
twice: output in a local folder, then on S3 (moto's standalone server on loopback, from
``.venv-moto``; pyarrow's S3 client reaches it through ``AWS_ENDPOINT_URL`` only). Reported per
barrier, from the reduce markers: the reduce's wall time, how many processes ran its tasks and
whether the driver was one of them (reduce tasks do their own I/O through ``pipeline.storage``:
on S3 they read artifacts and write scratch and state there, nothing is staged on the driver).
Both runs must give the same ``snapshot_id``.

moto is a Python server on the same cores: S3 figures measure moto's cost too, not a real
object store's; compare them with the local run of the same command, not across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="assay bench remote_reduce", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "pretrain_raw.jsonl.zst")
    ap.add_argument("--docs", type=int, default=25000)
    ap.add_argument("--per-shard", type=int, default=2500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--json", dest="json_out", type=Path, help="write the results here too")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from bench.scale import build_corpus
    from pipeline import storage
    from tests.s3server import S3_ENV, free_port, loopback_server, moto_server_bin

    exe = moto_server_bin()
    if exe is None:
        raise SystemExit("moto_server not found: run `make venv-moto`")
    res: dict[str, Any] = {"docs": a.docs, "workers": a.workers, "partitions": a.partitions}
    with tempfile.TemporaryDirectory(prefix="assay-remote-reduce-") as tmp:
        inp = Path(tmp) / "in"
        res["docs_in"] = build_corpus(a.data, a.docs, a.per_shard, inp)
        res["local"] = _run(inp, str(Path(tmp) / "out"), a.workers, a.partitions)
        port = free_port()
        with loopback_server([str(exe), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server"):
            os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
            storage._filesystem.cache_clear()
            import pyarrow.fs as pafs

            pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                              endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True).create_dir("bench")
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
