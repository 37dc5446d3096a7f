"""Distributed pieces of the MinHash reduce: bucket pairs, verification, connected components.

Documents are *nodes* ``source << 32 | row`` (``source`` = input shard, or ``OLD_BASE + k``
for the k-th part of an earlier snapshot's index), so node order is (shard, row) order, new
documents before old ones, whatever the partitioning.

- :func:`bucket_pairs`: the candidate pairs of sorted (band, key, node) rows: all pairs of a
  bucket up to ``max_bucket`` members, else each member with the next ``window`` members and
  the bucket's first member (the rule of the single-process reduce, :mod:`dedup.lsh`).
- :func:`verify_spanning`: walks sorted candidate pairs with a local union-find, skips pairs
  already joined, verifies the rest by exact Jaccard and returns the pairs that joined: a
  spanning forest of the verified graph of this partition. Components of the union of the
  partitions' forests are the components of the whole verified graph.
- Connected components: **large-star / small-star** (Kiveris et al., "Connected Components in
  MapReduce and Beyond", SoCC 2014) over edge lists partitioned by node hash. Each operation
  is one step of one task per partition; the plan alternates them until an edge set repeats,
  and the fixed point is a star per component centred on its smallest node: exactly the
  component-minimum labels of single-process union-find (tested on random graphs with long
  chains and on real near-duplicates).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

import numpy as np

from pipeline.reduce import ReduceTask, hash_partition

OLD_BASE = 1 << 30
ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1


def node_ids(source: int, n: int, start: int = 0) -> np.ndarray:
    return (np.int64(source) << np.int64(ROW_BITS)) | np.arange(start, start + n, dtype=np.int64)


def _kernels() -> Any:
    from dedup import cc_kernels

    return cc_kernels


def bucket_pairs(band: np.ndarray, key: np.ndarray, node: np.ndarray, max_bucket: int, window: int,
                 old_from: int = OLD_BASE << ROW_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (a < b) of rows sorted by (band, key, node); pairs of two old nodes are skipped.

    With the window rule, the pair (first, x) of an oversized bucket is counted when x is visited,
    so a pair can appear twice (also as a neighbour pair); callers deduplicate.
    """
    n = node.shape[0]
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    brk = np.flatnonzero((band[1:] != band[:-1]) | (key[1:] != key[:-1])) + 1
    starts = np.r_[0, brk].astype(np.int64)
    ends = np.r_[brk, n].astype(np.int64)
    big = (ends - starts) >= 2
    starts, ends = starts[big], ends[big]
    from pipeline import _aot

    def k(*args):  # type: ignore[no-untyped-def]
        return _aot.call_or_jit("bucket_pairs", lambda: _kernels().bucket_pairs, *args)

    node = np.ascontiguousarray(node, dtype=np.int64)
    empty = np.zeros(0, np.int64)
    m = k(node, starts, ends, int(max_bucket), int(window), int(old_from), False, empty, empty)
    out_a = np.empty(m, np.int64)
    out_b = np.empty(m, np.int64)
    k(node, starts, ends, int(max_bucket), int(window), int(old_from), True, out_a, out_b)
    return out_a, out_b


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct (a, b) pairs."""
    if a.size == 0:
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    return a[keep], b[keep]


def verify_spanning(a_loc: np.ndarray, b_loc: np.ndarray, n_local: int, flat: np.ndarray, offs: np.ndarray,
                    threshold: float, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the pairs (local indices, in the given order) that joined; stats (checked, joined)."""
    parent = np.arange(n_local, dtype=np.int64)
    joined = np.zeros(a_loc.shape[0], dtype=bool)
    stats = np.zeros(2, dtype=np.int64)
    from pipeline import _aot

    args = (a_loc, b_loc, flat, offs, float(threshold), bool(verify), parent, joined, stats)
    _aot.call_or_jit("verify_spanning", lambda: _kernels().verify_spanning, *args)
    return joined, stats


def verify_spanning_sets(a_loc: np.ndarray, b_loc: np.ndarray, a_set: np.ndarray, b_set: np.ndarray,
                         a_flat: np.ndarray, a_offs: np.ndarray, b_flat: np.ndarray, b_offs: np.ndarray,
                         threshold: float, parent: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """One batch of :func:`verify_spanning` (verified) with the two sides' sets held apart.

    ``a_loc``/``b_loc`` index ``parent`` (the task's union-find, carried across batches, as are
    ``stats``); ``a_set``/``b_set`` are the rows of each pair's sets in ``a_flat``/``a_offs`` and
    ``b_flat``/``b_offs``. Returns the mask of this batch's pairs that joined.
    """
    joined = np.zeros(a_loc.shape[0], dtype=bool)
    from pipeline import _aot

    args = (a_loc, b_loc, a_set, b_set, a_flat, a_offs, b_flat, b_offs, float(threshold), parent, joined, stats)
    _aot.call_or_jit("verify_spanning_sets", lambda: _kernels().verify_spanning_sets, *args)
    return joined


# -- large-star / small-star ----------------------------------------------------------------------


def _save_edges(out_dir: str, src: np.ndarray, dst: np.ndarray, partitions: int, tag: str) -> None:
    """Write directed edges (both directions already in src/dst) to their partitions' inboxes."""
    from pipeline.reduce import join, save_npz

    part = hash_partition(src.astype(np.uint64), partitions)
    for q in range(partitions):
        sel = part == q
        save_npz(join(out_dir, f"to-{q:05d}", f"{tag}.npz"), src=src[sel], dst=dst[sel])


def send_undirected(out_dir: str, x: np.ndarray, y: np.ndarray, partitions: int, tag: str) -> None:
    _save_edges(out_dir, np.r_[x, y].astype(np.int64), np.r_[y, x].astype(np.int64), partitions, tag)


def _load_inbox(in_dir: str, q: int) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.reduce import join, list_folder, load_npz

    src, dst = [], []
    for f in list_folder(join(in_dir, f"to-{q:05d}"), ".npz"):
        z = load_npz(f)
        src.append(z["src"])
        dst.append(z["dst"])
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return unique_pairs(np.concatenate(src), np.concatenate(dst))


def _groups(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    counts = np.diff(np.r_[starts, u.size])
    return starts, counts


def star_step(op: str, in_dir: str, q: int, out_dir: str, partitions: int) -> tuple[str, int]:
    """One large-star (``op="large"``) or small-star step of partition ``q``; returns (digest, edges).

    The digest is of the deduplicated input edge set, so the plan can tell when a round
    changed nothing.
    """
    u, v = _load_inbox(in_dir, q)
    digest = hashlib.sha256(u.tobytes() + b"|" + v.tobytes()).hexdigest()
    if u.size == 0:
        send_undirected(out_dir, u, v, partitions, f"from-{q:05d}")
        return digest, 0
    starts, counts = _groups(u)
    if op == "large":
        m = np.minimum(u[starts], np.minimum.reduceat(v, starts))
        m_row = np.repeat(m, counts)
        sel = v > u
        x, y = v[sel], m_row[sel]
    else:
        vm = np.where(v < u, v, u)
        m = np.minimum(u[starts], np.minimum.reduceat(vm, starts))
        m_row = np.repeat(m, counts)
        sel = (v < u) & (v != m_row)
        cu = u[starts]
        hub = cu != m
        x = np.r_[v[sel], cu[hub]]
        y = np.r_[m_row[sel], m[hub]]
    send_undirected(out_dir, x, y, partitions, f"from-{q:05d}")
    return digest, int(u.size)


def star_labels(in_dir: str, q: int, out_dir: str, partitions: int) -> int:
    """At the fixed point: (node, component minimum) of partition ``q``, sent to hash(minimum)."""
    u, v = _load_inbox(in_dir, q)
    if u.size:
        starts, _ = _groups(u)
        nodes = u[starts]
        root = np.minimum(nodes, np.minimum.reduceat(v, starts))
    else:
        nodes = root = np.zeros(0, np.int64)
    _save_edges(out_dir, root, nodes, partitions, f"from-{q:05d}")  # keyed by root: src=root, dst=node
    return int(nodes.size)


def components_plan(edges_dir: str, work: str, partitions: int, max_rounds: int = 200
                    ) -> Generator[list[ReduceTask], list[Any], str]:
    """Sub-plan: components of the undirected edges in ``edges_dir``'s inboxes (both directions).

    Returns the folder whose inboxes hold ``(root, node)`` pairs keyed by hash(root), one per
    node that has an edge; ``root`` is the smallest node of its component.
    """
    from pipeline import storage

    cur = edges_dir
    prev_digest: list[str] | None = None
    for rnd in range(max_rounds):
        mid = f"{work}/r{rnd:03d}-large"
        nxt = f"{work}/r{rnd:03d}-small"
        res = yield [ReduceTask(star_step, ("large", cur, q, mid, partitions)) for q in range(partitions)]
        digest = [d for d, _ in res]
        if digest == prev_digest:
            out = f"{work}/labels"
            yield [ReduceTask(star_labels, (cur, q, out, partitions)) for q in range(partitions)]
            return out
        prev_digest = digest
        yield [ReduceTask(star_step, ("small", mid, q, nxt, partitions)) for q in range(partitions)]
        # the round's inputs are consumed: deleted through storage (scratch on an object store too)
        storage.remove_tree(mid)
        if cur != edges_dir:
            storage.remove_tree(cur)
        cur = nxt
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")


def load_labels(labels_dir: str, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(root, node) pairs of partition ``q`` (sorted by root, then node)."""
    return _load_inbox(labels_dir, q)


def union_find_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference: the component minimum of every node 0..n-1 by single-process union-find."""
    from dedup import kernels as kn

    parent = np.arange(n, dtype=np.int64)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = x, y
        while parent[rx] != rx:
            rx = parent[rx]
        while parent[ry] != ry:
            ry = parent[ry]
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return kn.roots(parent)
