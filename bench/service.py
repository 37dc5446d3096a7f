"""`assay bench service`: loopback load on a live `assay serve`, idle and while a job runs.

Starts the server (uvicorn, SQLite catalog) in a subprocess on a free loopback port, creates a
read and a submit token, then sends ``--requests`` authenticated GETs with ``--concurrency``
client threads (a mix: /health, /v1/jobs, /v1/jobs/{id}, /v1/snapshots, /v1/snapshots/{id},
/v1/snapshots/{id}/shards/0, /metrics) twice in the same run:

1. **idle** — no job running;
2. **busy** — while a curation job (real text from ``pretrain_raw``: Gopher quality + exact
   dedup over ``--files`` shards) runs in its worker process.

It prints p50/p90/p99/max latency per phase and the busy/idle ratio (the figure that matters on
a shared machine), and checks that no request failed and that the job really ran during the
busy phase. ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inputs(folder: Path, files: int, per_file: int) -> None:
    import io

    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    docs: list[str] = []
    with open(DATA / "pretrain_raw.jsonl.zst", "rb") as fh:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
        for line in reader:
            docs.append(json.loads(line)["text"])
            if len(docs) >= files * per_file:
                break
    for f in range(files):
        with open(folder / f"docs-{f:03d}.jsonl", "w") as out:
            for i in range(per_file):
                out.write(json.dumps({"id": f"{f}-{i}", "text": docs[(f * per_file + i) % len(docs)]}) + "\n")


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _load(base: str, headers: dict[str, str], paths: list[str], n: int, conc: int) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                p = paths[i % len(paths)]
                t0 = time.perf_counter()
                try:
                    r = c.get(p)
                    ok = r.status_code == 200
                    _ = r.content
                except httpx.HTTPError as e:
                    ok, r = False, None
                    errors.append(f"{p}: {e}")
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if not ok and r is not None:
                        errors.append(f"{p}: HTTP {r.status_code}")

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in lat]
    return {"requests": len(lat), "errors": len(errors), "first_errors": errors[:3], "wall_s": round(wall, 2),
            "req_per_s": round(len(lat) / wall, 1), "p50_ms": round(_pct(ms, 0.5), 2), "p90_ms": round(_pct(ms, 0.9), 2),
            "p99_ms": round(_pct(ms, 0.99), 2), "max_ms": round(max(ms), 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="assay bench service", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--files", type=int, default=40, help="input shards of the job that runs during the busy phase")
    ap.add_argument("--per-file", type=int, default=60)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="assay-bench-service-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = None
    try:
        crawl = tmp / "crawl"
        _inputs(crawl, args.files, args.per_file)
        root = tmp / "svc"
        sys.path.insert(0, str(REPO))
        from pipeline.service.catalog import Catalog, catalog_url

        root.mkdir()
        cat = Catalog(catalog_url(root))
        _, read = cat.create_token("bench-read", "read")
        _, submit = cat.create_token("bench-submit", "submit")
        cat.dispose()
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(tmp / "server.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--root", str(root), "--input-root", str(crawl),
                                 "--port", str(port), "--max-jobs", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        hs = {"Authorization": f"Bearer {submit}"}
        hr = {"Authorization": f"Bearer {read}"}
        stages = [{"kind": "filter.gopher_quality"}, {"kind": "dedup.exact"}]

        def run_job(name: str, paths: list[str]) -> str:
            return httpx.post(base + "/v1/jobs", json={"name": name, "input": {"paths": paths}, "stages": stages},
                              headers=hs).json()["id"]

        def wait(jid: str) -> dict[str, Any]:
            while True:
                j = httpx.get(f"{base}/v1/jobs/{jid}", headers=hr).json()
                if j["status"] in ("succeeded", "failed", "cancelled"):
                    return j
                time.sleep(0.2)

        first = wait(run_job("bench-small", ["docs-000.jsonl"]))  # a snapshot for the snapshot routes
        sid = first["snapshot_id"]
        paths = ["/health", "/v1/jobs", f"/v1/jobs/{first['id']}", "/v1/snapshots", f"/v1/snapshots/{sid}",
                 f"/v1/snapshots/{sid}/shards/0", "/metrics"]
        _load(base, hr, paths, 50, args.concurrency)  # warm-up (the same for both phases)
        idle = _load(base, hr, paths, args.requests, args.concurrency)
        jid = run_job("bench-busy", ["."])
        while httpx.get(f"{base}/v1/jobs/{jid}", headers=hr).json()["status"] != "running":
            time.sleep(0.05)
        busy = _load(base, hr, paths, args.requests, args.concurrency)
        during = httpx.get(f"{base}/v1/jobs/{jid}", headers=hr).json()
        job = wait(jid)
        res = {
            "requests": args.requests, "concurrency": args.concurrency, "cpus": os.cpu_count(),
            "idle": idle, "busy": busy,
            "job_running_at_end_of_busy_phase": during["status"] == "running",
            "job": {"status": job["status"], "wall_s": round((job["finished_at"] or 0) - (job["started_at"] or 0), 1),
                    "shards": args.files},
            "ratio_busy_over_idle": {k: round(busy[k] / idle[k], 2) if idle[k] else None for k in ("p50_ms", "p99_ms")},
        }
        print(f"assay bench service: {args.requests} GETs x {args.concurrency} client threads, loopback, {os.cpu_count()} CPUs")
        print(f"{'phase':<6} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6}")
        for name, r in (("idle", idle), ("busy", busy)):
            print(f"{name:<6} {r['req_per_s']:>7} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['errors']:>6}")
        print(f"busy/idle: p50 x{res['ratio_busy_over_idle']['p50_ms']}, p99 x{res['ratio_busy_over_idle']['p99_ms']}; "
              f"job {job['status']} in {res['job']['wall_s']} s, still running when the busy phase ended: "
              f"{res['job_running_at_end_of_busy_phase']}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(res, indent=1))
        if idle["errors"] or busy["errors"]:
            raise SystemExit(f"requests failed: {idle['first_errors'] + busy['first_errors']}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
