"""The snapshot manifest and the run's statistics (format: docs/manifest.md).

The manifest is built only from completion markers and the final shard files, and holds no
times, so the same spec on the same input gives the same manifest however often the run was
killed and resumed. Wall and CPU seconds go to ``stats.json`` beside it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import pipeline
from pipeline.plan import Plan
from pipeline.spec import PipelineSpec
from pipeline import storage
from pipeline.storage import Loc
from pipeline.writers import sha256_file

FORMAT = "assay.snapshot/1"


def merge_stats(markers: list[dict[str, Any]], plan: Plan, wall_s: float = 0.0) -> dict[str, Any]:
    """Sum per-shard counters into per-stage totals and check that the counts balance."""
    order = ["read"] + [st.name for seg in plan.segments for st in seg.all_stages()]
    counts: dict[str, Counter[str]] = {name: Counter() for name in order}
    times: dict[str, Counter[str]] = {}
    last_seg = len(plan.segments) - 1
    kept = 0
    for m in markers:
        for name, c in m["stages"].items():
            counts.setdefault(name, Counter()).update(c)
        for name, t in m.get("times", {}).items():
            times.setdefault(name, Counter()).update(t)
        if m["segment"] == last_seg:
            kept += int(m["rows"])
    read = counts["read"]
    docs_in = int(read.get("docs_in", 0))
    quarantined = int(read.get("quarantined", 0))
    dropped = sum(int(c.get("dropped", 0)) for name, c in counts.items() if name != "read")
    # rows made by generation stages (synth.generate) enter the balance beside the read ones
    generated = sum(int(c.get("generated", 0)) for name, c in counts.items() if name != "read")
    stages = []
    kinds = {st.name: st.kind for seg in plan.segments for st in seg.all_stages()}
    for name in order:
        c = counts[name]
        t = times.get(name, Counter())
        wall = float(t.get("wall_s", 0.0))
        bytes_in = int(c.get("bytes_in", 0))
        entry: dict[str, Any] = {
            "name": name,
            "kind": kinds.get(name, "read"),
            "docs_in": int(c.get("docs_in", 0)),
            "docs_out": int(c.get("docs_out", 0)),
            "dropped": {k.split(".", 1)[1]: int(v) for k, v in sorted(c.items()) if k.startswith("dropped.")},
            "quarantined": {k.split(".", 1)[1]: int(v) for k, v in sorted(c.items()) if k.startswith("quarantined.")},
            "bytes_in": bytes_in,
            "wall_s": round(wall, 4),
            "cpu_s": round(float(t.get("cpu_s", 0.0)), 4),
            "docs_per_s": round(c.get("docs_in", 0) / wall, 1) if wall > 0 else None,
            "mb_per_s": round(bytes_in / 1e6 / wall, 2) if wall > 0 else None,
            "counters": {k: v for k, v in sorted(c.items()) if not k.startswith(("dropped", "quarantined"))
                         and k not in ("docs_in", "docs_out", "bytes_in")},
        }
        stages.append(entry)
    return {
        "docs_in": docs_in,
        "kept": kept,
        "dropped": dropped,
        "quarantined": quarantined,
        "generated": generated,
        "balanced": docs_in + generated == kept + dropped + quarantined,
        "wall_s": round(wall_s, 3),
        "stages": stages,
    }


def counts_only(stats: dict[str, Any]) -> dict[str, Any]:
    """Stats without times (what goes into the manifest)."""
    gen = {"generated": stats["generated"]} if stats.get("generated") else {}
    return {
        "docs_in": stats["docs_in"],
        **gen,
        "kept": stats["kept"],
        "dropped": stats["dropped"],
        "quarantined": stats["quarantined"],
        "stages": {
            s["name"]: {"docs_in": s["docs_in"], "docs_out": s["docs_out"], "dropped": s["dropped"],
                        "quarantined": s["quarantined"]}
            for s in stats["stages"]
        },
    }


def totals(shards: list[dict[str, Any]]) -> dict[str, int | None]:
    """The manifest's ``totals`` block from its shard entries.

    ``words`` are whitespace words; ``tokens`` come from the spec's tokenizer and are None
    when it names none (or when any shard lacks a count).
    """
    toks = [s.get("tokens") for s in shards]
    return {
        "rows": sum(s["rows"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "words": sum(int(s.get("words", 0)) for s in shards),
        "tokens": sum(toks) if all(t is not None for t in toks) else None,  # type: ignore[misc]
        "shards": len(shards),
    }


def _portable_spec(spec: PipelineSpec) -> dict[str, Any]:
    """The canonical spec without where it wrote (the snapshot's own folder)."""
    data = spec.canonical()
    data["output"] = {k: v for k, v in data["output"].items() if k != "dir"}
    return data


def _tokenizer_info(spec: PipelineSpec) -> dict[str, str] | None:
    """What counted ``tokens``: the tokenizer file's sha256 (None when the spec names none)."""
    if not spec.output.tokenizer:
        return None
    from pipeline.tokens import tokenizer_file, tokenizer_sha256

    return {"file": tokenizer_file(spec.output.tokenizer).name, "sha256": tokenizer_sha256(spec.output.tokenizer)}


def build_manifest(spec: PipelineSpec, spec_hash: str, root: Loc, final_markers: list[dict[str, Any]],
                   stats: dict[str, Any], parents: list[str] | None = None) -> dict[str, Any]:
    shards = []
    fields: dict[str, str] = {}
    for m in sorted(final_markers, key=lambda d: d["shard"]):
        if not m.get("output"):
            continue
        path = root / m["output"]
        sch = pq.read_schema(storage.open_input_file(path))
        for f in sch:
            fields.setdefault(f.name, str(f.type))
        shards.append({
            "path": m["output"],
            "rows": int(m["rows"]),
            "bytes": storage.size(path),
            "sha256": sha256_file(path),
            "words": int(m.get("words", 0)),
            "tokens": None if m.get("tokens") is None or spec.output.tokenizer is None else int(m["tokens"]),
            "phase": None,
            "input": storage.as_loc(m["input"]).name,
        })
    content = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()
    against = []  # lineage: the snapshots stages declare they read (``snapshot`` path fields)
    for stage in spec.build_stages():
        for p in stage.reads_snapshots():
            mf = Path(p) / "manifest.json"
            if mf.exists():
                import json

                against.append(json.loads(mf.read_text()).get("snapshot_id"))
    return {
        "format": FORMAT,
        "snapshot_id": f"{spec_hash[:12]}-{content[:12]}",
        "name": spec.name,
        "code_version": pipeline.__version__,
        "spec": _portable_spec(spec),
        "spec_hash": spec_hash,
        "parents": sorted({*(parents or []), *against}),
        "schema": [{"name": k, "type": v} for k, v in fields.items()],
        "shards": shards,
        "totals": totals(shards),
        "tokenizer": _tokenizer_info(spec),
        "stats": counts_only(stats),
        "extra": {},
    }


class CorruptShardError(ValueError):
    """A snapshot shard whose bytes are not the ones its manifest recorded."""


def read_manifest(snapshot: str | Loc) -> dict[str, Any]:
    """The manifest of a snapshot folder (local or URL); a clear error when there is none."""
    root = storage.as_loc(snapshot)
    mf = root if root.name == "manifest.json" else root / "manifest.json"
    if not storage.exists(mf):
        raise FileNotFoundError(f"{str(snapshot)!r} is not a snapshot: no manifest.json")
    return storage.read_json(mf)


def check_shard(root: str | Loc, entry: dict[str, Any]) -> None:
    """Raise :class:`CorruptShardError` unless the shard's size and sha256 match its manifest entry."""
    path = storage.as_loc(root) / entry["path"]
    if not storage.exists(path):
        raise CorruptShardError(f"{path}: missing (the manifest lists it)")
    got_size = storage.size(path)
    if got_size != entry["bytes"]:
        raise CorruptShardError(f"{path}: {got_size} bytes, the manifest says {entry['bytes']}")
    got = storage.sha256(path)
    if got != entry["sha256"]:
        raise CorruptShardError(f"{path}: sha256 {got[:16]}… does not match the manifest's {entry['sha256'][:16]}…")


def verify_snapshot(snapshot: str | Loc) -> tuple[dict[str, Any], list[str]]:
    """(manifest, problems): every shard's size, sha256 and row count against the manifest."""
    root = storage.as_loc(snapshot)
    manifest = read_manifest(root)
    problems: list[str] = []
    for entry in manifest["shards"]:
        try:
            check_shard(root, entry)
            rows = pq.read_metadata(storage.open_input_file(root / entry["path"])).num_rows
            if rows != entry["rows"]:
                problems.append(f"{entry['path']}: {rows} rows, the manifest says {entry['rows']}")
        except CorruptShardError as e:
            problems.append(str(e))
        except Exception as e:  # noqa: BLE001 - unreadable Parquet with a matching hash is still a problem
            problems.append(f"{entry['path']}: unreadable: {e}")
    if totals(manifest["shards"]) != manifest.get("totals"):
        problems.append("totals do not add up over the shard entries")
    content = hashlib.sha256("".join(s["sha256"] for s in manifest["shards"]).encode()).hexdigest()
    if not str(manifest.get("snapshot_id", "")).endswith(content[:12]):
        problems.append("snapshot_id does not match the shards' sha256s")
    return manifest, problems
