"""LSH banding, verified union-find clustering and the on-disk index (no stage code here).

The reduce of ``dedup.minhash`` works band by band so memory stays bounded:

- the index (``doc_id`` + one uint64 key column per band) is a Parquet file; one band's keys for
  all documents are read at a time (8 bytes/doc), arg-sorted, and equal-key runs are buckets;
- shingle sets live in a flat ``uint32`` file that is memory-mapped, not loaded;
- candidate pairs are never materialized: a numba loop walks each bucket, skips pairs that
  union-find already joined, verifies the rest by exact Jaccard on the shingle sets, and joins
  those at or above the threshold. So every member of a cluster has at least one partner with
  Jaccard >= threshold (unverified LSH + union-find chains unrelated documents together, which is
  what caps the peers' precision at ~0.79).

Large buckets (more than ``max_bucket`` members, e.g. thousands of copies of one licence) are
walked as a window: each member against the next ``window`` members and the bucket's first
member, so work stays linear while copies still join.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dedup.signature import FNV_PRIME, MinhashParams

if TYPE_CHECKING:
    from pipeline.storage import RemotePath

INDEX_FORMAT = "assay.minhash-index/3"
#: formats this code reads: /2 kept each shingle set as a Parquet list<uint32> (the same parts,
#: read the same way; /3 stores the set's bytes, see ``dedup.minhash.SHINGLES``)
READABLE_FORMATS = ("assay.minhash-index/2", INDEX_FORMAT)


def candidate_probability(j: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """P(two docs at Jaccard ``j`` share at least one band): ``1 - (1 - j^rows)^bands``."""
    return 1.0 - (1.0 - np.power(j, rows)) ** bands


def choose_bands(
    threshold: float, num_perm: int, verify: bool, min_recall: float = 0.995
) -> tuple[int, int]:
    """Bands x rows (``bands * rows <= num_perm``) for a Jaccard ``threshold``.

    Without verification, the split that minimizes false-positive + false-negative mass (the
    rule datasketch uses): 9 bands x 13 rows at 128 permutations and 0.8, where a pair at
    exactly J = 0.8 becomes a candidate with probability 0.40. With exact-Jaccard verification
    a false positive only costs one set comparison, so we take the most rows (fewest
    candidates) that still make a pair at the threshold a candidate with probability
    >= ``min_recall``: 21 bands x 6 rows at 0.8 (P = 0.998 at J = 0.8, 0.28 at J = 0.5).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold={threshold} must be in (0, 1)")
    if verify:
        for rows in range(num_perm, 0, -1):
            bands = num_perm // rows
            if candidate_probability(threshold, bands, rows) >= min_recall:
                return bands, rows
        return num_perm, 1
    lo = np.linspace(0.0, threshold, 201)
    hi = np.linspace(threshold, 1.0, 201)
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        fp = np.trapezoid(candidate_probability(lo, bands, rows), lo)
        fn = np.trapezoid(1.0 - candidate_probability(hi, bands, rows), hi)
        err = 0.5 * fp + 0.5 * fn
        if best is None or err < best[0]:
            best = (err, bands, rows)
    assert best is not None
    return best[1], best[2]


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``[n_docs, bands]`` uint64 keys: each band's ``rows`` signature values hashed together."""
    n = sig.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    s64 = sig.astype(np.uint64)
    prime = np.uint64(FNV_PRIME)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(n, np.uint64(0xCBF29CE484222325) ^ np.uint64(b), dtype=np.uint64)
            for r in range(rows):
                h = (h ^ s64[:, b * rows + r]) * prime
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
            keys[:, b] = h
    return keys


def band_column(b: int) -> str:
    return f"band_{b:03d}"


@dataclass
class IndexMeta:
    """What a persisted index was built with; a later job must match it to query it."""

    params: MinhashParams
    bands: int
    rows: int
    threshold: float
    n_docs: int

    def to_json(self) -> dict[str, object]:
        return {
            "format": INDEX_FORMAT,
            "num_perm": self.params.num_perm,
            "ngram": self.params.ngram,
            "seed": self.params.seed,
            "bands": self.bands,
            "rows": self.rows,
            "threshold": self.threshold,
            "n_docs": self.n_docs,
        }

    @classmethod
    def read(cls, state_dir: Path | RemotePath) -> IndexMeta:
        d = json.loads((state_dir / "index.json").read_text())
        if d.get("format") == "assay.minhash-index/1":
            raise ValueError(
                f"{state_dir} holds an old assay.minhash-index/1 index (one index.parquet); convert it "
                f"with `assay dedup migrate-index {state_dir}` (or re-run that snapshot's job)"
            )
        if d.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"{state_dir}/index.json is a {d.get('format')!r} index, not {INDEX_FORMAT} "
                "(per-shard parts under index/); rebuild it by re-running that snapshot's job"
            )
        return cls(
            MinhashParams(int(d["num_perm"]), int(d["ngram"]), int(d["seed"])),
            int(d["bands"]),
            int(d["rows"]),
            float(d["threshold"]),
            int(d["n_docs"]),
        )


_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    from dedup import kernels as kn

    process_band, roots = kn.process_band, kn.roots
    _KERNELS.update(process_band=process_band, roots=roots)
    # compile or load from cache now, so the first reduce does not pay for it
    parent = np.arange(2, dtype=np.int64)
    flat = _readonly(np.array([1, 2, 1, 2], dtype=np.uint32))
    offs = _readonly(np.array([0, 2, 4], dtype=np.int64))
    nodes = np.array([0, 1], dtype=np.int64)
    keys = np.zeros(2, dtype=np.uint64)
    stats = np.zeros(3, dtype=np.int64)
    process_band(nodes, keys, parent, 2, flat, offs, flat, offs, 0.8, True, 64, 8, stats)
    roots(parent)
    return _KERNELS


def _readonly(a: np.ndarray) -> np.ndarray:
    """A plain read-only ndarray view (memmaps and arrays then share one compiled kernel)."""
    v = np.asarray(a).view(np.ndarray)
    v.setflags(write=False)
    return v


def warm_up() -> None:
    """Compile or load the clustering kernels (seconds on a cold cache)."""
    _kernels()


def cluster_band(
    keys: np.ndarray,
    parent: np.ndarray,
    n_new: int,
    store_new: tuple[np.ndarray, np.ndarray],
    store_old: tuple[np.ndarray, np.ndarray],
    threshold: float,
    verify: bool,
    max_bucket: int,
    window: int,
    stats: np.ndarray,
) -> None:
    """Join the documents of one band's buckets into ``parent`` (union-find, in place).

    ``keys[i]`` is node ``i``'s key in this band (nodes ``>= n_new`` are earlier snapshots'
    documents); docs without shingles must carry a key that no other node has.
    ``stats`` accumulates (candidate pairs, pairs checked, pairs joined).
    """
    k = _kernels()
    order = np.argsort(keys, kind="stable").astype(np.int64)
    sorted_keys = keys[order]
    # drop singleton buckets before the loop: most documents are unique in most bands
    same_next = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        eq = sorted_keys[1:] == sorted_keys[:-1]
        same_next[:-1] |= eq
        same_next[1:] |= eq
    nodes = order[same_next]
    k["process_band"](  # type: ignore[operator]
        nodes,
        sorted_keys[same_next],
        parent,
        n_new,
        _readonly(store_new[0]),
        _readonly(store_new[1]),
        _readonly(store_old[0]),
        _readonly(store_old[1]),
        threshold,
        verify,
        max_bucket,
        window,
        stats,
    )


def find_roots(parent: np.ndarray) -> np.ndarray:
    return _kernels()["roots"](parent)  # type: ignore[operator, no-any-return]
