"""Numba kernels of :mod:`dedup.components` (module level, so numba's on-disk cache works).

Imports numba at import time: import it lazily, never from a module the registry loads.
"""

from __future__ import annotations

from dedup.kernels import find, jaccard, nb


@nb.njit(cache=True)
def bucket_pairs(nodes, starts, ends, max_bucket, window, old_from, fill, out_a, out_b):  # type: ignore[no-untyped-def]
    # The pairs of dedup.kernels.process_band, in its order: all pairs of a bucket of up to
    # max_bucket nodes; in a larger one each node with the first node and the next `window`.
    k = 0
    for g in range(starts.shape[0]):
        s = starts[g]
        e = ends[g]
        big = e - s > max_bucket
        for x in range(s, e):
            if nodes[x] >= old_from:
                break  # sorted: the rest of the bucket is old too, and old-old pairs are done
            if big and x > s:
                if fill:
                    out_a[k] = nodes[s]
                    out_b[k] = nodes[x]
                k += 1
            ye = min(e, x + 1 + window) if big else e
            for y in range(x + 1, ye):
                if fill:
                    out_a[k] = nodes[x]
                    out_b[k] = nodes[y]
                k += 1
    return k


@nb.njit(cache=True, inline="always")
def _spanning(a, b, sa, sb, fa, oa, fb, ob, threshold, verify, parent, joined, stats):  # type: ignore[no-untyped-def]
    # pair i joins a[i], b[i] in parent unless they are already one component or (verify) the
    # Jaccard of a's set (row sa[i] of fa/oa) and b's (row sb[i] of fb/ob) is under threshold
    for i in range(a.shape[0]):
        ra = find(parent, a[i])
        rb = find(parent, b[i])
        if ra == rb:
            continue
        stats[0] += 1
        if verify:
            if jaccard(fa, oa, sa[i], fb, ob, sb[i]) < threshold:
                continue
        stats[1] += 1
        joined[i] = True
        if ra < rb:
            parent[rb] = ra
        else:
            parent[ra] = rb


@nb.njit(cache=True)
def verify_spanning(a, b, flat, offs, threshold, verify, parent, joined, stats):  # type: ignore[no-untyped-def]
    _spanning(a, b, a, b, flat, offs, flat, offs, threshold, verify, parent, joined, stats)


@nb.njit(cache=True)
def verify_spanning_sets(a, b, sa, sb, fa, oa, fb, ob, threshold, parent, joined, stats):  # type: ignore[no-untyped-def]
    """:func:`verify_spanning` with a's sets in (fa, oa) at rows sa, b's in (fb, ob) at rows sb."""
    _spanning(a, b, sa, sb, fa, oa, fb, ob, threshold, True, parent, joined, stats)
