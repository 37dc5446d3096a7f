"""``assay dedup ...``: run the dedup stages on their own (files or folders in, snapshot out)."""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path
from typing import Any

import click


class _NoPandas(importlib.abc.MetaPathFinder):
    """``import pandas`` fails, as if it were not installed (assay does not depend on it)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (`assay dedup` runs without pandas)", name=name)
        return None


def _without_pandas() -> bool:
    """In the ``assay`` process itself (console script or ``python -m pipeline.cli``), run as if
    pandas were not installed: no dedup code uses it, but pyarrow imports it on the first
    ``pa.array``/``to_numpy`` only to learn whether inputs are pandas objects (0.17 CPU-s of
    ~3 for 25,000 docs). Not in a process that goes on after the command (tests, a notebook):
    pyarrow caches its answer for the process's lifetime."""
    if "pandas" in sys.modules:
        return False
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if not ((spec is not None and spec.name == "pipeline.cli")
            or Path(getattr(main, "__file__", None) or "").name == "assay"):
        return False
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True


def _run(kind: str, config: dict[str, Any], inputs: tuple[str, ...], output: str) -> None:
    _without_pandas()
    from pipeline.run import run_single
    from pipeline.spec import SpecError

    try:
        manifest = run_single(kind, config, list(inputs), output, progress=True)
    except SpecError as e:  # a bad option value (e.g. --against naming no index): one line
        raise click.ClickException(str(e)) from None
    stats = manifest.get("stats", {})
    click.echo(
        json.dumps(
            {
                "output": output,
                "rows": manifest.get("totals", {}).get("rows"),
                "docs_in": stats.get("docs_in"),
                "dropped": stats.get("dropped"),
            }
        )
    )


@click.group()
def dedup() -> None:
    """Near-duplicate removal (MinHash LSH) and SoftDedup reweighting."""


@dedup.command("minhash")
@click.argument("inputs", nargs=-1, required=True)
@click.argument("output")
@click.option(
    "--threshold",
    default=0.8,
    show_default=True,
    type=float,
    help="Jaccard of word 5-gram shingle sets at or above which docs are near-duplicates.",
)
@click.option(
    "--mode",
    type=click.Choice(["remove", "annotate", "soft"]),
    default="remove",
    show_default=True,
    help="remove: keep one doc per cluster; annotate: add dedup.cluster/"
    "dedup.cluster_size only; soft: keep all, weight *= cluster_size^-alpha.",
)
@click.option(
    "--against",
    multiple=True,
    metavar="SNAPSHOT",
    help="Earlier snapshot (written with dedup.minhash) to dedup new docs against; "
    "repeatable. Its persisted LSH index is reused, nothing is recomputed.",
)
@click.option("--num-perm", default=128, show_default=True, type=int, help="MinHash permutations.")
@click.option("--ngram", default=5, show_default=True, type=int, help="Words per shingle.")
@click.option("--bands", default=None, type=int, help="LSH bands (default: from --threshold).")
@click.option("--rows", default=None, type=int, help="Rows per band (with --bands).")
@click.option(
    "--no-verify",
    is_flag=True,
    help="Join LSH candidates without checking their exact Jaccard (faster, less precise).",
)
@click.option(
    "--quality-column",
    default=None,
    help="Keep the cluster member with the highest value of this column.",
)
@click.option(
    "--soft-alpha",
    default=1.0,
    show_default=True,
    type=float,
    help="Exponent of the soft-mode weight cluster_size^-alpha.",
)
def minhash_cmd(
    inputs: tuple[str, ...],
    output: str,
    threshold: float,
    mode: str,
    against: tuple[str, ...],
    num_perm: int,
    ngram: int,
    bands: int | None,
    rows: int | None,
    no_verify: bool,
    quality_column: str | None,
    soft_alpha: float,
) -> None:
    """Near-duplicate dedup of INPUTS (JSONL/Parquet files or folders) into snapshot OUTPUT.

    Example: assay dedup minhash data/*.jsonl.zst runs/dedup --threshold 0.8 --mode annotate
    """
    config: dict[str, Any] = {
        "threshold": threshold,
        "mode": mode,
        "against": list(against),
        "num_perm": num_perm,
        "ngram": ngram,
        "verify": not no_verify,
        "soft_alpha": soft_alpha,
    }
    if bands is not None or rows is not None:
        config.update(bands=bands, rows=rows)
    if quality_column:
        config["quality_column"] = quality_column
    _run("dedup.minhash", config, inputs, output)


@dedup.command("soft")
@click.argument("inputs", nargs=-1, required=True)
@click.argument("output")
@click.option("--ngram", default=4, show_default=True, type=int, help="Words per n-gram.")
@click.option(
    "--width-log2",
    default=24,
    show_default=True,
    type=int,
    help="log2 of counters per count-min row (memory = depth * 4 * 2^width bytes).",
)
@click.option("--depth", default=2, show_default=True, type=int, help="Count-min sketch rows.")
@click.option("--min-weight", default=0.05, show_default=True, type=float, help="Lower clip.")
@click.option("--max-weight", default=20.0, show_default=True, type=float, help="Upper clip.")
@click.option(
    "--cluster-alpha",
    default=0.0,
    show_default=True,
    type=float,
    help="Also multiply by dedup.cluster_size^-alpha when that column is present.",
)
def soft_cmd(
    inputs: tuple[str, ...],
    output: str,
    ngram: int,
    width_log2: int,
    depth: int,
    min_weight: float,
    max_weight: float,
    cluster_alpha: float,
) -> None:
    """SoftDedup: write a `weight` column (∝ 1/commonness, mean 1) for INPUTS into OUTPUT.

    Example: assay dedup soft ../shared/data/pretrain_raw.jsonl.zst runs/soft
    """
    _run(
        "dedup.softdedup",
        {
            "ngram": ngram,
            "width_log2": width_log2,
            "depth": depth,
            "min_weight": min_weight,
            "max_weight": max_weight,
            "cluster_alpha": cluster_alpha,
        },
        inputs,
        output,
    )


@dedup.command("migrate-index")
@click.argument("snapshot")
def migrate_index_cmd(snapshot: str) -> None:
    """Convert the MinHash index of SNAPSHOT (or its state/<stage> folder) from the old
    assay.minhash-index/1 layout to the current one, so later jobs can dedup against it."""
    from dedup.migrate import migrate_index
    from dedup.minhash import _find_index

    try:
        state = _find_index(snapshot)
        n = migrate_index(state)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps({"index": str(state), "docs_converted": n}))
