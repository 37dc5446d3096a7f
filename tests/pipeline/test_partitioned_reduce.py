"""Partitioned barriers: the same bytes whatever the partition count or executor; the planner.

The corpus is real: pages of the raw pretraining corpus, Debian copyright files (hundreds of
near-identical licences) and changelogs, with exact re-posts across shards.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.plan import make_plan
from pipeline.reduce import (
    ReduceTask,
    digit_histograms,
    exact_quantiles,
    FIRST_ROUND,
    exact_sum,
    first_round_histogram,
    hash_partition,
    run_plan_inline,
    sortable_bits,
)
from pipeline.run import run_spec
from pipeline.spec import PipelineSpec
from tests.conftest import read_jsonl_zst

STAGES = [
    {"kind": "dedup.exact"},
    {"kind": "dedup.minhash", "mode": "annotate"},
    {"kind": "dedup.softdedup", "width_log2": 16, "cluster_alpha": 0.5},
    {"kind": "filter.threshold", "column": "weight", "min_percentile": 5, "max_percentile": 97},
    {"kind": "dedup.minhash", "name": "minhash-remove", "mode": "remove", "threshold": 0.7},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data: Path) -> Path:
    raw = read_jsonl_zst(shared_data / "pretrain_raw.jsonl.zst", limit=240)
    cop = read_jsonl_zst(shared_data / "neardup_copyright.jsonl.zst", limit=260)
    chg = read_jsonl_zst(shared_data / "neardup_changelog.jsonl.zst", limit=120)
    docs = [{"id": r.get("id", f"raw-{i}"), "text": r["text"]} for i, r in enumerate(raw)]
    docs += [{"id": r["id"], "text": r["text"]} for r in cop + chg]
    rng = np.random.default_rng(7)
    order = rng.permutation(len(docs))
    folder = tmp_path_factory.mktemp("corpus")
    n_shards = 6
    for s in range(n_shards):
        with open(folder / f"part-{s}.jsonl", "w") as fh:
            for j in order[s::n_shards]:
                fh.write(json.dumps(docs[j]) + "\n")
            if s:  # the same record again in another shard (identity + text): exact dup work
                fh.write(json.dumps(docs[order[0]]) + "\n")
    return folder


def _spec(inp: Path, out: Path, stages: list[dict] = STAGES) -> PipelineSpec:
    return PipelineSpec.from_dict({
        "name": "partitions",
        "input": {"paths": [str(inp)]},
        "output": {"dir": str(out), "rows_per_row_group": 64},
        "execution": {"batch_size": 50},
        "stages": stages,
    })


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file of the snapshot that is data (shards, dropped rows, manifest)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and (rel.startswith(("shards/", "dropped/", "quarantine/")) or rel == "manifest.json"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory) -> tuple[dict, dict[str, str], Path]:
    out = tmp_path_factory.mktemp("ref") / "snap"
    m = run_spec(_spec(corpus, out), progress=False, partitions=1)
    return m, _digest(out), out


def test_reference_run_does_real_dedup_work(reference) -> None:  # type: ignore[no-untyped-def]
    m, digest, out = reference
    st = m["stats"]["stages"]
    assert st["dedup.exact"]["dropped"]["exact_duplicate"] >= 5
    assert st["minhash-remove"]["dropped"]["near_duplicate"] > 30  # licences really are near-dups
    assert st["filter.threshold"]["dropped"]
    assert m["stats"]["docs_in"] == m["stats"]["kept"] + m["stats"]["dropped"] + m["stats"]["quarantined"]
    assert any(k.startswith("shards/") for k in digest)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("partitions", "workers"), [(2, 1), (4, 1), (3, 2)])
def test_same_bytes_for_any_partition_count_and_process_pool(reference, corpus: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                           partitions: int, workers: int) -> None:
    ref_m, ref_digest, ref_out = reference
    out = tmp_path / "snap"
    m = run_spec(_spec(corpus, out), progress=False, partitions=partitions, workers=workers)
    assert m == ref_m
    assert _digest(out) == ref_digest
    marker = json.loads((out / "_work" / "markers" / "reduce-dedup.minhash.json").read_text())
    assert marker["partitions"] == partitions
    # the apply state does not depend on the partition count either
    for name in ("dedup.exact", "dedup.minhash", "dedup.softdedup"):
        a, b = ref_out / "state" / name, out / "state" / name
        files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.parquet"))
        assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.parquet"))
        for f in files:
            assert pq.read_table(a / f).equals(pq.read_table(b / f)), (name, f)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ray_gives_the_same_bytes(reference, corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ray")
    ref_m, ref_digest, _ = reference
    out = tmp_path / "snap"
    m = run_spec(_spec(corpus, out), ray="auto", progress=False, partitions=3)
    assert m == ref_m
    assert _digest(out) == ref_digest


# -- planner --------------------------------------------------------------------------------------


def test_fixed_threshold_is_not_a_barrier(corpus: Path, tmp_path: Path) -> None:
    fixed = [{"kind": "dedup.softdedup", "width_log2": 16},
             {"kind": "filter.threshold", "column": "weight", "min": 0.2},
             {"kind": "filter.length", "min_chars": 200}]
    plan = make_plan(_spec(corpus, tmp_path / "x", fixed).build_stages())
    assert [s.barrier_out.kind if s.barrier_out else None for s in plan.segments] == ["dedup.softdedup", None]
    assert [st.kind for st in plan.segments[1].stages] == ["filter.threshold", "filter.length"]
    pct = [{**fixed[0]}, {"kind": "filter.threshold", "column": "weight", "min_percentile": 10}]
    plan2 = make_plan(_spec(corpus, tmp_path / "y", pct).build_stages())
    assert [s.barrier_out.kind if s.barrier_out else None for s in plan2.segments] == [
        "dedup.softdedup", "filter.threshold", None]
    # run it: the fixed threshold writes no artifacts and no reduce, and still filters
    out = tmp_path / "run"
    m = run_spec(_spec(corpus, out, fixed), progress=False)
    assert not (out / "state" / "filter.threshold").exists()
    assert not list((out / "_work" / "markers").glob("reduce-filter.threshold*"))
    assert m["stats"]["stages"]["filter.threshold"]["dropped"]["below_threshold.weight"] > 0
    assert len(m["stats"]["stages"]) == 4  # read, softdedup, threshold, length


# -- mergeable pieces --------------------------------------------------------------------------------


def _values(shared_data: Path) -> np.ndarray:
    """Real-valued data with ties, negatives, zeros and a wide range: log word counts of real docs."""
    docs = read_jsonl_zst(shared_data / "pretrain_raw.jsonl.zst", limit=400)
    n = np.array([len(d["text"].split()) for d in docs], dtype=np.float64)
    return np.concatenate([np.log(n + 1) - 4.0, n * 1e6, -n * 1e-300, [0.0, -0.0]])


def test_exact_sum_is_independent_of_grouping(shared_data: Path) -> None:
    v = _values(shared_data)
    want = math.fsum(v)  # correctly rounded
    for k in (1, 3, 17):
        got = float(sum((exact_sum(p) for p in np.array_split(v, k)), Fraction(0)))
        assert got == want


@pytest.mark.parametrize("k", [1, 2, 5])
def test_exact_quantiles_match_numpy_bit_for_bit(shared_data: Path, k: int) -> None:
    v = _values(shared_data)
    parts = np.array_split(v, k)
    qs = [0.0, 0.01, 0.05, 0.3, 0.5, 0.97, 1.0]

    def tasks(prefixes):  # type: ignore[no-untyped-def]
        return [ReduceTask(digit_histograms, (sortable_bits(p), prefixes)) for p in parts]

    got = run_plan_inline(exact_quantiles(len(v), qs, tasks))
    assert got == np.quantile(v, qs).tolist()


@pytest.mark.parametrize("k", [1, 2, 5])
def test_exact_quantiles_ask_each_prefix_once_and_take_round_0_from_the_producers(shared_data: Path, k: int) -> None:
    """Each round asks for every distinct prefix once (round 0: one, whatever the ranks; before,
    one histogram per rank — 5 MB per task for SoftDedup's 5 weight quantiles), and with the
    producers' round-0 histograms (``first``) the plan has 3 steps instead of 4; same values."""
    v = _values(shared_data)
    parts = np.array_split(v, k)
    qs = [0.0, 0.01, 0.05, 0.3, 0.5, 0.97, 1.0]
    asked: list[list[tuple[int, int]]] = []

    def tasks(prefixes):  # type: ignore[no-untyped-def]
        asked.append(list(prefixes))
        return [ReduceTask(digit_histograms, (sortable_bits(p), prefixes)) for p in parts]

    steps = []

    def run(plan):  # type: ignore[no-untyped-def]
        try:
            step = next(plan)
            while True:
                steps.append(len(step))
                step = plan.send([t() for t in step])
        except StopIteration as e:
            return e.value

    assert run(exact_quantiles(len(v), qs, tasks)) == np.quantile(v, qs).tolist()
    assert len(steps) == 4 and asked[0] == FIRST_ROUND
    assert all(len(a) == len(set(a)) for a in asked) and len(asked[1]) < 2 * len(qs)
    asked.clear()
    steps.clear()
    first = [first_round_histogram(sortable_bits(p)) for p in parts]
    assert run(exact_quantiles(len(v), qs, tasks, first=first)) == np.quantile(v, qs).tolist()
    assert len(steps) == 3 and all(a[0][1] > 0 for a in asked)


def test_hash_partition_is_balanced_and_stable() -> None:
    keys = np.arange(100_000, dtype=np.uint64)
    p = hash_partition(keys, 4)
    counts = np.bincount(p, minlength=4)
    assert counts.min() > 0.9 * 25_000
    np.testing.assert_array_equal(p, hash_partition(keys, 4))
    assert (hash_partition(keys, 1) == 0).all()


def test_softdedup_merge_saturates_like_one_sketch(tmp_path):
    """Per-range sketch files summed one at a time saturate at 2**32 - 1 exactly as counting
    into one sketch does (min(a + b + c, max)), with no uint64 copy of the range."""
    import numpy as np

    from dedup.softdedup import _merge_range
    from pipeline.reduce import load_npy, save_npy

    big = np.uint32(0xFFFFFFFF)
    parts = [np.array([[big - 5, 1, 0, big], [7, 0, big // 2 + 1, 2]], dtype=np.uint32),
             np.array([[3, 2, 0, 1], [big - 6, 0, big // 2 + 1, 3]], dtype=np.uint32),
             np.array([[4, 3, 0, 0], [0, 0, 1, 4]], dtype=np.uint32)]
    paths = [str(tmp_path / f"count-{j}.npy") for j in range(3)]
    for p, a in zip(paths, parts, strict=True):
        save_npy(p, a)
    _merge_range(paths, str(tmp_path / "merged.npy"))
    want = np.minimum(sum(a.astype(np.uint64) for a in parts), np.uint64(big)).astype(np.uint32)
    assert np.array_equal(load_npy(str(tmp_path / "merged.npy")), want)
