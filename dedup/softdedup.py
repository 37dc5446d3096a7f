"""``dedup.softdedup``: SoftDedup reweighting (He et al., ACL 2024) — down-weight, don't delete.

SoftDedup fits an n-gram model on the corpus, scores each sample's *commonness* ``p`` and
samples it with weight ``W ∝ 1/p``: text that recurs in many documents (licence headers,
boilerplate, repeated records) is seen less often, unique text more often, and nothing is lost.

Our model and why:

- **Tokens**: the words of :mod:`dedup.signature` (lower-cased ASCII, non-ASCII runs kept), as
  32-bit ids; **4-grams** of consecutive words.
- **Counts**: a count-min sketch (``depth`` rows x ``2**width_log2`` uint32 counters, default
  2 x 2^24 = 128 MB); a 4-gram's count is the minimum over its rows, so hash collisions can only
  over-count, and the second row cuts that over-count sharply. Memory is fixed whatever the
  corpus size; the exact count of every 4-gram of a 50M-word corpus would not be.
- **Commonness**: ``p(doc)`` = geometric mean over the doc's 4-grams of the smoothed 4-gram
  probability ``(count + k) / (N + k * width)``. Then ``1/p`` ∝ 1 / geometric-mean count: a
  document whose every 4-gram occurs 100 times in the corpus (100 copies) weighs ~1/100 of a
  unique one, so its copies together weigh about what one copy would. Near-copies fall in
  between, in proportion to how much text they share with the rest of the corpus.
- **Weights**: ``1/p`` normalized to mean 1 over the documents that have 4-grams, then clipped
  to ``[min_weight, max_weight]`` (default 0.05..20), written to ``weight``. Documents with fewer
  than 4 words get weight 1. With ``cluster_alpha > 0`` and a ``dedup.cluster_size`` column
  from an earlier ``dedup.minhash`` (mode annotate), members of near-duplicate clusters are
  further multiplied by ``cluster_size ** -cluster_alpha`` before normalization.

Phases: map = each doc's word ids (artifact keyed by ``doc_id``); the reduce is partitioned
(:mod:`pipeline.reduce`), and no step depends on the partition count:

1. count: one task per group of shards fills its own sketch (count-min sketches are
   mergeable: counters add) and writes it as one file per counter range of step 2 (on remote
   storage zstd-compressed: the scratch that moves over the network is mostly these);
2. merge: one task per range of counters sums that range over all sketches (saturating at
   2^32 - 1, which equals counting into one sketch);
3. score: one task per group of shards scores its documents against the merged sketch;
4. the median commonness by exact distributed selection and the mean raw weight by exact
   sums (integer mantissas), so normalization is bit-identical however the work was split;
5. weights: per shard, ``state/<name>/shards/part-<i>.parquet`` (``doc_id``, ``weight``,
   commonness); apply loads only its shard's part and looks rows up by ``doc_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import BarrierStage, Resources, StageConfig, StageContext

WORDS = "words"
CLUSTER_SIZE = "cluster_size"
COMMONNESS = "softdedup.commonness"


class SoftDedupConfig(StageConfig):
    """Settings of ``dedup.softdedup`` (4-gram count-min sketch, weights clipped to 0.05..20)."""

    ngram: int = Field(4, ge=1, le=8, description="words per n-gram of the commonness model")
    width_log2: int = Field(24, ge=10, le=30, description="log2 of counters per sketch row")
    depth: int = Field(2, ge=1, le=4, description="count-min sketch rows")
    smoothing: float = Field(
        1.0, gt=0.0, description="additive smoothing k of the n-gram probability"
    )
    min_weight: float = Field(0.05, gt=0.0, description="lower clip of the normalized weight")
    max_weight: float = Field(20.0, gt=0.0, description="upper clip of the normalized weight")
    cluster_alpha: float = Field(
        0.0, ge=0.0, description="also multiply by dedup.cluster_size ** -cluster_alpha (0 = off)"
    )

    @model_validator(mode="after")
    def _clip(self) -> SoftDedupConfig:
        if self.min_weight >= self.max_weight:
            raise ValueError(
                f"min_weight={self.min_weight} must be below max_weight={self.max_weight}"
            )
        return self


_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    from dedup import kernels as kn

    _KERNELS.update(count=kn.count, mean_log_count=kn.mean_log_count)
    return _KERNELS


@register
class SoftDedupStage(BarrierStage):
    """Per-document sampling weight ∝ 1/commonness under a corpus 4-gram model (see module)."""

    kind = "dedup.softdedup"
    preload = ("dedup.kernels", "dedup.signature")
    Config = SoftDedupConfig
    inputs = (schema.DOC_ID, schema.TEXT)
    outputs = (schema.WEIGHT, COMMONNESS)
    resources = Resources(cpus=1.0, memory_gb=1.0)
    remote_state = True  # load_state reads through pipeline.storage
    summary = (
        "SoftDedup: weight = 1/commonness under a corpus 4-gram count-min model (mean 1, clipped)"
    )

    config: SoftDedupConfig

    def __init__(self, config: StageConfig | dict[str, Any] | None = None, name: str | None = None):
        super().__init__(config, name)
        from pipeline.reduce import ShardStateCache

        self._state = ShardStateCache()

    def setup(self) -> None:
        from dedup.signature import warm_up

        warm_up()
        _kernels()

    def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        from dedup.signature import word_ids

        flat, offsets = word_ids(table.column(schema.TEXT))
        if schema.DEDUP_CLUSTER_SIZE in table.column_names:
            size = pc.fill_null(table.column(schema.DEDUP_CLUSTER_SIZE), 1).cast(pa.int32())
        else:
            size = pa.array(np.ones(table.num_rows, dtype=np.int32))
        ctx.add("words", int(flat.size))
        return pa.table(
            {
                schema.DOC_ID: table.column(schema.DOC_ID).combine_chunks(),
                WORDS: pa.LargeListArray.from_arrays(
                    pa.array(offsets, pa.int64()), pa.array(flat, pa.uint32())
                ),
                CLUSTER_SIZE: size,
            }
        )

    def reduce_plan(self, rc):  # type: ignore[no-untyped-def]
        from fractions import Fraction

        from pipeline.reduce import ReduceTask, exact_quantiles, shard_groups

        c = self.config
        width = 1 << c.width_log2
        groups = shard_groups(rc)
        sk = rc.scratch_dir("sketch")
        n_ranges = max(1, min(rc.partitions, width // 1024))
        bounds = [width * r // n_ranges for r in range(n_ranges + 1)]
        # each count task writes its sketch as one file per merge range, so a merge task reads
        # whole files (its range of every sketch), never a byte of another range
        sketches = [[f"{sk}/count-{j:05d}-range-{r:05d}.npy" for r in range(n_ranges)] for j in range(len(groups))]
        totals = yield [ReduceTask(_count, ([p for _, p in g], c.ngram, c.depth, c.width_log2, bounds, outs))
                        for g, outs in zip(groups, sketches, strict=True)]
        total = int(sum(totals))
        merged = [f"{sk}/merged-{r:05d}.npy" for r in range(n_ranges)]
        yield [ReduceTask(_merge_range, ([outs[r] for outs in sketches], merged[r])) for r in range(n_ranges)]
        # log p = mean log((count + k) / (N + k * width)); the constant cancels in normalization
        log_norm = float(np.log(total + c.smoothing * width)) if total else 0.0
        sc = rc.scratch_dir("scores")
        scored = yield [ReduceTask(_score, (g, merged, c.ngram, c.smoothing, log_norm, sc)) for g in groups]
        n_has = int(sum(n for n, _ in scored))
        score_groups = [[f"{sc}/part-{i:05d}.parquet" for i, _ in g] for g in groups]
        median = 0.0
        mean_raw = 1.0
        if n_has:
            (median,) = yield from exact_quantiles(
                n_has, [0.5], lambda pre: [ReduceTask(_lp_histograms, (g, pre)) for g in score_groups],
                first=[h for _, h in scored])
            sums = yield [ReduceTask(_raw_sum, (g, median, c.cluster_alpha)) for g in score_groups]
            mean_raw = float(sum(sums, Fraction(0)) / n_has)
        outs = yield [ReduceTask(_weights, (g, i_s, median, mean_raw, c.cluster_alpha, c.min_weight, c.max_weight,
                                             rc.state_dir))
                      for g, i_s in zip(score_groups, [[i for i, _ in g] for g in groups], strict=True)]
        n_docs = sum(o["docs"] for o in outs)
        w_sum = sum((o["w_sum"] for o in outs), Fraction(0))
        state_groups = [[rc.shard_state(i) for i, _ in g] for g in groups]
        quantiles: dict[str, float] = {}
        if n_docs:
            qs = ("0.01", "0.1", "0.5", "0.9", "0.99")
            got = yield from exact_quantiles(
                n_docs, [float(q) for q in qs],
                lambda pre: [ReduceTask(_weight_histograms, (g, pre)) for g in state_groups],
                first=[o["first_round"] for o in outs])
            quantiles = dict(zip(qs, got, strict=True))
        info = {
            "ngram": c.ngram,
            "sketch": {"depth": c.depth, "width": width, "bytes": int(c.depth * 4 << c.width_log2)},
            "grams": total,
            "docs": n_docs,
            "docs_without_grams": n_docs - n_has,
            "weight_mean": float(w_sum / n_docs) if n_docs else None,
            "weight_quantiles": quantiles,
            "clipped_low": sum(o["clipped_low"] for o in outs),
            "clipped_high": sum(o["clipped_high"] for o in outs),
            "median_log_commonness": median,
        }
        from pipeline.reduce import join, put_json

        put_json(join(rc.state_dir, "softdedup.json"), json.dumps(info, indent=2, sort_keys=True))

    def load_state(self, state_dir: Path) -> None:
        self._state.open(state_dir)

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        idx = self._state.lookup(table.column(schema.DOC_ID), ctx.shard_index)
        st = self._state.table(ctx.shard_index)
        found = idx >= 0
        missing = int((~found).sum())
        if missing:
            ctx.add("weight_missing", missing)
        w = np.ones(table.num_rows, dtype=np.float64)
        cm = pa.nulls(table.num_rows, pa.float64())
        if st is not None and found.any():
            take = pa.array(np.where(found, idx, 0))
            w[found] = st.column(schema.WEIGHT).take(take).to_numpy()[found]
            cm = pc.if_else(pa.array(found), st.column(COMMONNESS).take(take), cm)
            cm = cm.combine_chunks() if isinstance(cm, pa.ChunkedArray) else cm
        if schema.WEIGHT in table.column_names:
            w = w * pc.fill_null(pc.cast(table.column(schema.WEIGHT), pa.float64()), 1.0).to_numpy()
        for name, values in ((schema.WEIGHT, pa.array(w, pa.float64())), (COMMONNESS, cm)):
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, values)
            else:
                table = table.append_column(name, values)
        return table


def _iter_words(paths: list[str]):  # type: ignore[no-untyped-def]
    """(flat uint32 word ids, int64 offsets, row-group table) per artifact row group."""
    from pipeline.reduce import parquet_file

    for path in paths:
        pf = parquet_file(path)
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg, use_threads=False)
            col = t.column(WORDS).combine_chunks()
            offs = col.offsets.to_numpy().astype(np.int64)
            words = col.values.to_numpy().astype(np.uint32, copy=False)
            yield words, offs, t
        pf = t = col = None
        pa.default_memory_pool().release_unused()  # else the pool keeps pages of every shard read


def _count(paths: list[str], ngram: int, depth: int, width_log2: int, bounds: list[int], outs: list[str]) -> int:
    """Step 1: this group's n-grams counted into its own sketch, written as one file per range."""
    from pipeline.reduce import save_npy

    k = _kernels()
    table = np.zeros((depth, 1 << width_log2), dtype=np.uint32)
    total = 0
    for words, offsets, _t in _iter_words(paths):
        total += k["count"](words, offsets, ngram, table)  # type: ignore[operator]
    for r, out in enumerate(outs):
        save_npy(out, np.ascontiguousarray(table[:, bounds[r] : bounds[r + 1]]))
    return int(total)


def _merge_range(parts: list[str], out: str) -> None:
    """Step 2: one range of counters summed over every sketch, saturating like one sketch would
    (``min(a + b, 2**32 - 1)`` applied one sketch at a time is the saturated total)."""
    from pipeline.reduce import load_npy, save_npy

    merged: np.ndarray | None = None
    step = 1 << 20  # columns at a time: the temporaries stay at 4 MB per sketch row
    for path in parts:
        m = load_npy(path)
        if merged is None:
            merged = np.array(m, dtype=np.uint32)
            continue
        for c0 in range(0, m.shape[1], step):
            c1 = min(m.shape[1], c0 + step)
            a = merged[:, c0:c1]
            s = a + m[:, c0:c1]
            np.copyto(s, np.uint32(0xFFFFFFFF), where=s < a)  # wrapped around: saturate
            merged[:, c0:c1] = s
        del m
    assert merged is not None
    save_npy(out, merged)


def _score(group: list[tuple[int, str]], merged: list[str], ngram: int, smoothing: float, log_norm: float,
           out_dir: str) -> tuple[int, np.ndarray]:
    """Step 3: log commonness of each doc of these shards; returns how many have n-grams, and
    the first round of the median's selection over them (so that round needs no step)."""
    from pipeline.reduce import first_round_histogram, join, load_npy, sortable_bits, write_scratch_table

    k = _kernels()
    parts: list[np.ndarray | None] = [load_npy(m) for m in merged]
    table = np.empty((parts[0].shape[0], sum(p.shape[1] for p in parts)), dtype=np.uint32)  # type: ignore[union-attr]
    col = 0
    for i, p in enumerate(parts):
        assert p is not None
        table[:, col : col + p.shape[1]] = p
        col += p.shape[1]
        parts[i] = p = None  # each part dropped once copied (a local part: its mapped pages too)
    del parts
    n_has = 0
    hist = first_round_histogram(np.zeros(0, np.uint64))
    for shard, path in group:
        ids, logp, sizes = [], [], []
        for words, offsets, t in _iter_words([path]):
            out = np.empty(len(offsets) - 1, dtype=np.float64)
            grams = np.empty(len(offsets) - 1, dtype=np.int64)
            k["mean_log_count"](words, offsets, ngram, table, smoothing, out, grams)  # type: ignore[operator]
            ids.append(t.column(schema.DOC_ID).combine_chunks().cast(pa.string()))
            logp.append(out - log_norm)
            sizes.append(t.column(CLUSTER_SIZE).to_numpy().astype(np.float64))
        lp = np.concatenate(logp) if logp else np.zeros(0)
        n_has += int((~np.isnan(lp)).sum())
        hist += first_round_histogram(sortable_bits(lp[~np.isnan(lp)]))
        write_scratch_table(join(out_dir, f"part-{shard:05d}.parquet"), pa.table({
            schema.DOC_ID: pa.chunked_array(ids, pa.string()) if ids else pa.array([], pa.string()),
            "logp": pa.array(lp, pa.float64()),
            CLUSTER_SIZE: pa.array(np.concatenate(sizes) if sizes else np.zeros(0), pa.float64()),
        }))
        del ids, logp, sizes
        pa.default_memory_pool().release_unused()  # else the pool keeps pages of every shard read
    return n_has, hist


def _scores(path: str) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.reduce import read_parquet

    t = read_parquet(path, columns=["logp", CLUSTER_SIZE])
    return t.column("logp").to_numpy(), t.column(CLUSTER_SIZE).to_numpy()


def _lp_histograms(paths: list[str], prefixes: list[tuple[int, int]]) -> np.ndarray:
    from pipeline.reduce import digit_histograms, sortable_bits

    out = np.zeros((len(prefixes), 1 << 16), dtype=np.int64)
    for p in paths:
        lp, _ = _scores(p)
        out += digit_histograms(sortable_bits(lp[~np.isnan(lp)]), prefixes)
    return out


def _log_weight(lp: np.ndarray, size: np.ndarray, median: float, alpha: float) -> np.ndarray:
    # weight ∝ 1/p, in log space relative to the median to stay finite
    return -(lp - median) - alpha * np.log(np.maximum(size, 1.0))


def _raw_sum(paths: list[str], median: float, alpha: float):  # type: ignore[no-untyped-def]
    from fractions import Fraction

    from pipeline.reduce import exact_sum

    total = Fraction(0)
    for p in paths:
        lp, size = _scores(p)
        has = ~np.isnan(lp)
        total += exact_sum(np.exp(np.clip(_log_weight(lp[has], size[has], median, alpha), -700, 700)))
    return total


def _weights(paths: list[str], shards: list[int], median: float, mean_raw: float, alpha: float,
             min_w: float, max_w: float, state_dir: str) -> dict[str, Any]:
    """Step 5: normalized, clipped weights of these shards -> their apply state (and the first
    round of the weight quantiles' selection, so that round needs no step)."""
    from fractions import Fraction

    from pipeline.reduce import exact_sum, first_round_histogram, read_parquet, shard_state_path, sortable_bits, write_table

    res: dict[str, Any] = {"docs": 0, "w_sum": Fraction(0), "clipped_low": 0, "clipped_high": 0,
                           "first_round": first_round_histogram(np.zeros(0, np.uint64))}
    for p, shard in zip(paths, shards, strict=True):
        t = read_parquet(p)
        lp, size = t.column("logp").to_numpy(), t.column(CLUSTER_SIZE).to_numpy()
        has = ~np.isnan(lp)
        w = np.ones_like(lp)
        if has.any():
            raw = np.exp(np.clip(_log_weight(lp[has], size[has], median, alpha), -700, 700))
            w[has] = np.clip(raw / mean_raw, min_w, max_w)
        res["docs"] += int(w.size)
        res["w_sum"] += exact_sum(w)
        res["clipped_low"] += int((w <= min_w).sum())
        res["clipped_high"] += int((w >= max_w).sum())
        res["first_round"] += first_round_histogram(sortable_bits(w))
        write_table(shard_state_path(state_dir, shard), pa.table({
            schema.DOC_ID: t.column(schema.DOC_ID),
            schema.WEIGHT: pa.array(w, pa.float64()),
            COMMONNESS: pa.array(np.where(has, np.exp(lp), np.nan), pa.float64(), from_pandas=True),
        }))
    return res


def _weight_histograms(paths: list[str], prefixes: list[tuple[int, int]]) -> np.ndarray:
    from pipeline.reduce import digit_histograms, read_parquet, sortable_bits

    out = np.zeros((len(prefixes), 1 << 16), dtype=np.int64)
    for p in paths:
        w = read_parquet(p, columns=[schema.WEIGHT]).column(0).to_numpy()
        out += digit_histograms(sortable_bits(w), prefixes)
    return out
