"""ShardLoader over HTTP from a live `assay serve`: verified cache, retries across a server killed
mid-shard and restarted, and exact resume (the batches equal an uninterrupted local loader's)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import read_jsonl_zst
from tests.pipeline.svc_util import LiveServer, auth, cli, wait_job
from trainer_bridge.loader import ShardLoader
from trainer_bridge.remote import RemoteError, RemoteSnapshot, pull_snapshot

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("input_ids", "labels", "weights"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A live server holding a 3-shard snapshot of real text (quality_train), made by a job."""
    tmp_path = tmp_path_factory.mktemp("served")
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    recs = read_jsonl_zst(DATA / "quality_train.jsonl.zst")[::4]
    for f in range(3):
        with open(crawl / f"q-{f}.jsonl", "w") as fh:
            for i, r in enumerate(recs[f::3]):
                fh.write(json.dumps({"id": f"{f}-{i}", "text": r["text"]}) + "\n")
    root = tmp_path / "svc"
    submit = cli("token", "create", "--root", str(root), "--role", "submit", "--name", "ci").stdout.strip()
    read = cli("token", "create", "--root", str(root), "--role", "read", "--name", "trainer").stdout.strip()
    srv = LiveServer(root, [crawl]).start()
    try:
        r = httpx.post(srv.url + "/v1/jobs", json={"name": "q", "input": {"paths": ["."]}, "stages": []}, headers=auth(submit))
        job = wait_job(lambda p, headers: httpx.get(srv.url + p, headers=headers), r.json()["id"], auth(submit))
        assert job["status"] == "succeeded", job
        yield srv, read, job["snapshot_id"], root / "snapshots" / job["snapshot_id"]
    finally:
        srv.stop()


def test_pull_survives_a_server_killed_mid_shard_and_resume_is_exact(served, tmp_path: Path, tokenizer_dir: Path):
    srv, token, sid, local = served
    url = f"{srv.url}/v1/snapshots/{sid}"
    restarted = threading.Event()

    def restart_later() -> None:
        time.sleep(1.5)
        srv.start()
        restarted.set()

    state = {"killed": False}

    def on_chunk(shard: int, done: int) -> None:
        if shard == 1 and not state["killed"]:
            state["killed"] = True
            srv.kill()  # the transfer of shard 1 is cut after its first chunk
            threading.Thread(target=restart_later, daemon=True).start()

    cache = tmp_path / "cache"
    rs = RemoteSnapshot(url, token=token, cache_dir=cache, chunk_bytes=8192, on_chunk=on_chunk, max_wait_s=60)
    folder = rs.pull()
    assert state["killed"] and restarted.is_set() and rs.retries > 0
    m = json.loads((folder / "manifest.json").read_text())
    assert m["snapshot_id"] == sid and len(m["shards"]) == 3
    for s in m["shards"]:
        assert (folder / s["path"]).read_bytes() == (local / s["path"]).read_bytes()

    # the reference: an uninterrupted loader over the server's own folder
    ref = ShardLoader(local, tokenizer_dir, seq_len=32, batch_size=4, seed=3, cache_dir=tmp_path / "tok-ref")
    it = iter(ref)
    expected = [next(it) for _ in range(10)]

    a = ShardLoader(url, tokenizer_dir, seq_len=32, batch_size=4, seed=3, cache_dir=tmp_path / "tok-a",
                    remote_token=token, remote_cache=cache)
    ita = iter(a)
    first = [next(ita) for _ in range(5)]
    saved = a.state_dict()
    assert all(_same(e, g) for e, g in zip(expected[:5], first))

    srv.kill()  # the trainer is interrupted mid-epoch while the server is down; both come back
    srv.start()
    b = ShardLoader(url, tokenizer_dir, seq_len=32, batch_size=4, seed=3, cache_dir=tmp_path / "tok-b",
                    remote_token=token, remote_cache=cache)
    b.load_state_dict(saved)
    rest = [x for _, x in zip(range(5), b)]
    assert [x["batch_index"] for x in rest] == [5, 6, 7, 8, 9]
    assert all(_same(e, g) for e, g in zip(expected[5:], rest))


def test_cache_is_verified_and_auth_errors_are_clear(served, tmp_path: Path):
    srv, token, sid, _ = served
    url = f"{srv.url}/v1/snapshots/{sid}"
    folder = pull_snapshot(url, token=token, cache_dir=tmp_path / "c")
    m = json.loads((folder / "manifest.json").read_text())
    shard = folder / m["shards"][0]["path"]
    good = shard.read_bytes()
    shard.write_bytes(good[:-10] + b"0123456789")  # a damaged cached copy is fetched again
    pull_snapshot(url, token=token, cache_dir=tmp_path / "c")
    assert shard.read_bytes() == good
    with pytest.raises(RemoteError, match="401"):
        pull_snapshot(url, token="assay_wrong", cache_dir=tmp_path / "d", max_wait_s=5)
    with pytest.raises(RemoteError, match="404"):
        pull_snapshot(f"{srv.url}/v1/snapshots/nope", token=token, cache_dir=tmp_path / "d", max_wait_s=5)
    with pytest.raises(ValueError, match="expected http"):
        RemoteSnapshot("http://host/other/path")
    alias = pull_snapshot(f"{srv.url}/v1/snapshots/q@latest", token=token, cache_dir=tmp_path / "c")
    assert alias == folder


def test_trainer_never_imports_the_pipeline():
    import subprocess
    import sys

    from tests.pipeline.svc_util import env

    code = ("import sys, trainer_bridge.remote, trainer_bridge.loader; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_train_pretrain_and_report_take_a_url(served, tmp_path: Path, tokenizer_dir: Path, monkeypatch):
    from click.testing import CliRunner

    from tests.trainer_bridge.test_train_cli import TINY
    from trainer_bridge.cli import train

    srv, token, sid, _ = served
    monkeypatch.setenv("ASSAY_CACHE", str(tmp_path / "cache"))
    url = f"{srv.url}/v1/snapshots/{sid}"
    r = CliRunner().invoke(train, ["pretrain", url, str(tmp_path / "run"), "--token", token,
                                   "--tokenizer", str(tokenizer_dir), *TINY])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cache" / "remote" / sid / "manifest.json").is_file()
    bad = CliRunner().invoke(train, ["pretrain", url, str(tmp_path / "run2"), "--token", "assay_nope",
                                     "--tokenizer", str(tokenizer_dir), *TINY])
    assert bad.exit_code != 0 and "401" in bad.output
    out = tmp_path / "r.html"
    rep = cli("report", url, "--out", str(out), "--token", token)
    assert "self-contained" in rep.stdout and sid in out.read_text()


def test_a_refused_connection_says_once_that_it_retries(tmp_path, capsys):
    from tests.pipeline.svc_util import free_port

    rs = RemoteSnapshot(f"http://127.0.0.1:{free_port()}/v1/snapshots/abc", token="t", cache_dir=tmp_path, max_wait_s=1.5)
    with pytest.raises(RemoteError, match="server unreachable for 1.5s"):
        rs.manifest()
    err = capsys.readouterr().err.strip().splitlines()
    assert rs.retries >= 2 and len(err) == 1 and "retrying for up to 1.5 s" in err[0], err
