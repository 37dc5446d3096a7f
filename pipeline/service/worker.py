"""One job, in its own process: ``python -m pipeline.service.worker --catalog URL --root ROOT JOB``.

Started by the :class:`pipeline.service.runner.Supervisor` (its own session, so a cancel kills
the whole process group; it dies with the supervisor). It reads the job's resolved spec from
the catalog, runs it into ``<root>/work/<work key>/`` — a folder named by the spec and its
inputs, so a resubmitted or resumed job continues from the completion markers there — and
reports progress (completion markers per segment and shard, counts so far) and log lines to
the catalog as events. On success the snapshot is published under
``<root>/snapshots/<snapshot id>/`` once: the id is a content hash, and a second job that
produced the same id only drops its copy. Errors and log lines never carry server paths.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.service.catalog import Catalog, jobs

#: how often a running job's completion markers are read into a progress event (seconds); a job
#: that ends between two reads still sends its final counts as one last progress event
def _progress_interval() -> float:
    raw = os.environ.get("ASSAY_PROGRESS_INTERVAL_S", "0.5")
    try:
        v = float(raw)
    except ValueError:
        raise SystemExit(f"ASSAY_PROGRESS_INTERVAL_S: expected seconds (e.g. 0.5), got {raw!r}") from None
    if not 0.05 <= v <= 3600:  # nan fails too; 0 or less would poll the catalog in a busy loop
        raise SystemExit(f"ASSAY_PROGRESS_INTERVAL_S: expected 0.05 to 3600 seconds, got {raw!r}")
    return v


PROGRESS_INTERVAL_S = _progress_interval()


class Scrubber:
    """Replaces server paths in text with what a client may see.

    A root is replaced only where it stands as a whole path, not inside another one: with the
    input root ``/data`` (the compose stack's), a spec's relative ``examples/data/*.warc.gz`` and
    ``/database`` stay as they are, and the manifest a client gets equals the one on disk.
    """

    def __init__(self, root: Path, input_roots: list[str]):
        pairs = [(str(Path(r).resolve()), f"<input-root-{i}>") for i, r in enumerate(input_roots)]
        pairs.append((str(root.resolve()), "<service-root>"))
        pairs.sort(key=lambda p: -len(p[0]))
        self.pairs = [(re.compile(rf"(?<![\w.~-]){re.escape(a)}(?![\w.~-])"), b) for a, b in pairs if a != "/"]

    def __call__(self, text: str) -> str:
        for a, b in self.pairs:
            text = a.sub(b, text)
        return text


class CatalogLogHandler(logging.Handler):
    def __init__(self, catalog: Catalog, job_id: str, scrub: Scrubber):
        super().__init__(logging.INFO)
        self.catalog, self.job_id, self.scrub = catalog, job_id, scrub

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.scrub(self.format(record))[:2000]
            self.catalog.add_event(self.job_id, "log", {"line": line, "level": record.levelname.lower()})
        except Exception:  # noqa: BLE001 - logging must never kill the job
            pass


def read_progress(work: Path, n_shards: int, segments: list[list[str]]) -> dict[str, Any]:
    """Progress from completion markers: per segment and per shard, and counts so far."""
    markers = work / "_work" / "markers"
    segs = []
    shard_seg = [0] * n_shards
    kept = 0
    docs_in = 0
    for k, names in enumerate(segments):
        d = markers / f"seg{k}"
        done = 0
        if d.is_dir():
            for m in d.glob("part-*.json"):
                try:
                    i = int(m.stem.split("-")[1])
                except (IndexError, ValueError):
                    continue
                done += 1
                if 0 <= i < n_shards:
                    shard_seg[i] = max(shard_seg[i], k + 1)
                if k == 0 or k == len(segments) - 1:
                    try:
                        data = json.loads(m.read_text())
                    except (OSError, ValueError):
                        continue
                    if k == 0:
                        docs_in += int(data.get("stages", {}).get("read", {}).get("docs_in", 0))
                    if k == len(segments) - 1:
                        kept += int(data.get("rows", 0))
        segs.append({"index": k, "stages": names, "shards_done": done, "shards_total": n_shards})
    total = n_shards * len(segments)
    done_all = sum(s["shards_done"] for s in segs)
    return {
        "fraction": round(done_all / total, 4) if total else 1.0,
        "segments": segs,
        "shards": [{"index": i, "segments_done": s} for i, s in enumerate(shard_seg[:1000])],
        "stats_so_far": {"docs_in": docs_in, "kept": kept},
    }


def publish(root: Path, work: Path, manifest: dict[str, Any]) -> str:
    """Move a finished run to ``snapshots/<id>`` (or drop it when that id is already stored)."""
    sid = manifest["snapshot_id"]
    dest = root / "snapshots" / sid
    shutil.rmtree(work / "_work", ignore_errors=True)
    if (dest / "manifest.json").is_file():
        existing = json.loads((dest / "manifest.json").read_text())
        if existing.get("snapshot_id") == sid:
            shutil.rmtree(work, ignore_errors=True)
            return f"snapshots/{sid}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(work, dest)
    for dirpath, _dirs, files in os.walk(dest):  # immutable: never rewritten
        for f in files:
            p = os.path.join(dirpath, f)
            os.chmod(p, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return f"snapshots/{sid}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pipeline.service.worker")
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--input-root", action="append", default=[])
    ap.add_argument("--ray", default=None)
    ap.add_argument("job_id")
    args = ap.parse_args(argv)
    root = Path(args.root)
    catalog = Catalog(args.catalog)
    scrub = Scrubber(root, args.input_root)
    job = catalog.job(args.job_id)
    if job is None:
        print(f"no job {args.job_id}", file=sys.stderr)
        return 2
    log = logging.getLogger("assay.job")
    log.setLevel(logging.INFO)
    handler = CatalogLogHandler(catalog, args.job_id, scrub)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(stream)

    from pipeline.plan import make_plan
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    data = json.loads(job["spec"])
    work = root / "work" / job["work_key"]
    data["output"] = {**data.get("output", {}), "dir": str(work)}
    stop = threading.Event()
    try:
        spec = PipelineSpec.from_dict(data)
        plan = make_plan(spec.build_stages())
        segments = [[st.name for st in seg.all_stages()] for seg in plan.segments]
        n_shards = len(spec.resolve_inputs()) * spec.input.split
        resumed = (work / "_work" / "markers").is_dir()
        log.info("job %s: attempt %d, %d shard(s), %d segment(s)%s", args.job_id, job["attempts"], n_shards,
                 len(segments), ", resuming from completion markers" if resumed else "")

        seen: dict[int, int] = {}

        def log_segments(prog: dict[str, Any]) -> None:
            for s in prog["segments"]:
                if seen.get(s["index"], 0) == s["shards_done"]:
                    continue
                seen[s["index"]] = s["shards_done"]
                log.info("segment %d (%s): %d/%d shard(s) done", s["index"], ", ".join(s["stages"]) or "read",
                         s["shards_done"], s["shards_total"])

        sent: dict[str, str | None] = {"blob": None}  # the last progress sent as an event

        def monitor() -> None:
            while not stop.wait(PROGRESS_INTERVAL_S):
                try:
                    prog = read_progress(work, n_shards, segments)
                    blob = json.dumps(prog, sort_keys=True)
                    now = time.time()
                    if blob != sent["blob"]:
                        catalog.update_job(args.job_id, progress=blob, heartbeat_at=now)
                        catalog.add_event(args.job_id, "progress", {k: v for k, v in prog.items() if k != "shards"})
                        log_segments(prog)
                        sent["blob"] = blob
                    else:
                        catalog.update_job(args.job_id, heartbeat_at=now)
                except Exception:  # noqa: BLE001 - progress is best effort; the job goes on
                    pass

        t = threading.Thread(target=monitor, daemon=True)
        t.start()
        manifest = run_spec(spec, ray=args.ray, progress=False)
        stop.set()
        t.join(5)
        final = read_progress(work, n_shards, segments)
        log_segments(final)  # a job faster than the monitor's poll still logs every segment
        if not t.is_alive() and json.dumps(final, sort_keys=True) != sent["blob"]:
            # ... and its followers still get the final counts as a progress event
            catalog.add_event(args.job_id, "progress", {k: v for k, v in final.items() if k != "shards"})
        stats_path = work / "stats.json"
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        folder = publish(root, work, manifest)
        snaps = (root / "snapshots").resolve()
        read_snapshots = sorted({Path(p).resolve().relative_to(snaps).parts[0] for p in spec.input.paths
                                 if Path(p).resolve().is_relative_to(snaps)})
        new = catalog.add_snapshot(manifest, folder, args.job_id, extra_parents=read_snapshots)
        if stats:
            catalog.add_stage_docs(stats)
        catalog.update_job(args.job_id, jobs.c.status == "running", status="succeeded", snapshot_id=manifest["snapshot_id"],
                           finished_at=time.time(), progress=json.dumps(final))
        log.info("job %s: snapshot %s (%s)", args.job_id, manifest["snapshot_id"],
                 "new" if new else "already in the catalog: stored once")
        catalog.add_event(args.job_id, "state", {"status": "succeeded", "snapshot_id": manifest["snapshot_id"]})
        return 0
    except Exception as e:  # noqa: BLE001 - the job fails with its error; the service stays up
        stop.set()
        msg = scrub(f"{type(e).__name__}: {e}").splitlines()[0][:2000] if str(e) else type(e).__name__
        log.info("job %s failed: %s", args.job_id, msg)
        catalog.update_job(args.job_id, jobs.c.status == "running", status="failed", error=msg, finished_at=time.time())
        catalog.add_event(args.job_id, "state", {"status": "failed", "error": msg})
        import traceback

        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
