"""Hostile input and access control: the regression list of issue 8, the auth matrix, confinement."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.pipeline.svc_util import auth, write_inputs

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.service import create_app  # noqa: E402
from pipeline.service.confine import ConfinementError, Confiner, Limits, _translate  # noqa: E402


@pytest.fixture()
def svc(tmp_path: Path, raw_docs):
    inputs = write_inputs(tmp_path / "crawl", raw_docs[:60], per_file=50)
    app = create_app(tmp_path / "svc", [inputs], run_jobs=False)
    toks = {role: app.state.catalog.create_token(role, role)[1] for role in ("read", "submit", "admin")}
    with TestClient(app) as c:
        yield c, toks, inputs, tmp_path


def _post(c, tok, body, ctype="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return c.post("/v1/jobs", content=data, headers={**auth(tok), "content-type": ctype})


def _spec(**stage) -> dict:
    return {"input": {"paths": ["docs-000.jsonl"]}, "stages": [stage] if stage else []}


# -- the bad-request list -------------------------------------------------------------------------

def test_malformed_bodies_are_4xx_never_500(svc):
    c, toks, _, _ = svc
    t = toks["submit"]
    cases = {
        "non-object JSON": (b"[1, 2, 3]", "application/json"),
        "a JSON string": (b'"spec"', "application/json"),
        "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        "deep TOML": (b"x = " + b"[" * 50_000 + b"]" * 50_000, "application/toml"),
        "5000-digit int": (b'{"input": {"paths": ["docs-000.jsonl"], "max_doc_bytes": ' + b"9" * 5000 + b'}, "stages": []}',
                           "application/json"),
        "5000-digit TOML int": (b"name = 'x'\n[execution]\nbatch_size = " + b"9" * 5000, "application/toml"),
        "NaN": (b'{"input": {"paths": ["a"]}, "x": NaN}', "application/json"),
        "not UTF-8": (b'{"name": "\xff\xfe"}', "application/json"),
        "broken JSON": (b'{"input": ', "application/json"),
        "broken TOML": (b"[input\npaths=", "application/toml"),
        "stages not a list": (json.dumps({"input": {"paths": ["docs-000.jsonl"]}, "stages": {"a": 1}}).encode(), "application/json"),
    }
    for what, (body, ctype) in cases.items():
        t0 = time.perf_counter()
        r = _post(c, t, body, ctype)
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
        assert isinstance(r.json()["detail"], str), what
        assert time.perf_counter() - t0 < 5, what


def test_browser_simple_bodies_and_cross_site_are_refused(svc):
    c, toks, _, _ = svc
    spec = json.dumps(_spec())
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        r = _post(c, toks["admin"], spec, ctype)
        assert r.status_code == 415, (ctype, r.status_code)
    r = c.post("/v1/jobs", content=spec, headers={**auth(toks["admin"]), "content-type": "application/json",
                                                  "sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    # no CORS: a preflight gets no Access-Control-Allow-Origin, and neither does a GET
    pre = c.options("/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    g = c.get("/v1/jobs", headers={**auth(toks["read"]), "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in g.headers


def test_sizes_and_policy_limits(svc):
    c, toks, _, _ = svc
    t = toks["submit"]
    big = _spec()
    big["name"] = "n" * (5 * 1024 * 1024)
    r = _post(c, t, big)
    assert r.status_code == 413
    r = _post(c, t, {**_spec(), "name": "n" * 300})
    assert r.status_code == 422 and "name" in r.json()["detail"]
    for field, value in (("workers", 1000), ("batch_size", 10**9)):
        r = _post(c, t, {**_spec(), "execution": {field: value}})
        assert r.status_code == 422 and f"execution.{field}" in r.json()["detail"], r.text
    r = _post(c, t, {"input": {"paths": ["docs-000.jsonl"] * 20_000}, "stages": []})
    assert r.status_code == 422
    r = _post(c, t, {"input": {"paths": ["docs-000.jsonl"], "split": 5000}, "stages": []})
    assert r.status_code == 422 and "split" in r.json()["detail"]
    assert c.get("/v1/jobs?limit=100000", headers=auth(t)).status_code == 422
    assert c.get("/v1/jobs/" + "x" * 5000, headers=auth(t)).status_code == 422
    assert c.get("/v1/jobs", headers=auth(t)).json()["total"] == 0  # nothing was queued


def test_paths_outside_roots_reveal_nothing(svc):
    c, toks, inputs, tmp = svc
    t = toks["submit"]
    probes = {
        "input": lambda p: {"input": {"paths": [p]}, "stages": []},
        "lid model": lambda p: _spec(kind="lid.fasttext", model_path=p),
        "fasttext model": lambda p: _spec(kind="classify.fasttext", model_path=p),
        "against": lambda p: _spec(kind="dedup.minhash", against=[p]),
    }
    for what, make in probes.items():
        details = []
        for p in ("/etc/passwd", "/etc/no-such-file-here", "/etc", "../../../../etc/passwd", "~/.ssh/id_rsa"):
            r = _post(c, t, make(p))
            assert r.status_code == 422, (what, p, r.text)
            d = r.json()["detail"]
            assert "not allowed" in d, (what, p, d)
            details.append(d.replace(repr(p), "<P>"))
            assert "exist" not in d and "denied" not in d.lower()
        assert len(set(details)) == 1, (what, details)  # existing or not: the same words
    # the old attack: a recursive glob over /usr answers at once, and nothing is walked
    t0 = time.perf_counter()
    r = _post(c, t, {"input": {"paths": ["/usr/**/*.json"]}, "stages": []})
    assert r.status_code == 422 and time.perf_counter() - t0 < 2
    # a symlink inside a root that points out of it is outside
    os.symlink("/etc", inputs / "etc-link")
    os.symlink("/etc/passwd", inputs / "passwd.jsonl")
    for p in ("etc-link/passwd", "passwd.jsonl", str(inputs / "etc-link" / "hostname")):
        r = _post(c, t, {"input": {"paths": [p]}, "stages": []})
        assert r.status_code == 422 and "not allowed" in r.json()["detail"], (p, r.text)
    r = _post(c, t, _spec(kind="lid.fasttext", model_path="etc-link/passwd"))
    assert r.status_code == 422 and "not allowed" in r.json()["detail"]
    # URLs and stage fields that smuggle a path are refused too
    assert _post(c, t, {"input": {"paths": ["file:///etc/passwd"]}, "stages": []}).status_code == 422
    r = _post(c, t, _spec(kind="filter.threshold", column="/etc/passwd"))
    assert r.status_code == 422 and "does not declare" in r.json()["detail"], r.text
    r = _post(c, t, _spec(kind="filter.threshold", column="catalog.sqlite"))  # no slash, still a file name
    assert r.status_code == 422 and "does not declare" in r.json()["detail"], r.text
    for ref in ("/etc/passwd", "../svc/catalog.sqlite", "catalog.sqlite"):  # a reference set is a path field too
        r = _post(c, t, _spec(kind="filter.decontaminate", reference=[ref]))
        assert r.status_code == 422, (ref, r.text)
    assert c.get("/v1/jobs", headers=auth(t)).json()["total"] == 0


def test_globs_are_bounded_and_stay_in_roots(tmp_path: Path, raw_docs):
    root = write_inputs(tmp_path / "crawl", raw_docs[:20], files=3, per_file=5)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "x.jsonl").write_text('{"text": "hello there"}\n')
    os.symlink(root, root / "sub" / "loop")  # a symlink loop inside the root
    os.symlink("/usr", root / "usr-link")
    conf = Confiner([root])
    got = conf.expand("input.paths[0]", "**/*.jsonl")
    assert [p.relative_to(root.resolve()).as_posix() for p in got] == [
        "docs-000.jsonl", "docs-001.jsonl", "docs-002.jsonl", "sub/deeper/x.jsonl"]
    assert conf.expand("f", "docs-00[01].jsonl") == [root.resolve() / "docs-000.jsonl", root.resolve() / "docs-001.jsonl"]
    assert len(conf.expand("f", str(root))) == 4  # a folder: its readable shards, links not followed
    with pytest.raises(ConfinementError, match="more than 2 files"):
        Confiner([root], limits=Limits(max_files=2)).expand("f", "**/*.jsonl")
    with pytest.raises(ConfinementError, match="visits more than"):
        Confiner([root], limits=Limits(max_visits=3)).expand("f", "**/*")
    shallow = Confiner([root], limits=Limits(max_depth=2)).expand("f", "**/*.jsonl")
    assert "x.jsonl" not in {p.name for p in shallow}
    with pytest.raises(ConfinementError, match="not allowed"):
        conf.expand("f", "usr-link/**/*.json")
    everything = conf.expand("f", "**/*")  # neither the loop nor the link out is followed
    assert all(p.is_relative_to(root.resolve()) for p in everything) and len(everything) == 4
    assert _translate("a/**/b*.jsonl").fullmatch("a/x/y/b1.jsonl")
    assert _translate("a/**/b*.jsonl").fullmatch("a/b.jsonl")
    assert not _translate("a/*.jsonl").fullmatch("a/x/b.jsonl")
    assert _translate("[!x]?.json").fullmatch("ab.json") and not _translate("[!x]?.json").fullmatch("xb.json")


def test_every_stage_declares_its_path_fields():
    """A config field that names a file must be a PathField, or the service cannot confine it."""
    from pipeline.registry import all_stages

    suspicious = ("path", "dir", "file", "against", "model", "index", "snapshot", "ref", "tokenizer", "checkpoint",
                  "cache", "vocab", "corpus", "root", "folder")
    # names that only look suspicious: a column/field/env-var name, a model's name on a remote server
    not_paths = ("_field", "_column", "_env")
    allowed = {"synth.generate.served_model"}
    missing = []
    for kind, cls in all_stages().items():
        declared = cls.Config.path_fields()
        for name, f in cls.Config.model_fields.items():
            if name.endswith(not_paths) or f"{kind}.{name}" in allowed:
                continue
            if any(s in name for s in suspicious) and name not in declared:
                ann = str(f.annotation)
                if "str" in ann:
                    missing.append(f"{kind}.{name}")
    assert missing == [], f"declare these with pipeline.stage.PathField: {missing}"


# -- auth -------------------------------------------------------------------------------------------

ROUTES = [  # (method, path, minimal role); ids that do not exist: authorization comes before lookups
    ("GET", "/", "read"), ("GET", "/metrics", "read"), ("GET", "/v1/stages", "read"),
    ("GET", "/v1/jobs", "read"), ("POST", "/v1/jobs", "submit"), ("GET", "/v1/jobs/0123456789abcdef", "read"),
    ("POST", "/v1/jobs/0123456789abcdef/cancel", "submit"), ("GET", "/v1/jobs/0123456789abcdef/logs", "read"),
    ("GET", "/v1/jobs/0123456789abcdef/events", "read"), ("GET", "/v1/snapshots", "read"),
    ("GET", "/v1/snapshots/abc", "read"), ("GET", "/v1/snapshots/abc/lineage", "read"),
    ("GET", "/v1/snapshots/abc/shards/0", "read"), ("GET", "/v1/snapshots/abc/report", "read"),
    ("DELETE", "/v1/snapshots/abc", "admin"), ("GET", "/v1/names", "read"),
    ("PUT", "/v1/names/abc/aliases/prod", "submit"), ("GET", "/v1/tokens", "admin"), ("POST", "/v1/tokens", "admin"),
    ("DELETE", "/v1/tokens/0123456789ab", "admin"), ("GET", "/openapi.json", "read"),
]
BODIES = {"/v1/jobs": {"input": {"paths": ["docs-000.jsonl"]}, "stages": []},
          "/v1/names/abc/aliases/prod": {"snapshot_id": "abc"}, "/v1/tokens": {"name": "x", "role": "read"}}


def test_auth_matrix_every_route(svc):
    c, toks, _, _ = svc
    app_routes = {(m, r.path) for r in c.app.routes for m in getattr(r, "methods", ()) if m != "HEAD"}
    ours = {(m, p.replace("0123456789abcdef", "{job_id}").replace("0123456789ab", "{token_id}")) for m, p, _ in ROUTES}
    norm = set()
    for m, p in ours:
        p = p.replace("/snapshots/abc", "/snapshots/{ref}").replace("/shards/0", "/shards/{n}")
        p = p.replace("/names/abc/aliases/prod", "/names/{name}/aliases/{alias}")
        norm.add((m, p))
    documented = app_routes - {("GET", "/health")}
    assert documented == norm, f"routes missing from the matrix: {documented ^ norm}"
    rank = {"none": -1, "read": 0, "submit": 1, "admin": 2}
    bad = {"wrong": "assay_not-a-real-token"}
    for method, path, need in ROUTES:
        for who in ("none", "wrong", "read", "submit", "admin"):
            h = {} if who in ("none",) else auth(bad["wrong"] if who == "wrong" else toks[who])
            body = BODIES.get(path)
            r = c.request(method, path, headers={**h, "content-type": "application/json"},
                          content=json.dumps(body) if body is not None else None)
            if who in ("none", "wrong"):
                assert r.status_code == 401, (method, path, who, r.status_code)
                assert r.headers.get("www-authenticate") == "Bearer"
            elif rank[who] < rank[need]:
                assert r.status_code == 403, (method, path, who, r.status_code)
            else:
                assert r.status_code not in (401, 403, 500), (method, path, who, r.status_code, r.text[:200])
    assert c.get("/health").status_code == 200  # the one open route
    assert c.get("/docs").status_code == 404 and c.get("/redoc").status_code == 404  # CDN pages: not served


def test_admin_deletes_and_manages_tokens(svc):
    c, toks, _, _ = svc
    admin = auth(toks["admin"])
    r = c.post("/v1/tokens", json={"name": "bot", "role": "read"}, headers=admin)
    assert r.status_code == 201 and r.json()["token"].startswith("assay_")
    new = r.json()
    assert c.get("/v1/jobs", headers=auth(new["token"])).status_code == 200
    listed = c.get("/v1/tokens", headers=admin).json()
    assert "token" not in json.dumps(listed).replace('"tokens"', "") or all("token" not in t for t in listed)
    assert c.delete(f"/v1/tokens/{new['id']}", headers=admin).status_code == 204
    assert c.get("/v1/jobs", headers=auth(new["token"])).status_code == 401
