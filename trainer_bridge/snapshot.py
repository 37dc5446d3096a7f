"""The trainer's own snapshot reader: ``manifest.json`` + Parquet shards, nothing else.

The trainer never imports the pipeline (it may run on a machine that only has the snapshot), so
it keeps this tiny reader instead of sharing ``curriculum.snapshot_io``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "assay.snapshot/1"


def read_manifest(snapshot: str | Path) -> dict[str, Any]:
    """The manifest of a snapshot folder; a clear error when the folder is not a snapshot."""
    path = Path(snapshot)
    path = path / "manifest.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: the trainer reads snapshot folders holding manifest.json "
            "(make one with `assay run ...` or `assay curriculum build ...`)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    return manifest


class CorruptShardError(ValueError):
    """A shard whose sha256 is not the one its manifest recorded."""


def shard_files(snapshot: str | Path, manifest: dict[str, Any], verify: bool = True) -> list[Path]:
    """Absolute shard paths in manifest order (paths in the manifest are folder-relative).

    With ``verify`` (the default) every shard's sha256 is checked against the manifest first, so
    a bit flip or a truncated copy stops training with the shard's name instead of feeding it
    silently altered text (one extra sequential read per shard).
    """
    root = Path(snapshot)
    root = root if root.is_dir() else root.parent
    files = [root / s["path"] for s in manifest["shards"]]
    if verify:
        for path, entry in zip(files, manifest["shards"], strict=True):
            want = entry.get("sha256")
            if want and _sha256(path) != want:
                raise CorruptShardError(f"{path}: sha256 does not match the manifest (corrupt or altered shard)")
    return files


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def curriculum_phases(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Phases recorded by ``assay curriculum build`` (``extra.curriculum.phases``), or ``[]``."""
    return list(manifest.get("extra", {}).get("curriculum", {}).get("phases", []))
