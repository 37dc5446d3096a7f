"""`assay bench reliability`: kill -9 a real run at random points, resume it, compare bytes.

For each kill point the benchmark starts `assay run` (a separate process group), waits until
the run is in the chosen phase — read, segment-0 stage work + barrier map, a barrier's reduce,
a later segment's stage work, the manifest write — as seen from outside (markers on disk),
sleeps a random part of that phase's duration in an uninterrupted run, SIGKILLs the whole
group (driver and workers), then resumes with the same command. Each resumed snapshot is
compared with an uninterrupted run's: the manifest (which holds every shard's sha256) must be
equal, and the shards' ``doc_id`` multiset must be the same (0 lost, 0 duplicated).

Modes: ``local2`` (LocalExecutor, ``--workers 2``), ``ray`` (a real two-node cluster started
with ``ray start``; the driver is what gets killed) and ``ray-workers`` (the same cluster; the
driver lives, and at the random point one Ray worker process or — every other point — the worker
node's raylet is SIGKILLed: the run must finish by itself, through Ray's task retries and actor
restarts, with the same bytes; it is resumed only if it fails, and that is counted). A point
counts only if its kill landed (the run had not written its manifest, a target was found and
exited); an attempt that lands none is abandoned and retried (``--attempts``), and a point that
never lands one is reported as such, never counted as a pass. ``--disk-full`` also runs the spec on a small
tmpfs: the run must stop with a clear error, leave nothing corrupt, and resume to the same
bytes once the filesystem is enlarged.

    assay bench reliability --points 20 --modes local2,ray --disk-full
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "pretrain_raw.jsonl.zst"
PHASES = ("read", "segment 0: stage work + barrier map", "reduce", "later segment: stage work", "manifest write")


# -- corpus and spec ---------------------------------------------------------------------------------


def make_corpus(folder: Path, n_docs: int, n_shards: int) -> Path:
    """Real documents (the shared pretraining sample) in shards, with cross-shard exact re-posts."""
    import zstandard

    shutil.rmtree(folder, ignore_errors=True)  # exactly these shards, nothing left from another run
    folder.mkdir(parents=True)
    docs: list[dict[str, Any]] = []
    with open(DATA, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
        import io

        for line in io.TextIOWrapper(r, encoding="utf-8"):
            docs.append(json.loads(line))
            if len(docs) >= n_docs:
                break
    per = len(docs) // n_shards
    for s in range(n_shards):
        with open(folder / f"crawl-{s:03d}.jsonl", "w") as out:
            for i, d in enumerate(docs[s * per:(s + 1) * per]):
                out.write(json.dumps({"id": f"{s}-{i}", "text": d["text"], "url": d.get("url")}) + "\n")
            for i, d in enumerate(docs[:3] if s else []):
                out.write(json.dumps({"id": f"repost-{s}-{i}", "text": d["text"], "url": None}) + "\n")
    return folder


def spec_toml(inp: Path, out: Path | str) -> str:
    """Two barriers (exact, then MinHash), so a run has three segments and two reduces."""
    return f"""name = "reliability"
[input]
paths = [{json.dumps(str(inp))}]
[output]
dir = {json.dumps(str(out))}
rows_per_row_group = 200
[execution]
batch_size = 200
[[stages]]
kind = "filter.length"
min_chars = 200
[[stages]]
kind = "dedup.exact"
[[stages]]
kind = "dedup.minhash"
[[stages]]
kind = "pii.redact"
"""


N_SEGMENTS = 3


# -- observing a run from outside ----------------------------------------------------------------


def phase_of(out: Path, n_shards: int) -> str | None:
    """The phase a run writing ``out`` is in, from its markers (None: finished)."""
    if (out / "manifest.json").exists():
        return None
    mk = out / "_work" / "markers"
    seg = [len(list((mk / f"seg{i}").glob("*.json"))) if (mk / f"seg{i}").exists() else 0 for i in range(N_SEGMENTS)]
    reduces = len(list(mk.glob("reduce-*.json"))) if mk.exists() else 0
    if seg[0] == 0:
        return PHASES[0]
    if seg[0] < n_shards:
        return PHASES[1]
    for i in range(1, N_SEGMENTS):
        if reduces < i:
            return PHASES[2]
        if seg[i] < n_shards:
            return PHASES[3]
    return PHASES[4]


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def timeline(cmd: list[str], env: dict[str, str], out: Path, n_shards: int) -> tuple[dict[str, list[tuple[float, float]]], float]:
    """Run uninterrupted, polling: {phase: [(start, end) of each visit]} seconds after start
    (``reduce`` is visited once per barrier)."""
    seen: dict[str, list[list[float]]] = {}
    t0 = time.perf_counter()
    p = _start(cmd, env)
    last = None
    while p.poll() is None:
        ph = phase_of(out, n_shards)
        t = time.perf_counter() - t0
        if ph is not None:
            if ph != last:
                seen.setdefault(ph, []).append([t, t])
            seen[ph][-1][1] = t
        last = ph
        time.sleep(0.002)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.returncode != 0:
        raise RuntimeError(f"reference run failed: {err[-2000:]}")
    return {k: [(a, b) for a, b in v] for k, v in seen.items()}, time.perf_counter() - t0


def doc_ids(out: Path, manifest: dict[str, Any]) -> collections.Counter[str]:
    import pyarrow.parquet as pq

    c: collections.Counter[str] = collections.Counter()
    for s in manifest["shards"]:
        c.update(pq.read_table(out / s["path"], columns=["doc_id"]).column(0).to_pylist())
    return c


def kill_and_resume(cmd: list[str], env: dict[str, str], out: Path, n_shards: int, phase: str,
                    visits: list[tuple[float, float]], rng: random.Random, timeout: float = 600) -> dict[str, Any]:
    """One point: run, wait for a (random) visit of ``phase``, sleep a random part of that visit's
    duration in the uninterrupted run, kill -9 the whole process group, then resume."""
    shutil.rmtree(out, ignore_errors=True)
    k = rng.randrange(len(visits)) if visits else 0
    start, end = visits[k] if visits else (0.0, 0.0)
    delay = rng.uniform(0.3, 1.0) * end if phase == PHASES[0] else rng.uniform(0.0, 0.9) * max(end - start, 0.0)
    p = _start(cmd, env)
    deadline = time.perf_counter() + timeout
    entered, entries, last = False, 0, None
    while p.poll() is None and time.perf_counter() < deadline:
        ph = phase_of(out, n_shards)
        if ph == phase and last != phase:
            entries += 1
            if entries > k:
                entered = True
                break
        last = ph
        time.sleep(0.001)
    killed_in = None
    if entered and p.poll() is None:
        time.sleep(delay)
        killed_in = phase_of(out, n_shards)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        else:
            killed_in = None
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    markers_at_kill = len(list((out / "_work" / "markers").rglob("*.json"))) if (out / "_work").exists() else 0
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return {"phase": phase, "killed_in": killed_in, "markers_at_kill": markers_at_kill, "resume_rc": r.returncode,
            "resume_s": round(time.perf_counter() - t0, 2), "stderr": r.stderr[-1500:] if r.returncode else ""}


def _gone(pid: int, timeout: float = 2.0) -> bool:
    """Whether ``pid`` has exited (a zombie counts: it runs nothing) within ``timeout`` seconds."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def kill_inside(cmd: list[str], env: dict[str, str], out: Path, n_shards: int, phase: str,
                visits: list[tuple[float, float]], rng: random.Random, cluster: Any, target: str,
                timeout: float = 600) -> dict[str, Any]:
    """One point of the ``ray-workers`` mode: the driver lives; at a random moment of ``phase``
    one Ray worker process (``target="worker"``) or the worker node's raylet (``"raylet"``) is
    SIGKILLed. The run must finish by itself (task retries, actor restarts); only if it fails is
    it resumed with the same command (counted).

    The kill *landed* only if, at that instant, the run had not written its manifest yet, a
    target process was found, and it exited after the SIGKILL. An attempt that does not land is
    abandoned at once (its run is killed: it proves nothing) and the caller tries again; it is
    never counted as a pass."""
    shutil.rmtree(out, ignore_errors=True)
    node_note = None
    if not cluster.pids(cluster.worker_dir, "raylet/raylet"):
        # the worker node must be up before the point starts; if it is not, say why and restart it
        node_note = f"worker node had no raylet before the point ({cluster.worker_node_diagnosis()}); restarted"
        cluster.restart_worker_node()
    k = rng.randrange(len(visits)) if visits else 0
    start, end = visits[k] if visits else (0.0, 0.0)
    delay = rng.uniform(0.3, 1.0) * end if phase == PHASES[0] else rng.uniform(0.0, 0.9) * max(end - start, 0.0)
    p = _start(cmd, env)
    deadline = time.perf_counter() + timeout
    entries, last, killed_in, what, why_not, raylet_killed = 0, None, None, None, "the run ended before the phase", False
    t_kill = None
    while p.poll() is None and time.perf_counter() < deadline:
        ph = phase_of(out, n_shards)
        if ph == phase and last != phase:
            entries += 1
            if entries > k:
                time.sleep(delay)
                why_not = "the run ended before the kill"
                # a target may be missing for an instant (a worker process between tasks): look
                # again for up to 1 s, as long as the run has not finished
                look_until = time.perf_counter() + 1.0
                while p.poll() is None:
                    now = phase_of(out, n_shards)
                    if now is None:  # the manifest is written: a kill now would test nothing
                        why_not = "the manifest was written before the kill"
                        break
                    try:
                        if target == "worker":
                            what, pid = cluster.kill_worker_process(rng, return_pid=True)
                        else:
                            pid = cluster.kill_worker_raylet()
                            what, raylet_killed = f"raylet {pid}", True
                    except RuntimeError as e:  # nothing to kill at that instant
                        why_not = str(e)
                        if time.perf_counter() > look_until:
                            break
                        time.sleep(0.02)
                        continue
                    if _gone(pid):
                        killed_in, t_kill = now, time.perf_counter()
                    else:
                        why_not = f"{what} (pid {pid}) still running 2 s after SIGKILL"
                    break
                break
        last = ph
        time.sleep(0.001)
    if killed_in is None and p.poll() is None:  # not landed: abandon this attempt at once
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if raylet_killed:
            cluster.restart_worker_node()
        return {"phase": phase, "target": target, "killed": None, "killed_in": None, "not_landed": why_not,
                "node_note": node_note, "run_rc": None, "resume_rc": None, "stderr": ""}
    try:
        _, err = p.communicate(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    first_rc = p.returncode
    recovered_s = round(time.perf_counter() - t_kill, 2) if t_kill is not None else None
    resumed = None
    if first_rc != 0 and killed_in is not None:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        resumed = r.returncode
        err = r.stderr.encode() if r.returncode else err
    if raylet_killed:  # always: a raylet killed at any instant leaves the worker node dead
        cluster.restart_worker_node()
    res = {"phase": phase, "target": target, "killed": what, "killed_in": killed_in, "run_rc": first_rc,
           "resume_rc": resumed if resumed is not None else first_rc, "finish_after_kill_s": recovered_s,
           "node_note": node_note,
           "stderr": (err or b"").decode(errors="replace")[-1500:] if (resumed or first_rc) else ""}
    if killed_in is None:
        res["not_landed"] = why_not
    return res


def summarize(mode: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the points: only points whose kill landed count (as identical or not)."""
    landed = [r for r in results if r["killed_in"] is not None]
    return {
        "mode": mode,
        "points": len(results),
        "killed": len(landed),
        "not_landed": len(results) - len(landed),
        "identical": sum(bool(r["identical"]) for r in landed),
        "lost": sum(r["lost"] or 0 for r in landed),
        "duplicated": sum(r["duplicated"] or 0 for r in landed),
        "killed_in": dict(collections.Counter(str(r["killed_in"]) for r in landed)),
        # ray-workers: runs that finished by themselves after the kill (no resume needed)
        "finished_without_resume": sum(r.get("run_rc") == 0 for r in landed) if mode == "ray-workers" else None,
    }


def check(out: Path, reference: dict[str, Any], ref_ids: collections.Counter[str]) -> dict[str, Any]:
    mf = out / "manifest.json"
    if not mf.exists():
        return {"identical": False, "lost": None, "duplicated": None}
    got = json.loads(mf.read_text())
    ids = doc_ids(out, got)
    lost = sum((ref_ids - ids).values())
    dup = sum(max(0, n - 1) for n in ids.values()) + sum((ids - ref_ids).values())
    return {"identical": got == reference, "lost": lost, "duplicated": dup}


# -- modes --------------------------------------------------------------------------------------------


def run_points(mode: str, points: int, work: Path, inp: Path, n_shards: int, seed: int,
               log: Any = print, phases: tuple[str, ...] = PHASES, max_minutes: float = 0.0,
               attempts: int = 6) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cluster = None
    if mode in ("ray", "ray-workers"):
        from bench._raycluster import LocalRayCluster

        cluster = LocalRayCluster().start()
        env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
        extra = ["--ray", cluster.address]
    else:
        extra = ["--workers", "2"]
    try:
        ref_out = work / f"{mode}-reference"
        shutil.rmtree(ref_out, ignore_errors=True)
        spec = work / f"{mode}-ref.toml"
        spec.write_text(spec_toml(inp, ref_out))
        cmd = [sys.executable, "-m", "pipeline.cli", "run", str(spec), "--no-progress", *extra]
        windows, ref_wall = timeline(cmd, env, ref_out, n_shards)
        reference = json.loads((ref_out / "manifest.json").read_text())
        ref_ids = doc_ids(ref_out, reference)
        log(f"[{mode}] uninterrupted run {ref_wall:.1f} s; phases seen: "
            + "; ".join(f"{k} " + ", ".join(f"{a:.2f}-{b:.2f}s" for a, b in v) for k, v in windows.items()))
        out = work / f"{mode}-killed"
        spec_k = work / f"{mode}-kill.toml"
        spec_k.write_text(spec_toml(inp, out))
        cmd_k = [sys.executable, "-m", "pipeline.cli", "run", str(spec_k), "--no-progress", *extra]
        rng = random.Random(seed)
        results = []
        t_start = time.perf_counter()
        for i in range(points):
            if max_minutes and time.perf_counter() - t_start > max_minutes * 60:
                log(f"[{mode}] stopping after {i} of {points} points: --max-minutes {max_minutes:g} reached")
                break
            phase = phases[i % len(phases)]
            for _attempt in range(attempts):  # a point counts only if its kill landed
                if mode == "ray-workers":  # alternate: a worker process, the worker node's raylet
                    r = kill_inside(cmd_k, env, out, n_shards, phase, windows.get(phase, []), rng, cluster,
                                    "worker" if i % 2 == 0 else "raylet")
                else:
                    r = kill_and_resume(cmd_k, env, out, n_shards, phase, windows.get(phase, []), rng)
                if r["killed_in"] is not None:
                    break
                log(f"[{mode}] point {i + 1:2d}, attempt {_attempt + 1}: no kill landed "
                    f"({r.get('not_landed') or r.get('killed') or 'the run ended first'}); trying again")
            r["attempts"] = _attempt + 1
            # the killed run wrote `out` under another name than the reference: compare the
            # manifest with the output location taken out (it is not in the manifest) — equal
            r.update(check(out, reference, ref_ids) if r["killed_in"] is not None else
                     {"identical": None, "lost": None, "duplicated": None})
            results.append(r)
            if r["killed_in"] is None:
                log(f"[{mode}] point {i + 1:2d}/{points}: aimed at {phase!r}: NO KILL LANDED in {attempts} attempts "
                    f"({r.get('not_landed')}) -> not counted")
                continue
            what = f"{r['killed']} " if "killed" in r else ""
            note = f" [{r['node_note']}]" if r.get("node_note") else ""
            after = f", finished {r['finish_after_kill_s']} s after the kill" if r.get("finish_after_kill_s") is not None else ""
            log(f"[{mode}] point {i + 1:2d}/{points}: aimed at {phase!r}, killed {what}in {r['killed_in']!r} "
                f"({r.get('markers_at_kill', '-')} markers) -> run rc {r.get('run_rc', '-')}, resume rc {r['resume_rc']}"
                f"{after}, identical {r['identical']}, lost {r['lost']}, duplicated {r['duplicated']}{note}")
        return {**summarize(mode, results), "uninterrupted_s": round(ref_wall, 2), "points_asked": points,
                "minutes": round((time.perf_counter() - t_start) / 60, 1), "results": results}
    finally:
        if cluster is not None:
            cluster.stop()


# -- disk full -----------------------------------------------------------------------------------------


def disk_full(work: Path, inp: Path, n_shards: int, log: Any = print) -> dict[str, Any]:
    """The run on a tmpfs too small for it: a clear error, nothing corrupt, resume after growing it."""
    ref_out = work / "df-reference"
    shutil.rmtree(ref_out, ignore_errors=True)
    spec = work / "df-ref.toml"
    spec.write_text(spec_toml(inp, ref_out))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(spec), "--no-progress", "--workers", "2"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=600)
    reference = json.loads((ref_out / "manifest.json").read_text())
    need = sum(f.stat().st_size for f in ref_out.rglob("*") if f.is_file())
    mnt = work / "tmpfs"
    mnt.mkdir(exist_ok=True)
    small = max(64 * 1024, need // 3)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={small}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"skipped": f"mount -t tmpfs not permitted here: {r.stderr.strip()}"}
    try:
        out = mnt / "snap"
        spec_df = work / "df.toml"
        spec_df.write_text(spec_toml(inp, out))
        cmd_df = [sys.executable, "-m", "pipeline.cli", "run", str(spec_df), "--no-progress", "--workers", "2"]
        full = subprocess.run(cmd_df, cwd=REPO, capture_output=True, text=True, timeout=600)
        err_line = full.stderr.strip().splitlines()[-1] if full.stderr.strip() else ""
        problems = []
        for m in (out / "_work" / "markers").rglob("*.json"):
            try:
                marker = json.loads(m.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                problems.append(f"{m}: not valid JSON")
                continue
            if isinstance(marker, dict) and marker.get("output"):
                import pyarrow.parquet as pq

                try:
                    if pq.read_metadata(out / marker["output"]).num_rows != marker["rows"]:
                        problems.append(f"{marker['output']}: row count differs from its marker")
                except Exception as e:  # noqa: BLE001
                    problems.append(f"{marker['output']}: unreadable ({e})")
        subprocess.run(["mount", "-o", f"remount,size={need * 4}", str(mnt)], check=True)
        resumed = subprocess.run(cmd_df, cwd=REPO, capture_output=True, text=True, timeout=600)
        got = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else None
        res = {
            "tmpfs_bytes": small,
            "snapshot_bytes": need,
            "first_rc": full.returncode,
            "error": err_line,
            "corrupt_after_enospc": problems,
            "resume_rc": resumed.returncode,
            "identical_after_resume": got == reference,
        }
        log(f"[disk full] tmpfs {small:,} B for a {need:,} B run: rc {full.returncode}, {err_line!r}; "
            f"{len(problems)} corrupt; resumed rc {resumed.returncode}, identical {got == reference}")
        return res
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def fingerprint_cost(path: Path = DATA, repeats: int = 3) -> dict[str, float]:
    """MB per CPU-second of the input fingerprint (xxh3-128) and of sha256, same file, same run."""
    from pipeline import storage

    size = path.stat().st_size
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, fn in (("fingerprint_xxh3", storage.fingerprint), ("sha256", storage.sha256)):
            t = time.process_time()
            fn(path)
            best[name] = max(best.get(name, 0.0), size / 1e6 / max(time.process_time() - t, 1e-9))
    return {k: round(v) for k, v in best.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="assay bench reliability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20, help="kill points per mode")
    ap.add_argument("--modes", default="local2,ray", help="comma list of local2 (workers=2), ray (2-node cluster, "
                    "driver killed), ray-workers (2-node cluster, a worker process or the worker raylet killed)")
    ap.add_argument("--docs", type=int, default=2400)
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--disk-full", action="store_true", help="also the small-tmpfs run")
    ap.add_argument("--work", default="runs/bench-reliability")
    ap.add_argument("--json", dest="json_out", help="write the results here")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="start no new kill point after this many minutes of a mode (0: no limit); "
                         "the report counts the points that ran")
    ap.add_argument("--attempts", type=int, default=6,
                    help="tries per point to land a kill; a point that never lands one is reported, not counted")
    ap.add_argument("--fingerprint-cost", action="store_true", help="also MB/CPU-s of the input fingerprint vs sha256")
    a = ap.parse_args(argv)
    work = Path(a.work).absolute()
    work.mkdir(parents=True, exist_ok=True)
    inp = make_corpus(work / "input", a.docs, a.shards)
    report: dict[str, Any] = {"docs": a.docs, "shards": a.shards, "seed": a.seed, "modes": []}
    for mode in [m for m in a.modes.split(",") if m]:
        res = run_points(mode, a.points, work, inp, a.shards, a.seed, max_minutes=a.max_minutes,
                         attempts=a.attempts)
        report["modes"].append(res)
        print(f"[{mode}] {res['killed']} of {res['points']} points landed a kill ({res['not_landed']} did not: "
              f"not counted); {res['identical']}/{res['killed']} runs byte-identical, {res['lost']} lost, "
              f"{res['duplicated']} duplicated docs; kills by phase: {res['killed_in']}; {res['minutes']} min")
    if a.disk_full:
        report["disk_full"] = disk_full(work, inp, a.shards)
    if a.fingerprint_cost:
        report["fingerprint_cost"] = fingerprint_cost()
        print(f"input fingerprint (xxh3-128) vs sha256, MB per CPU-second of {DATA.name}: {report['fingerprint_cost']}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
