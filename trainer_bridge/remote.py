"""Pull a snapshot over HTTP from ``assay serve``: ``http(s)://HOST/v1/snapshots/ID`` + a token.

    folder = pull_snapshot("http://curation:8000/v1/snapshots/demo@latest", token=os.environ["ASSAY_TOKEN"])
    ShardLoader("http://curation:8000/v1/snapshots/ID", tokenizer, remote_token=...)   # the same, inside

The trainer never imports the pipeline, so this is plain ``urllib`` against the REST API:

- the manifest (``GET /v1/snapshots/ID``) and each shard (``GET .../shards/N``) are streamed in
  chunks into a local cache (``$ASSAY_CACHE`` or ``~/.cache/assay``, ``remote/<snapshot id>/``),
  the sha256 computed on the way; a shard is renamed into place only when its size and sha256
  equal the manifest's, so a cached shard is always a verified one;
- a dropped connection, a refused connection (server restarting) or a 5xx/429 is retried with
  exponential backoff (capped) for up to ``max_wait_s``; a shard cut mid-transfer resumes with an
  HTTP ``Range`` request from the bytes already on disk (restarting from zero if the server
  answers 200 instead of 206); 401/403/404 fail at once with the reason;
- the result is an ordinary snapshot folder (``manifest.json`` + ``shards/``), so the
  ShardLoader's order — a pure function of (manifest, seed, epoch) — and its exact resume are
  the same as for a local snapshot: a loader rebuilt after the server was killed and restarted
  yields exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

URL_RE = re.compile(r"^https?://[^/]+(/.*)?/v1/snapshots/[^/]+/?$")
RETRY_STATUS = (429, 500, 502, 503, 504)
#: a manifest is ~300 bytes a shard: 256 MiB is ~800,000 shards; a larger answer is no manifest
MAX_MANIFEST_BYTES = 256 << 20
SHA256_RE = re.compile(r"[0-9a-f]{64}")


class RemoteError(RuntimeError):
    """The server refused (auth, unknown snapshot) or stayed unreachable past ``max_wait_s``."""


def is_remote(snapshot: str | Path) -> bool:
    return str(snapshot).startswith(("http://", "https://"))


def default_cache() -> Path:
    return Path(os.environ.get("ASSAY_CACHE") or Path.home() / ".cache" / "assay") / "remote"


def _sha256_file(path: Path, h: Any = None) -> Any:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


class RemoteSnapshot:
    """A snapshot on an assay server, mirrored into a verified local cache."""

    def __init__(self, url: str, token: str | None = None, cache_dir: str | Path | None = None,
                 max_wait_s: float = 600.0, timeout_s: float = 30.0, chunk_bytes: int = 1 << 20,
                 on_chunk: Callable[[int, int], None] | None = None):
        url = url.rstrip("/")
        if not URL_RE.match(url):
            raise ValueError(f"{url!r}: expected http(s)://HOST/v1/snapshots/<id or name@alias>")
        self.url = url
        self.token = token if token is not None else os.environ.get("ASSAY_TOKEN")
        self.cache = Path(cache_dir) if cache_dir is not None else default_cache()
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.chunk_bytes = chunk_bytes
        self.on_chunk = on_chunk  # (shard index, bytes so far) after each chunk: progress, tests
        self.retries = 0

    # -- HTTP with retries -------------------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Accept": "*/*", "User-Agent": "assay-trainer"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return {**h, **(extra or {})}

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.max_wait_s
        delay = 0.2
        waited = False
        while True:
            try:
                return fn()
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise RemoteError(f"{what}: HTTP {e.code} — {_detail(e)}; pass a valid token "
                                      "(--token or $ASSAY_TOKEN)") from None
                if e.code == 404:
                    raise RemoteError(f"{what}: HTTP 404 — {_detail(e)}") from None
                if e.code not in RETRY_STATUS:
                    raise RemoteError(f"{what}: HTTP {e.code} — {_detail(e)}") from None
                err: Exception = e
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as e:
                err = e
            if time.monotonic() + delay > deadline:
                raise RemoteError(f"{what}: server unreachable for {self.max_wait_s:g}s ({err})")
            if not waited:  # say so once, rather than wait silently for up to max_wait_s
                print(f"assay: {what}: {err}; retrying for up to {self.max_wait_s:g} s "
                      "(the server may be restarting)", file=sys.stderr, flush=True)
                waited = True
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _get_json(self, url: str) -> Any:
        def go() -> Any:
            req = urllib.request.Request(url, headers=self._headers({"Accept": "application/json"}))
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:  # noqa: S310 - the user's server
                body = r.read(MAX_MANIFEST_BYTES + 1)
            if len(body) > MAX_MANIFEST_BYTES:
                raise RemoteError(f"GET {url}: the answer is over {MAX_MANIFEST_BYTES >> 20} MiB: not a snapshot manifest")
            try:
                return json.loads(body)
            except ValueError:  # not JSON, not UTF-8
                raise RemoteError(f"GET {url}: the answer is not JSON: not a snapshot manifest") from None

        return self._retrying(f"GET {url}", go)

    # -- the mirror --------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        m = self._get_json(self.url)
        if not isinstance(m, dict) or "snapshot_id" not in m or "shards" not in m:
            raise RemoteError(f"{self.url} did not return a snapshot manifest")
        return m

    def pull(self) -> Path:
        """Download what is missing; returns the local snapshot folder (all shards verified)."""
        m = self.manifest()
        sid = str(m["snapshot_id"])
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", sid):
            raise RemoteError(f"{self.url}: unexpected snapshot id {sid!r}")
        folder = self.cache / sid
        base = self.url.rsplit("/", 1)[0] + "/" + sid
        if not isinstance(m["shards"], list):
            raise RemoteError(f"{self.url}: the manifest's shards is not a list")
        entries = [_shard_entry(self.url, i, s) for i, s in enumerate(m["shards"])]  # all checked before any download
        for i, (rel, size, sha) in enumerate(entries):
            dest = folder / rel
            if dest.is_file() and dest.stat().st_size == size and _sha256_file(dest).hexdigest() == sha:
                continue
            self._download(f"{base}/shards/{i}", dest, i, size, sha)
        tmp = folder / ".manifest.json.tmp"
        tmp.write_text(json.dumps(m, indent=1))
        os.replace(tmp, folder / "manifest.json")
        return folder

    def _download(self, url: str, dest: Path, index: int, size: int, sha: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")

        def attempt() -> None:
            have = part.stat().st_size if part.exists() else 0
            if have > size:
                part.unlink()
                have = 0
            headers = self._headers({"Range": f"bytes={have}-"} if have else None)
            req = urllib.request.Request(url, headers=headers)
            try:
                r = urllib.request.urlopen(req, timeout=self.timeout_s)  # noqa: S310 - the user's server
            except urllib.error.HTTPError as e:
                if e.code == 416:  # what we hold is not a prefix any more: start over
                    part.unlink(missing_ok=True)
                raise
            with r:
                if have and r.status != 206:  # the server ignored the range: start over
                    have = 0
                etag = (r.headers.get("ETag") or "").strip('"')
                if etag and etag != sha:
                    raise RemoteError(f"{url}: the server's shard has sha256 {etag[:12]}…, the manifest says {sha[:12]}…")
                with open(part, "ab" if have else "wb") as f:
                    done = have
                    while True:
                        block = r.read(min(self.chunk_bytes, size - done) if done < size else 1)
                        if not block:
                            break
                        if done >= size:  # never more on disk than the manifest says
                            raise RemoteError(f"{url}: the server sent more than the manifest's {size:,} bytes "
                                              "for this shard")
                        f.write(block)
                        done += len(block)
                        if self.on_chunk is not None:
                            f.flush()
                            self.on_chunk(index, done)
                    f.flush()
                    os.fsync(f.fileno())
            got = part.stat().st_size
            if got < size:
                raise ConnectionError(f"shard {index}: connection closed at {got} of {size} bytes")
            digest = _sha256_file(part).hexdigest()
            if got != size or digest != sha:
                part.unlink(missing_ok=True)
                raise ConnectionError(f"shard {index}: sha256 mismatch after download; fetching again")
            os.replace(part, dest)

        self._retrying(f"GET {url}", attempt)


def _shard_entry(url: str, i: int, s: Any) -> tuple[Path, int, str]:
    """(relative path, bytes, sha256) of manifest ``shards[i]``, checked: a hostile or broken
    server's manifest is one line naming the field, never a write outside the snapshot folder."""
    where = f"{url}: manifest shards[{i}]"
    if not isinstance(s, dict):
        raise RemoteError(f"{where} is not an object")
    path, size, sha = s.get("path"), s.get("bytes"), s.get("sha256")
    rel = Path(path) if isinstance(path, str) and path and "\0" not in path else None
    if rel is None or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise RemoteError(f"{where}.path: {path!r} is not a plain relative path")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RemoteError(f"{where}.bytes: {size!r} is not a byte count")
    if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
        raise RemoteError(f"{where}.sha256: {sha!r} is not a sha256 hex digest")
    return rel, size, sha


def _detail(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read() or b"{}")
        return str(body.get("detail", e.reason))[:300]
    except (ValueError, OSError):
        return str(e.reason)


def pull_snapshot(url: str, token: str | None = None, cache_dir: str | Path | None = None, **kw: Any) -> Path:
    """The local, verified copy of the snapshot at ``url`` (downloading what is missing)."""
    return RemoteSnapshot(url, token=token, cache_dir=cache_dir, **kw).pull()


def parse_snapshot_url(url: str) -> tuple[str, str]:
    """(server base URL, snapshot reference) of ``http(s)://HOST/.../v1/snapshots/REF``."""
    p = urllib.parse.urlsplit(url.rstrip("/"))
    head, _, ref = p.path.rpartition("/v1/snapshots/")
    return f"{p.scheme}://{p.netloc}{head}", ref
