"""The service's Scrubber hides server roots from clients, but only whole paths: found by running
the compose stack live (input root /data), where the served manifest read
`examples<input-root-0>/*.warc.gz` for the spec's relative `examples/data/*.warc.gz`."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.service.worker import Scrubber


def test_roots_are_replaced_as_whole_paths_only(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    root = tmp_path / "svc"
    s = Scrubber(root, [str(data)])
    d, r = str(data.resolve()), str(root.resolve())
    assert s(f"reading {d}/crawl/a.warc.gz") == "reading <input-root-0>/crawl/a.warc.gz"
    assert s(f'"{d}"') == '"<input-root-0>"'
    assert s(f"{r}/snapshots/x and {d}") == "<service-root>/snapshots/x and <input-root-0>"
    # the same characters inside a longer path or a relative one stay as they are
    for text in (f"examples{d}/*.warc.gz", f"{d}base/x", f"{d}.bak", f"/mnt{d}/x", f"{d}-old"):
        assert s(text) == text


def test_a_manifest_with_a_relative_path_under_a_short_root_is_unchanged():
    s = Scrubber(Path("/var/lib/assay"), ["/data"])
    manifest = {"spec": {"input": {"paths": ["examples/data/*.warc.gz"]}}, "name": "demo"}
    text = json.dumps(manifest)
    assert json.loads(s(text)) == manifest
    assert s("/data/examples/data/a.warc.gz") == "<input-root-0>/examples/data/a.warc.gz"
