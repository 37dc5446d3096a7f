"""Distributed connected components and the partitioned MinHash reduce = single-process union-find."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.components import components_plan, load_labels, send_undirected, union_find_labels
from dedup.lsh import band_keys, cluster_band, find_roots
from dedup.minhash import MinhashDedupStage
from dedup.signature import signatures_and_sets
from pipeline.reduce import run_plan_inline
from pipeline.stage import StageContext

from .conftest import read_jsonl_zst


def _components(tmp: Path, ids: np.ndarray, a: np.ndarray, b: np.ndarray, partitions: int) -> dict[int, int]:
    send_undirected(str(tmp / "e"), ids[a], ids[b], partitions, "init")
    out = run_plan_inline(components_plan(str(tmp / "e"), str(tmp / "w"), partitions))
    got: dict[int, int] = {}
    for q in range(partitions):
        root, node = load_labels(out, q)
        got.update(zip(node.tolist(), root.tolist(), strict=True))
    return got


@pytest.mark.parametrize("partitions", [1, 2, 5])
def test_large_star_small_star_equals_union_find(tmp_path: Path, partitions: int) -> None:
    rng = np.random.default_rng(partitions)
    n = 4000
    a, b = rng.integers(0, n, 1800), rng.integers(0, n, 1800)
    chain = rng.permutation(n)[:1000]  # one long path: the worst case for label propagation
    star = rng.permutation(n)[:300]
    a = np.r_[a, chain[:-1], np.full(299, star[0])]
    b = np.r_[b, chain[1:], star[1:]]
    keep = a != b
    a, b = a[keep], b[keep]
    # node ids as the reduce makes them: (shard << 32 | row), increasing with the index
    ids = np.sort(rng.choice(np.arange(8, dtype=np.int64) << 32, n) | np.arange(n))
    ids = np.sort(np.unique(ids))
    n = ids.size
    a, b = a % n, b % n
    keep = a != b
    a, b = a[keep], b[keep]
    ref = union_find_labels(n, a, b)
    got = _components(tmp_path, ids, a, b, partitions)
    touched = np.unique(np.r_[a, b])
    assert got == {int(ids[i]): int(ids[ref[i]]) for i in touched}


def _reference_clusters(table: pa.Table, stage: MinhashDedupStage) -> np.ndarray:
    """The single-process reduce: every band's buckets walked with one union-find over all docs."""
    sig, flat, offs = signatures_and_sets(table.column("text"), stage.params)
    keys = band_keys(sig, stage.bands, stage.rows)
    n = table.num_rows
    parent = np.arange(n, dtype=np.int64)
    empty = np.diff(offs) == 0
    unique = np.arange(n, dtype=np.uint64) | np.uint64(1 << 63)
    stats = np.zeros(3, dtype=np.int64)
    none = (np.zeros(1, np.uint32), np.zeros(1, np.int64))
    c = stage.config
    for band in range(stage.bands):
        k = np.where(empty, unique, keys[:, band])
        cluster_band(k, parent, n, (flat, offs), none, c.threshold, c.verify, c.max_bucket, c.window, stats)
    return find_roots(parent)


def _partition_of(labels: list) -> set[frozenset[int]]:  # type: ignore[type-arg]
    groups: dict = {}  # type: ignore[type-arg]
    for i, lab in enumerate(labels):
        groups.setdefault(lab, set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture(scope="module")
def real_neardups(to_table) -> pa.Table:  # type: ignore[no-untyped-def]
    cop = read_jsonl_zst("neardup_copyright.jsonl.zst")
    chg = read_jsonl_zst("neardup_changelog.jsonl.zst", limit=400)
    raw = read_jsonl_zst("pretrain_raw.jsonl.zst", limit=300)
    rows = [{"id": r["id"], "text": r["text"]} for r in cop + chg]
    rows += [{"id": f"raw-{i}", "text": r["text"]} for i, r in enumerate(raw)]
    rng = np.random.default_rng(3)
    return to_table([rows[i] for i in rng.permutation(len(rows))], "mix")


@pytest.mark.parametrize(("partitions", "shards", "cfg"), [
    (1, 3, {}), (3, 5, {}), (4, 4, {"max_bucket": 8, "window": 3}), (2, 3, {"verify": False, "threshold": 0.7}),
])
def test_partitioned_reduce_gives_the_single_process_clusters(real_neardups: pa.Table, tmp_path: Path,
                                                              partitions: int, shards: int, cfg: dict) -> None:
    stage = MinhashDedupStage({"mode": "annotate", **cfg})
    stage.setup()
    step = -(-real_neardups.num_rows // shards)
    parts = [real_neardups.slice(i, step) for i in range(0, real_neardups.num_rows, step)]
    paths = []
    for i, p in enumerate(parts):
        path = tmp_path / f"art-{i}.parquet"
        pq.write_table(stage.map(p, StageContext("m", shard_index=i)), path, row_group_size=97)
        paths.append(path)
    stage.reduce(paths, tmp_path / "state", partitions=partitions)
    stage.load_state(tmp_path / "state")
    out = pa.concat_tables([stage.process(p, StageContext("m", shard_index=i)) for i, p in enumerate(parts)])
    got = _partition_of(out.column("dedup.cluster").to_pylist())
    ref = _partition_of(_reference_clusters(real_neardups, stage).tolist())
    assert sum(len(g) > 1 for g in ref) > 50  # real near-duplicate clusters, not a trivial case
    assert got == ref
    # the kept doc (the cluster id) is the earliest member, as in the single-process reduce
    ids = out.column("doc_id").to_pylist()
    first: dict[str, int] = {}
    for pos, c in enumerate(out.column("dedup.cluster").to_pylist()):
        first.setdefault(c, pos)
    assert all(ids[pos] == c for c, pos in first.items())


@pytest.mark.parametrize("partitions", [1, 3])
def test_verify_in_many_batches_gives_the_same_clusters_and_bytes(real_neardups: pa.Table, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  partitions: int) -> None:
    """Second nodes' shingles verified a small batch at a time: the same clusters, the same state bytes."""
    import dedup.minhash as mh
    from pipeline.reduce import context_for, drive

    stage = MinhashDedupStage({"mode": "annotate"})
    stage.setup()
    step = -(-real_neardups.num_rows // 4)
    parts = [real_neardups.slice(i, step) for i in range(0, real_neardups.num_rows, step)]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"art-{i}.parquet")
        pq.write_table(stage.map(p, StageContext("m", shard_index=i)), paths[-1], row_group_size=97)

    def reduce(name: str, batch: int) -> tuple[dict, dict[str, bytes], list]:  # type: ignore[type-arg]
        monkeypatch.setattr(mh, "VERIFY_BATCH_SHINGLES", batch)
        marker = drive(stage.reduce_plan(context_for(paths, tmp_path / name, partitions)))
        files = {f.relative_to(tmp_path / name).as_posix(): f.read_bytes() for f in (tmp_path / name).rglob("*")
                 if f.is_file()}
        stage.load_state(tmp_path / name)
        labels = [c for i, p in enumerate(parts)
                  for c in stage.process(p, StageContext("m", shard_index=i)).column("dedup.cluster").to_pylist()]
        return marker, files, labels

    one, one_files, one_labels = reduce("one", 0)
    many, many_files, many_labels = reduce("many", 20000)
    assert one["verify_batches"] <= 2 * partitions  # the second nodes' sets fit the default batch
    assert many["verify_batches"] >= one["verify_batches"] + 2 * partitions  # really split
    ref = _partition_of(_reference_clusters(real_neardups, stage).tolist())
    assert sum(len(g) > 1 for g in ref) > 50
    assert _partition_of(many_labels) == ref == _partition_of(one_labels)
    assert many_labels == one_labels
    assert many_files.keys() == one_files.keys() and many_files == one_files


def test_same_record_twice_in_a_shard_is_never_dropped_twice(real_neardups: pa.Table, tmp_path: Path) -> None:
    part = real_neardups.slice(0, 300)
    twice = pa.concat_tables([part, part.slice(0, 40)])  # the same 40 records (same doc_id) again
    stage = MinhashDedupStage({"mode": "remove"})
    stage.setup()
    pq.write_table(stage.map(twice, StageContext("m", shard_index=0)), tmp_path / "a.parquet")
    stage.reduce([tmp_path / "a.parquet"], tmp_path / "state", partitions=2)
    stage.load_state(tmp_path / "state")
    out = stage.process(twice, StageContext("m", shard_index=0))
    kept = set(out.column("doc_id").to_pylist())
    state = pq.read_table(tmp_path / "state" / "shards" / "part-00000.parquet")
    ids = state.column("doc_id").to_pylist()
    assert len(ids) == len(set(ids))  # one row per doc_id, whatever the repeats
    # every doc_id of the input survives at least once unless its cluster kept another doc
    clusters = dict(zip(ids, state.column("dedup.cluster").to_pylist(), strict=True))
    for d in set(twice.column("doc_id").to_pylist()):
        assert d in kept or (d in clusters and clusters[d] != d and clusters[d] in kept)
