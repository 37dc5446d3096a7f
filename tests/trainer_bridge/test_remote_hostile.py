"""A hostile (or broken) server behind a snapshot URL: the trainer's pull refuses its manifest
with one line naming the field, and never writes more of a shard than the manifest declares
(trainer_bridge/remote.py). The server is a real HTTP server on 127.0.0.1 (http.server)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trainer_bridge.remote import RemoteError, RemoteSnapshot

SHARD = b"PAR1" + b"real bytes of a shard" * 40 + b"PAR1"
SHA = hashlib.sha256(SHARD).hexdigest()
GOOD = {"path": "shards/part-00000.parquet", "bytes": len(SHARD), "sha256": SHA}


class _Hostile(BaseHTTPRequestHandler):
    answers: dict[str, bytes] = {}  # path -> body (the manifest, the shards)
    sent: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.answers.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
            self.sent.append(len(body))
        except OSError:  # the client hung up: what a careful client does
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hostile() -> Iterator[tuple[str, dict[str, bytes]]]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    _Hostile.answers = {}
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1/snapshots/s1", _Hostile.answers
    finally:
        srv.shutdown()
        srv.server_close()


def _manifest(*shards: dict) -> bytes:
    return json.dumps({"snapshot_id": "s1", "shards": list(shards)}).encode()


@pytest.mark.parametrize(("answer", "says"), [
    (b"<html>502 Bad Gateway</html>", "the answer is not JSON: not a snapshot manifest"),
    (_manifest({**GOOD, "path": "../../outside.parquet"}), "manifest shards[0].path: '../../outside.parquet' is not a plain relative path"),
    (_manifest(GOOD, {**GOOD, "path": "/etc/cron.d/x"}), "manifest shards[1].path: '/etc/cron.d/x' is not a plain relative path"),
    (_manifest({**GOOD, "path": ""}), "manifest shards[0].path: '' is not a plain relative path"),
    (_manifest({**GOOD, "path": 7}), "manifest shards[0].path: 7 is not a plain relative path"),
    (_manifest({**GOOD, "bytes": "many"}), "manifest shards[0].bytes: 'many' is not a byte count"),
    (_manifest({**GOOD, "bytes": -1}), "manifest shards[0].bytes: -1 is not a byte count"),
    (_manifest({k: v for k, v in GOOD.items() if k != "sha256"}), "manifest shards[0].sha256: None is not a sha256 hex digest"),
    (_manifest("shards/a.parquet"), "manifest shards[0] is not an object"),
    (json.dumps({"snapshot_id": "s1", "shards": {"a": 1}}).encode(), "the manifest's shards is not a list"),
])
def test_a_hostile_manifest_is_one_line_naming_the_field(hostile, tmp_path: Path, answer: bytes, says: str) -> None:
    url, answers = hostile
    answers["/v1/snapshots/s1"] = answer
    answers["/v1/snapshots/s1/shards/0"] = SHARD
    with pytest.raises(RemoteError) as e:
        RemoteSnapshot(url, token="t", cache_dir=tmp_path / "cache", max_wait_s=1).pull()
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "outside.parquet").exists()
    assert not list((tmp_path / "cache").rglob("*.parquet*"))  # nothing downloaded before the manifest was checked


def test_a_shard_longer_than_its_manifest_entry_is_cut_off_at_once(hostile, tmp_path: Path) -> None:
    url, answers = hostile
    answers["/v1/snapshots/s1"] = _manifest(GOOD)
    answers["/v1/snapshots/s1/shards/0"] = SHARD + b"\0" * (8 << 20)  # 8 MiB more than declared
    rs = RemoteSnapshot(url, token="t", cache_dir=tmp_path / "cache", max_wait_s=30, chunk_bytes=1 << 16)
    with pytest.raises(RemoteError, match=f"the server sent more than the manifest's {len(SHARD):,} bytes"):
        rs.pull()
    assert rs.retries == 0  # refused at once, not retried for max_wait_s
    on_disk = [p.stat().st_size for p in (tmp_path / "cache").rglob("*.part")]
    assert on_disk and max(on_disk) <= len(SHARD), on_disk
    answers["/v1/snapshots/s1/shards/0"] = SHARD  # the same server, fixed: the pull completes and verifies
    folder = rs.pull()
    assert (folder / GOOD["path"]).read_bytes() == SHARD
