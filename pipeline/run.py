"""Entry points for running specs from Python (the CLI and the REST service use these)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.spec import PipelineSpec


def run_spec(spec: PipelineSpec, ray: str | None = None, progress: bool = True, workers: int | None = None,
             partitions: int | None = None) -> dict[str, Any]:
    """Run ``spec`` and return its manifest. ``ray`` = "auto" or a cluster address uses Ray.

    ``partitions``: how many hash ranges / shard groups each barrier reduce is split into
    (default: the local workers, or the Ray cluster's CPUs); it never changes the output.
    """
    if ray:
        from pipeline.ray_executor import RayExecutor

        return RayExecutor(address=ray, progress=progress, partitions=partitions).run(spec)
    from pipeline.executor import LocalExecutor

    return LocalExecutor(workers=workers, progress=progress, partitions=partitions).run(spec)


def single_stage_spec(kind: str, config: dict[str, Any] | None, inputs: list[str], output: str,
                      **input_opts: Any) -> PipelineSpec:
    """A one-stage spec: read INPUT (JSONL/Parquet/WARC files or folders), run KIND, write OUTPUT."""
    data: dict[str, Any] = {
        "name": f"stage-{kind}",
        "input": {"paths": [str(p) for p in inputs], **input_opts},
        "output": {"dir": str(output)},
        "stages": [{"kind": kind, **(config or {})}],
    }
    return PipelineSpec.from_dict(data)


def run_single(kind: str, config: dict[str, Any] | None, inputs: list[str], output: str,
               progress: bool = False, **input_opts: Any) -> dict[str, Any]:
    """Run one stage over files or folders and write a snapshot to ``output``; returns the manifest."""
    return run_spec(single_stage_spec(kind, config, inputs, output, **input_opts), progress=progress)


def load_manifest(snapshot: str | Path) -> dict[str, Any]:
    """A snapshot's manifest: ``snapshot`` is its folder, its URL (``s3://…``, ``gs://…``, any
    fsspec URL) or the ``manifest.json`` itself."""
    import json

    from pipeline import storage

    loc = storage.as_loc(snapshot)
    mf = loc if loc.name == "manifest.json" and storage.is_file(loc) else loc / "manifest.json"
    if not storage.exists(mf):
        raise FileNotFoundError(f"{str(snapshot)!r} is not a snapshot: no manifest.json")
    try:
        return dict(json.loads(storage.read_bytes(mf)))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{str(mf)!r} is not a valid manifest (not a JSON object: {e})") from None
