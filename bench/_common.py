"""Small helpers the bench scripts share: the shared data folder, reading its zstd JSONL,
the usual ``--data`` / ``--out`` arguments and writing the results as JSON."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: ``../shared/data`` beside the checkout.
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def jsonl_zst_lines(path: Path) -> Iterator[str]:
    """The lines of a zstd-compressed JSONL file as text, streamed."""
    import zstandard

    with open(path, "rb") as f:
        yield from io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")


def bench_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """``assay bench NAME``'s parser (description: the module docstring's first line) with --data."""
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    return ap


def add_out(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")


def write_json(path: Path | None, results: Any) -> None:
    """Write ``results`` as indented JSON to ``path`` (its folder made); nothing when None."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
