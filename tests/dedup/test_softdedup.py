"""dedup.softdedup on real text: repeated licence text is down-weighted, unique prose is not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.softdedup import COMMONNESS, SoftDedupStage
from pipeline.stage import StageContext


def run_soft(stage: SoftDedupStage, table: pa.Table, work: Path) -> tuple[pa.Table, dict]:
    stage.setup()
    work.mkdir(parents=True, exist_ok=True)
    art = stage.map(table, StageContext(stage.name))
    pq.write_table(art, work / "art.parquet", row_group_size=100)  # several row groups
    state = work / "state"
    state.mkdir()
    stage.reduce([work / "art.parquet"], state)
    stage.load_state(state)
    return stage.process(table, StageContext(stage.name)), json.loads(
        (state / "softdedup.json").read_text()
    )


@pytest.fixture(scope="module")
def corpus(prose_rows: list[dict], copyright_rows: list[dict], to_table) -> pa.Table:  # type: ignore[no-untyped-def]
    """300 distinct prose/doc pages + one GPL copyright file pasted 30 times (new ids)."""
    gpl = next(r for r in copyright_rows if "GPL-2" in r["text"] and len(r["text"]) > 2000)
    copies = [{"id": f"copy-{i}", "text": gpl["text"]} for i in range(30)]
    prose = [r for r in prose_rows if len(r["text"].split()) > 50]
    return pa.concat_tables([to_table(prose, "prose"), to_table(copies, "licence")])


def test_repeated_licence_weighs_about_one_over_copies(corpus: pa.Table, tmp_path: Path) -> None:
    out, info = run_soft(SoftDedupStage({"width_log2": 22}), corpus, tmp_path)
    w = out.column("weight").to_numpy()
    src = np.array(out.column("source").to_pylist())
    assert w.mean() == pytest.approx(1.0, abs=0.02)
    assert (w >= 0.05).all() and (w <= 20.0).all()
    prose, lic = w[src == "prose"], w[src == "licence"]
    assert np.allclose(lic, lic[0])  # identical texts, identical weights
    # 30 copies of one text: together they weigh about what one unique page weighs
    ratio = lic.sum() / np.median(prose)
    assert 0.3 < ratio < 3.0, ratio
    assert lic[0] < 0.2 * np.median(prose)
    c = out.column(COMMONNESS).to_numpy()
    assert c[src == "licence"].min() > np.median(c[src == "prose"])
    assert info["docs"] == corpus.num_rows and info["grams"] > 100_000


def test_cluster_alpha_uses_minhash_cluster_size(corpus: pa.Table, tmp_path: Path) -> None:
    size = np.ones(corpus.num_rows, dtype=np.int32)
    size[:10] = 4  # pretend the first 10 prose pages are in 4-member near-duplicate clusters
    table = corpus.append_column("dedup.cluster_size", pa.array(size))
    base, _ = run_soft(SoftDedupStage({"width_log2": 22}), table, tmp_path / "a")
    soft, _ = run_soft(
        SoftDedupStage({"width_log2": 22, "cluster_alpha": 1.0}), table, tmp_path / "b"
    )
    wb, ws = base.column("weight").to_numpy(), soft.column("weight").to_numpy()
    # before normalization the members were divided by 4; after it, their ratio to others is 1/4
    np.testing.assert_allclose(
        (ws[:10] / ws[10:20].mean()) / (wb[:10] / wb[10:20].mean()), 0.25, rtol=1e-6
    )


def test_existing_weight_is_multiplied_and_config_checked(corpus: pa.Table, tmp_path: Path) -> None:
    table = corpus.append_column("weight", pa.array(np.full(corpus.num_rows, 2.0)))
    out, _ = run_soft(SoftDedupStage({"width_log2": 20}), table, tmp_path)
    assert out.column("weight").to_numpy().mean() == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="min_weight"):
        SoftDedupStage({"min_weight": 5, "max_weight": 1})


def test_blocked_sketch_kernels_match_the_per_gram_loop(corpus: pa.Table) -> None:
    """count / mean_log_count touch counters a block of grams at a time (memory-level
    parallelism); they must give exactly the counters and bits of the plain per-gram loop,
    written here in Python, across block boundaries (the GPL copy has > 3 blocks), short docs
    and saturation."""
    import math

    from dedup import kernels as kn
    from dedup.signature import word_ids

    texts = corpus.column("text").to_pylist()[-33:-27] + ["too short", "four words here now"]
    flat, offsets = word_ids(pa.chunked_array([pa.array(texts, pa.large_string())]))
    offsets = np.asarray(offsets, dtype=np.int64)
    assert np.diff(offsets).max() > 3 * kn._BLOCK  # several blocks per doc, and a partial one
    n = 4
    rows = [list(range(int(a), int(b) - n + 1)) for a, b in zip(offsets[:-1], offsets[1:])]
    hashes = [[np.uint64(kn.gram_hash(flat, j, n)) for j in r] for r in rows]
    for width_log2, start in ((12, 0), (10, 0xFFFFFFF0)):  # start near 2**32: counters saturate
        mask = np.uint64((1 << width_log2) - 1)
        cols = [[[int(kn.row_index(h, r, mask)) for r in range(2)] for h in hs] for hs in hashes]
        got = np.full((2, 1 << width_log2), start, dtype=np.uint32)
        want = got.astype(np.int64)
        for doc in cols:
            for gram in doc:
                for r, i in enumerate(gram):
                    want[r, i] += 1
        assert kn.count(flat, offsets, n, got) == sum(map(len, rows))
        np.testing.assert_array_equal(got, np.minimum(want, 0xFFFFFFFF))
        assert (got == 0xFFFFFFFF).any() == (start > 0)
        score = np.empty(len(texts))
        grams = np.empty(len(texts), dtype=np.int64)
        kn.mean_log_count(flat, offsets, n, got, 1.0, score, grams)
        for d, doc in enumerate(cols):
            acc = 0.0
            for gram in doc:
                acc += math.log(min(int(got[r, i]) for r, i in enumerate(gram)) + 1.0)
            want_d = acc / len(doc) if doc else math.nan
            assert score[d] == want_d or (math.isnan(want_d) and math.isnan(score[d])), d  # bit for bit
        assert grams.tolist() == [len(r) for r in rows] and grams[-1] == 1
