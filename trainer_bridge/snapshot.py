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


def shard_files(snapshot: str | Path, manifest: dict[str, Any]) -> list[Path]:
    """Absolute shard paths in manifest order (paths in the manifest are folder-relative)."""
    root = Path(snapshot)
    root = root if root.is_dir() else root.parent
    return [root / s["path"] for s in manifest["shards"]]


def curriculum_phases(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Phases recorded by ``assay curriculum build`` (``extra.curriculum.phases``), or ``[]``."""
    return list(manifest.get("extra", {}).get("curriculum", {}).get("phases", []))
