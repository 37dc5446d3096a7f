"""dedup.minhash end to end on real Debian licence files: quality, keep policy, modes, index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.evaluate import doc_metrics, exact_pairs, true_duplicate_docs
from dedup.lsh import candidate_probability, choose_bands
from dedup.minhash import MinhashDedupStage
from dedup.signature import signatures_and_sets
from pipeline.stage import StageContext


def run_barrier(stage, shards: list[pa.Table], work: Path, state: str = "state"):  # type: ignore[no-untyped-def]
    """What an executor does: map per shard -> artifacts, reduce once, then apply per shard."""
    stage.setup()
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards):
        art = stage.map(shard, StageContext(stage.name, shard_index=i))
        p = work / f"art-{i:05d}.parquet"
        pq.write_table(art, p)
        paths.append(p)
    state_dir = work / state
    state_dir.mkdir(parents=True, exist_ok=True)
    stage.reduce(paths, state_dir)
    stage.load_state(state_dir)
    ctx = StageContext(stage.name)
    out = []
    for i, s in enumerate(shards):  # apply state is per shard: the executor sets shard_index
        ctx.shard_index = i
        out.append(stage.process(s, ctx))
    return pa.concat_tables(out), ctx, state_dir


def shards_of(table: pa.Table, n: int) -> list[pa.Table]:
    step = -(-table.num_rows // n)
    return [table.slice(i, step) for i in range(0, table.num_rows, step)]


def test_band_choice_favours_recall_when_verified() -> None:
    b, r = choose_bands(0.8, 128, verify=True)
    assert b * r <= 128 and candidate_probability(0.8, b, r) >= 0.995
    b2, r2 = choose_bands(0.8, 128, verify=False)
    assert r2 > r  # unverified: fewer candidates, lower recall at the threshold
    with pytest.raises(ValueError, match="bands"):
        MinhashDedupStage({"bands": 20, "rows": 8})


def test_annotate_matches_exact_jaccard_ground_truth(
    copyright_table: pa.Table, tmp_path: Path
) -> None:
    stage = MinhashDedupStage({"mode": "annotate", "threshold": 0.8})
    out, ctx, state = run_barrier(stage, shards_of(copyright_table, 3), tmp_path)
    assert out.num_rows == copyright_table.num_rows
    assert out.column("doc_id").to_pylist() == copyright_table.column("doc_id").to_pylist()
    size = out.column("dedup.cluster_size").to_numpy()
    _, flat, offsets = signatures_and_sets(copyright_table.column("text"))
    left, right, _ = exact_pairs(flat, offsets, 0.8)
    truth = true_duplicate_docs(copyright_table.num_rows, left, right)
    m = doc_metrics(size > 1, truth)
    assert m["true"] > 300  # the licence files really are near-duplicates of each other
    assert m["precision"] == 1.0  # verified pairs: every member has a partner at J >= 0.8
    assert m["recall"] >= 0.97, m
    # cluster ids name a member of the cluster, and sizes agree with the ids
    cluster = np.array(out.column("dedup.cluster").to_pylist())
    ids = set(out.column("doc_id").to_pylist())
    assert set(cluster) <= ids
    _, inverse, counts = np.unique(cluster, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(counts[inverse], size)
    info = json.loads((state / "index.json").read_text())
    n_clustered = int((size > 1).sum())
    assert info["docs_in_clusters"] == n_clustered
    assert info["clusters"] == len(set(cluster[size > 1]))
    # a spanning forest of the clusters needs docs - clusters verified pairs, at least
    assert info["candidate_pairs"] >= n_clustered - info["clusters"]


def test_remove_keeps_one_per_cluster_and_earliest(
    copyright_table: pa.Table, tmp_path: Path
) -> None:
    stage = MinhashDedupStage({"mode": "remove"})
    parts = shards_of(copyright_table, 2)
    out, ctx, _ = run_barrier(stage, parts, tmp_path)
    ann = MinhashDedupStage({"mode": "annotate"})
    ann.load_state(tmp_path / "state")
    full = pa.concat_tables([ann.process(p, StageContext("a", shard_index=i)) for i, p in enumerate(parts)])
    n_clusters = len(set(full.column("dedup.cluster").to_pylist()))
    assert out.num_rows == n_clusters
    assert ctx.counters["dropped.near_duplicate"] == copyright_table.num_rows - n_clusters
    # the kept doc of each cluster is its earliest member
    ids = copyright_table.column("doc_id").to_pylist()
    first_pos: dict[str, int] = {}
    for pos, c in enumerate(full.column("dedup.cluster").to_pylist()):
        first_pos.setdefault(c, pos)
    for c, pos in first_pos.items():
        assert ids[pos] == c


def test_quality_column_picks_the_keeper(copyright_table: pa.Table, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    score = rng.random(copyright_table.num_rows)
    table = copyright_table.append_column("quality.x", pa.array(score))
    stage = MinhashDedupStage({"mode": "annotate", "quality_column": "quality.x"})
    out, _, _ = run_barrier(stage, [table], tmp_path)
    best: dict[str, tuple[float, str]] = {}
    for d, c, s in zip(
        out.column("doc_id").to_pylist(),
        out.column("dedup.cluster").to_pylist(),
        score,
        strict=True,
    ):
        if c not in best or s > best[c][0]:
            best[c] = (s, d)
    assert all(c == d for c, (_, d) in best.items())


def test_soft_mode_weights_by_cluster_size(copyright_table: pa.Table, tmp_path: Path) -> None:
    stage = MinhashDedupStage({"mode": "soft", "soft_alpha": 0.5})
    assert "weight" in stage.output_columns()
    out, ctx, _ = run_barrier(stage, [copyright_table], tmp_path)
    assert out.num_rows == copyright_table.num_rows and ctx.counters["dropped"] == 0
    size = out.column("dedup.cluster_size").to_numpy()
    np.testing.assert_allclose(out.column("weight").to_numpy(), size**-0.5)
    assert size.max() > 5


def test_incremental_against_earlier_index(copyright_table: pa.Table, tmp_path: Path) -> None:
    old, new = copyright_table.slice(0, 400), copyright_table.slice(400)
    first = MinhashDedupStage({"mode": "remove"})
    _, _, old_state = run_barrier(first, [old], tmp_path / "a")
    # the new batch repeats 50 of the old docs verbatim (new ids): they must go
    repeats = old.slice(0, 50).set_column(0, "doc_id", pa.array([f"r{i}" for i in range(50)]))
    incoming = pa.concat_tables([new, repeats])
    second = MinhashDedupStage({"mode": "annotate", "against": [str(old_state)]})
    out, _, state = run_barrier(second, [incoming], tmp_path / "b")
    rep = out.slice(new.num_rows)
    kept = dict(
        zip(out.column("doc_id").to_pylist(), out.column("dedup.cluster").to_pylist(), strict=True)
    )
    old_ids = set(old.column("doc_id").to_pylist())
    assert all(kept[f"r{i}"] in old_ids for i in range(50))  # cluster kept by the earlier doc
    assert (rep.column("dedup.cluster_size").to_numpy() >= 2).all()
    # same as deduping everything at once: the docs new to both runs keep the same decision
    remover = MinhashDedupStage({"mode": "remove", "against": [str(old_state)]})
    remover.load_state(state)
    ctx = StageContext("r")
    survivors = remover.process(incoming, ctx)
    assert not set(survivors.column("doc_id").to_pylist()) & {f"r{i}" for i in range(50)}
    assert json.loads((state / "index.json").read_text())["against_docs"] == 400
    # an index built with other permutations cannot be queried
    other = MinhashDedupStage({"num_perm": 64, "against": [str(old_state)]})
    with pytest.raises(ValueError, match="num_perm"):
        run_barrier(other, [incoming], tmp_path / "c")
