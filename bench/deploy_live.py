"""`assay bench deploy_live` (also `make deploy-smoke`): the compose stack of deploy/compose, run live.

What it does, in order, and fails loudly at the first step that goes wrong:

1. builds the images with ``deploy/images/build.sh`` (buildah's layer cache makes a rebuild after
   a code change take about a minute; ``--no-build`` reuses what is there);
2. checks that podman can start a container; where the runtime cannot (this project's machines:
   crun refuses ``setrlimit`` without CAP_SYS_RESOURCE and does not run on a hybrid cgroup
   hierarchy), it writes a ``containers.conf`` into its own temp folder that selects ``runc`` and
   default ulimits no higher than the host's, and uses it through ``CONTAINERS_CONF`` (nothing
   under /etc is touched). It says which it needed;
3. brings up the compose project (PostgreSQL, Ray head, Ray worker, API) under its own project
   name, with its own secrets, free loopback ports and a temp data folder holding the demo's
   WARC files, with podman-compose (``--compose``);
4. waits for ``/health``, creates a submit token inside the API container (``assay token
   create`` against the PostgreSQL catalog), submits ``examples/demo.toml`` over REST with that
   bearer token and waits for the job;
5. pulls the snapshot's manifest and shard 0 over REST, checks the shard's sha256 against the
   manifest, reads it as Parquet; checks that the job's driver ran on the Ray cluster (a driver
   log on the head); runs the same spec locally (``assay run``, in-process) and compares the
   manifests (whole, key for key);
6. tears the project down (containers, network and volumes) unless ``--keep``.

It prints one result line and, with ``--json PATH``, writes the figures. Wall-clock seconds are
those of a shared, loaded machine (the load average is printed beside them).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
TAG = "0.1.0"
OFFICIAL_POSTGRES = "docker.io/library/postgres:15.10-bookworm"
LOCAL_POSTGRES = "localhost/assay-postgres:15"


def log(msg: str) -> None:
    print(f"deploy_live: {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], env: dict[str, str], timeout: float, check: bool = True,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _podman_runs(env: dict[str, str], image: str) -> tuple[bool, str]:
    p = subprocess.run(["podman", "run", "--rm", "--network", "none", "--entrypoint", "true", image],
                       env=env, capture_output=True, text=True, timeout=120)
    return p.returncode == 0, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def container_env(tmp: Path, image: str) -> tuple[dict[str, str], str]:
    """The environment podman needs here, and a note of what that took."""
    env = dict(os.environ)
    ok, err = _podman_runs(env, image)
    if ok:
        return env, "podman's default runtime"
    if not shutil.which("runc"):
        raise RuntimeError(f"podman cannot start a container ({err}) and runc is not installed "
                           "(apt-get install runc)")
    soft_n, hard_n = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, hard_p = resource.getrlimit(resource.RLIMIT_NPROC)
    tried = []
    # podman (as root) runs its runtime with RLIMIT_NPROC lowered to 32768 here, so the
    # container's limit must not exceed that: try the host's limit, then lower ones
    cands = [p for p in (hard_p, 32768, 16384, 4096) if p != resource.RLIM_INFINITY and p <= hard_p] or [32768]
    for nproc in cands:
        conf = tmp / "containers.conf"
        conf.write_text("# written by bench/deploy_live.py for a host whose crun cannot set rlimits\n"
                        "[containers]\n"
                        f'default_ulimits = ["nofile={soft_n}:{hard_n}", "nproc={nproc}:{nproc}"]\n'
                        "[engine]\n"
                        'runtime = "runc"\n')
        env2 = {**env, "CONTAINERS_CONF": str(conf)}
        ok, err2 = _podman_runs(env2, image)
        if ok:
            return env2, (f"runc with nofile={soft_n}:{hard_n}, nproc={nproc} via CONTAINERS_CONF "
                          f"(the default runtime failed: {err})")
        tried.append(f"nproc={nproc}: {err2}")
    raise RuntimeError("podman cannot start a container: " + err + "; with runc: " + "; ".join(tried))


def _compose_cmd(arg: str | None) -> list[str]:
    if arg:
        return arg.split()
    for c in (REPO / ".venv-compose" / "bin" / "podman-compose", shutil.which("podman-compose")):
        if c and Path(c).exists():
            return [str(c)]
    raise RuntimeError("no podman-compose: `make venv-compose` (or pass --compose 'docker compose')")


def _http(method: str, url: str, token: str | None = None, body: bytes | None = None,
          ctype: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _container(env: dict[str, str], project: str, service: str) -> str:
    p = _run(["podman", "ps", "--filter", f"label=com.docker.compose.project={project}",
              "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}"], env, 60)
    names = p.stdout.split()
    if not names:
        raise RuntimeError(f"no running container for service {service}")
    return names[0]


def _wait(pred, what: str, timeout: float, every: float = 2.0) -> Any:
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling until the deadline, report the last error
            last = e
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ: ``path: a != b`` for each differing leaf."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path or '.'}: {json.dumps(a)[:200]} != {json.dumps(b)[:200]}"]


def rayjob_manifest(cenv: dict[str, str], project: str, head: str, data: Path) -> tuple[dict[str, Any], str]:
    """What KubeRay's K8sJobMode submitter does, against the compose stack's head: `ray job
    submit` from a separate container holding only the cluster's Ray token; the job runs
    deploy/kubernetes/rayjob.yaml's entrypoint with the demo spec (inputs under /data, output on
    the shared snapshots volume). Returns the run's manifest and why a wrong token was refused."""
    spec = (REPO / "examples" / "demo.toml").read_text().replace('"examples/data/', '"/data/examples/data/')
    spec = spec.replace('dir = "runs/demo"', 'dir = "/var/lib/assay/rayjob-live"')
    assert "/data/examples/data/" in spec and "/var/lib/assay/rayjob-live" in spec
    (data / "rayjob.toml").write_text(spec)
    (data / "rayjob.toml").chmod(0o644)
    entry = "assay run /data/rayjob.toml --ray auto --no-progress"
    assert entry.replace("/data/rayjob.toml", "/specs/curate.toml") in (REPO / "deploy" / "kubernetes" / "rayjob.yaml").read_text()
    # without the token the dashboard refuses the submission
    base_cmd = ["podman", "run", "--rm", "--network", f"{project}_default", "-e", "RAY_USAGE_STATS_ENABLED=0"]
    sub = ["ray", "job", "submit", "--address", "http://ray-head:8265", "--", *entry.split()]
    denied = _run(base_cmd + ["-e", "RAY_AUTH_MODE=token", "-e", "RAY_AUTH_TOKEN=not-the-token",
                              f"localhost/assay-worker:{TAG}", *sub], cenv, 300, check=False)
    why = (denied.stdout + denied.stderr).strip().splitlines()
    assert denied.returncode != 0, "the dashboard accepted a job with a wrong Ray token"
    assert any(w in "\n".join(why) for w in ("401", "nauthorized", "uthentication", "nvalid token")), \
        f"a wrong token failed for another reason: {why[-5:]}"
    denied_line = next((line for line in reversed(why) if any(w in line for w in ("401", "nauthorized", "uthentication"))), why[-1])
    ok = _run(base_cmd + ["-e", "RAY_AUTH_MODE=token", "-e", "RAY_AUTH_TOKEN", f"localhost/assay-worker:{TAG}", *sub],
              {**cenv, "RAY_AUTH_TOKEN": cenv["ASSAY_RAY_TOKEN"]}, 900, check=False)
    if ok.returncode != 0:
        raise RuntimeError(f"ray job submit failed ({ok.returncode}):\n{ok.stdout[-3000:]}\n{ok.stderr[-3000:]}")
    text = _run(["podman", "exec", head, "cat", "/var/lib/assay/rayjob-live/manifest.json"], cenv, 60).stdout
    return json.loads(text), denied_line[:300]


def local_manifest(tmp: Path) -> dict[str, Any]:
    out = tmp / "local-run"
    env = {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    _run([sys.executable, "-m", "pipeline.cli", "run", str(REPO / "examples" / "demo.toml"), "--output", str(out)],
         env, 900, cwd=REPO)
    return json.loads((out / "manifest.json").read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="assay bench deploy_live", description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true", help="use the images already built")
    ap.add_argument("--compose", help="compose command (default: .venv-compose/bin/podman-compose)")
    ap.add_argument("--keep", action="store_true", help="leave the stack running (prints how to take it down)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds for the job to finish")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    t_start = time.monotonic()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "load_avg_1m_at_start": os.getloadavg()[0]}
    if not args.no_build:
        t0 = time.monotonic()
        log("building images (deploy/images/build.sh)")
        _run([str(REPO / "deploy" / "images" / "build.sh")], dict(os.environ), 3600, cwd=REPO)
        result["build_s"] = round(time.monotonic() - t0, 1)

    tmp = Path(tempfile.mkdtemp(prefix="assay-deploy-live-"))
    env, runtime_note = container_env(tmp, f"localhost/assay-worker:{TAG}")
    log(f"containers: {runtime_note}")
    result["runtime"] = runtime_note
    have_official = _run(["podman", "image", "exists", OFFICIAL_POSTGRES], env, 60, check=False).returncode == 0
    pg_image = OFFICIAL_POSTGRES if have_official else LOCAL_POSTGRES
    result["postgres_image"] = pg_image

    data = tmp / "data"
    (data / "examples" / "data").mkdir(parents=True)
    for f in sorted((REPO / "examples" / "data").glob("*.warc.gz")):  # the demo spec's relative glob
        shutil.copy(f, data / "examples" / "data" / f.name)
    for p in [tmp, *tmp.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # the containers run as uid 10001

    project = f"assaylive{os.getpid()}"
    api_port, dash_port = _free_port(), _free_port()
    pg_pass = secrets.token_urlsafe(18)
    cenv = {**env, "COMPOSE_PROJECT_NAME": project, "ASSAY_PG_PASSWORD": pg_pass,
            "ASSAY_RAY_TOKEN": secrets.token_hex(32), "ASSAY_DATA_DIR": str(data),
            "ASSAY_POSTGRES_IMAGE": pg_image, "ASSAY_API_PORT": str(api_port),
            "ASSAY_DASHBOARD_PORT": str(dash_port)}
    compose = _compose_cmd(args.compose) + ["-f", str(COMPOSE_FILE)]
    base = f"http://127.0.0.1:{api_port}"
    ok = False
    try:
        t0 = time.monotonic()
        log(f"compose up (project {project}, API on 127.0.0.1:{api_port})")
        _run(compose + ["up", "-d"], cenv, 600)
        _wait(lambda: _http("GET", base + "/health", timeout=5)[0] == 200, "the API's /health", 300)
        result["stack_up_s"] = round(time.monotonic() - t0, 1)
        api = _container(cenv, project, "api")
        head = _container(cenv, project, "ray-head")
        # the worker node and the API's CPU-less node have joined the head: 3 nodes alive
        def nodes() -> int:
            p = _run(["podman", "exec", head, "python", "-c",
                      "import ray; ray.init(address='auto', log_to_driver=False); "
                      "print(sum(n['Alive'] for n in ray.nodes()))"], cenv, 120, check=False)
            return int(p.stdout.split()[-1]) if p.returncode == 0 and p.stdout.split() else 0

        def three_nodes() -> int | None:
            n = nodes()
            return n if n >= 3 else None
        result["ray_nodes"] = _wait(three_nodes, "3 Ray nodes (head, worker, API)", 240, 5)
        catalog = f"postgresql://assay:{pg_pass}@postgres:5432/assay"
        tok = _wait(lambda: _run(["podman", "exec", api, "assay", "token", "create", "--root", "/var/lib/assay",
                                  "--catalog", catalog, "--role", "submit", "--name", "deploy-live"],
                                 cenv, 120).stdout.strip().splitlines()[-1], "a token from the API container", 120)
        code, _ = _http("GET", base + "/v1/jobs", token="assay_not-a-token")
        assert code == 401, f"a wrong token got HTTP {code}"

        t0 = time.monotonic()
        code, body = _http("POST", base + "/v1/jobs", token=tok, body=(REPO / "examples" / "demo.toml").read_bytes(),
                           ctype="application/toml", timeout=60)
        assert code == 201, f"submit: HTTP {code} {body[:500]!r}"
        job_id = json.loads(body)["id"]
        log(f"job {job_id} submitted")

        def done() -> dict[str, Any] | None:
            c, b = _http("GET", f"{base}/v1/jobs/{job_id}", token=tok)
            j = json.loads(b) if c == 200 else {}
            return j if j.get("status") in ("succeeded", "failed", "cancelled") else None
        job = _wait(done, f"job {job_id}", args.timeout, 2)
        result["job_s"] = round(time.monotonic() - t0, 1)
        result["job_id"] = job_id
        if job["status"] != "succeeded":
            _, logs = _http("GET", f"{base}/v1/jobs/{job_id}/logs", token=tok)
            raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}\n{logs.decode()[-3000:]}")

        snap = job["snapshot_id"]
        code, body = _http("GET", f"{base}/v1/snapshots/{snap}", token=tok, timeout=60)
        assert code == 200, f"manifest: HTTP {code}"
        served = json.loads(body)
        code, shard = _http("GET", f"{base}/v1/snapshots/{snap}/shards/0", token=tok, timeout=120)
        assert code == 200, f"shard 0: HTTP {code}"
        s0 = served["shards"][0]
        digest = hashlib.sha256(shard).hexdigest()
        assert digest == s0["sha256"], f"shard 0 sha256 {digest} != manifest {s0['sha256']}"
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(shard)).num_rows
        assert rows == s0["rows"], f"shard 0 has {rows} rows, manifest says {s0['rows']}"
        result.update(snapshot_id=snap, shard0_bytes=len(shard), shard0_rows=rows, shards=len(served["shards"]),
                      rows=served["totals"]["rows"])
        # the job's driver ran on the API container's Ray node (it has 0 CPUs: the stages ran on
        # the head and the worker); a job run without Ray would leave no driver log there
        drivers = _run(["podman", "exec", api, "sh", "-c",
                        "ls /tmp/ray/session_latest/logs/ | grep -c '^python-core-driver-' || true"],
                       cenv, 60, check=False).stdout.strip()
        result["driver_logs_on_api_node"] = int(drivers or 0)
        assert result["driver_logs_on_api_node"] >= 1, "the job's driver never connected to the Ray cluster"

        # 5b. the KubeRay RayJob's path (K8sJobMode): a submitter container of the worker image
        #     with only the Ray token runs `ray job submit` against the head's dashboard; the
        #     entrypoint `assay run SPEC --ray auto` runs as a Ray job on the head
        t0 = time.monotonic()
        rj, result["rayjob_wrong_token"] = rayjob_manifest(cenv, project, head, data)
        result["rayjob_s"] = round(time.monotonic() - t0, 1)

        log("running the same spec locally (assay run, in-process)")
        local = local_manifest(tmp)
        rj_diff = _diff(local, {**rj, "spec": {**rj["spec"], "input": {**rj["spec"]["input"],
                                                                    "paths": local["spec"]["input"]["paths"]}}})
        assert rj["spec"]["input"]["paths"] == ["/data/" + p for p in local["spec"]["input"]["paths"]], rj["spec"]["input"]
        result["rayjob_manifest_equal"] = not rj_diff
        assert not rj_diff, f"the RayJob-style run's manifest differs from a local run's in {rj_diff}"
        # the one field that may differ: the service resolves a spec's input globs under its
        # input root and records the files it read (its root scrubbed to <input-root-0>); they
        # must be exactly the files the local run's glob names
        import glob as globmod

        want = ["<input-root-0>/" + str(Path(p).relative_to(REPO))
                for pat in local["spec"]["input"]["paths"] for p in sorted(globmod.glob(str(REPO / pat)))]
        got = served["spec"]["input"]["paths"]
        assert got == want or got == local["spec"]["input"]["paths"], f"the job read {got}, not {want}"
        result["served_input_paths"] = got
        diff = _diff(local, {**served, "spec": {**served["spec"], "input": {**served["spec"]["input"],
                                                                          "paths": local["spec"]["input"]["paths"]}}})
        result["manifest_equal"] = not diff
        assert not diff, f"the stack's manifest differs from a local run's in {diff}"
        ok = True
    finally:
        if args.keep:
            log(f"left running: COMPOSE_PROJECT_NAME={project} {' '.join(compose)} down -v")
        else:
            t0 = time.monotonic()
            p = _run(compose + ["down", "-v"], cenv, 600, check=False)
            result["down_s"] = round(time.monotonic() - t0, 1)
            left = _run(["podman", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "-q"],
                        cenv, 60, check=False).stdout.split()
            vols = [v for v in _run(["podman", "volume", "ls", "-q"], cenv, 60, check=False).stdout.split()
                    if v.startswith(project + "_")]
            result["torn_down"] = p.returncode == 0 and not left and not vols
            if not result["torn_down"]:
                log(f"teardown left containers {left} volumes {vols}: {p.stderr[-500:]}")
            shutil.rmtree(tmp, ignore_errors=True)
        result["total_s"] = round(time.monotonic() - t_start, 1)
        result["ok"] = ok
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"compose stack run live on {result['date']}: job {result['job_id']} in {result['job_s']} s "
          f"(stack up in {result['stack_up_s']} s, {result['ray_nodes']} Ray nodes, {result['rows']} rows in "
          f"{result['shards']} shards), shard 0 sha256 ok, manifest equal to a local run's: {result['manifest_equal']} "
          f"(input paths: the same files, resolved under the input root); RayJob-style submission "
          f"(ray job submit with the token, K8sJobMode's path) in {result['rayjob_s']} s, manifest equal: "
          f"{result['rayjob_manifest_equal']}; "
          f"torn down: {result.get('torn_down')}; load average {result['load_avg_1m_at_start']:.1f} on "
          f"{os.cpu_count()} cores; containers: {runtime_note}")


if __name__ == "__main__":
    main()
