"""Shared fixtures: real text from ../shared/data (CI has it) and the committed demo sample."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

# no model or dataset hub here: everything loads from local paths
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
EXAMPLES = REPO / "examples" / "data"


def read_jsonl_zst(path: Path, limit: int | None = None) -> list[dict]:
    import zstandard

    out = []
    with open(path, "rb") as fh:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
        for line in reader:
            out.append(json.loads(line))
            if limit is not None and len(out) >= limit:
                break
    return out


def doc_table(texts: list[str | None], source: str = "test") -> pa.Table:
    """A batch with the required columns around ``texts`` (ids are row numbers)."""
    n = len(texts)
    return pa.table({
        "doc_id": [str(i) for i in range(n)],
        "text": pa.array(texts, pa.large_string()),
        "source": [source] * n,
        "url": pa.array([None] * n, pa.string()),
    })


def reference_in_processes(fn, items: list, *, processes: int = 2, chunks: int = 8):  # type: ignore[no-untyped-def]
    """Start ``fn(chunk) -> list`` over ``items`` in ``processes`` spawned processes (in order).

    For the slow reference side of a parity test (a peer's per-document Python loop): pytest
    runs tests on one core and CI has two, so the peer runs beside our side instead of after it.
    Returns a callable that waits and gives ``fn(items)``'s concatenated result. ``fn`` must be a
    module-level function of an importable module (spawn pickles it by name); its results are
    exactly the serial ones (each chunk is the same per-document loop).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    step = max(1, -(-len(items) // chunks))
    pool = ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"))
    futures = [pool.submit(fn, items[i : i + step]) for i in range(0, len(items), step)]

    def result() -> list:
        try:
            return [x for f in futures for x in f.result()]
        finally:
            pool.shutdown(cancel_futures=True)

    return result


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.fail(f"real test data not found at {SHARED} (the repo expects ../shared/data beside it)")
    return SHARED


@pytest.fixture(scope="session")
def demo_warcs() -> list[Path]:
    return sorted(EXAMPLES.glob("*.warc.gz"))


@pytest.fixture(scope="session")
def raw_docs(shared_data: Path) -> list[dict]:
    """600 real documents from the raw pretraining corpus (doc pages, licences, literature...)."""
    return read_jsonl_zst(shared_data / "pretrain_raw.jsonl.zst", limit=600)
