"""Partitioned barrier reduces: plans of small tasks that any executor can run anywhere.

A barrier's reduce is a *generator of steps*: each step is a list of :class:`ReduceTask`
(a module-level function and plain arguments: paths, ints, config values), the executor runs
a step's tasks wherever it likes (in-process, a process pool, Ray tasks) and sends the list of
their results back into the generator, which decides the next step. So:

- the driver holds only task descriptors and small results (counts, histograms, digests),
  never documents, keys or edges;
- every task reads what it needs from files and writes what it makes to files, holding at
  most its partition (a hash range of keys, or one shard's rows);
- every path a task gets is a location of :mod:`pipeline.storage` (a local path or a URL:
  ``s3://``, ``gs://``, any fsspec URL) and every read, write, listing and delete goes
  through the helpers below, so on remote storage a task runs on any node and nothing is
  staged on the driver. Writes publish whole files (local: temp + rename; object stores: one
  PUT at the final key, no rename); the reduce marker, written by the driver after the plan
  ends, is what makes the state visible;
- a step's result never depends on how many partitions there are or where tasks ran, so the
  bytes of the snapshot do not depend on the partition count or the executor (tests check
  partitions 1, 2, 4 in-process, in a process pool and on Ray).

Apply-side state is written per input shard (``shards/part-<i>.parquet``, keyed by
``doc_id``): the worker applying a barrier to shard *i* loads only that file.

Helpers here are the mergeable pieces the stages share: hash partitioning, exact sums of
floats (integer mantissa accumulation, so the total does not depend on grouping), and exact
distributed quantiles by radix selection over histograms (4 rounds of 16-bit digits).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import storage


@dataclass(frozen=True)
class ReduceTask:
    """One unit of reduce work: ``fn(*args)``; ``fn`` must be importable (module level)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def __call__(self) -> Any:
        return self.fn(*self.args)


@dataclass(frozen=True)
class ReduceContext:
    """What a reduce plan is given: artifacts by shard, where state and scratch go."""

    #: (input shard index, artifact path), sorted by shard; shards without rows are absent
    artifacts: list[tuple[int, str]]
    state_dir: str
    scratch: str
    partitions: int = 1
    #: number of input shards of the run (state is written for those that have rows)
    n_shards: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def shard_state(self, shard: int) -> str:
        return shard_state_path(self.state_dir, shard)

    def scratch_dir(self, name: str) -> str:
        p = join(self.scratch, name)
        storage.makedirs(p)
        return p


ReducePlan = Generator[list[ReduceTask], list[Any], None]
TaskRunner = Callable[[list[ReduceTask]], list[Any]]


def run_inline(tasks: list[ReduceTask]) -> list[Any]:
    return [t() for t in tasks]


def drive(plan: ReducePlan, runner: TaskRunner = run_inline) -> Any:
    """Run a reduce plan step by step with ``runner`` (which runs one step's tasks).

    Returns the plan's return value (small work statistics for the reduce marker, or None).
    """
    try:
        step = next(plan)
    except StopIteration as e:
        return e.value
    while True:
        results = runner(step) if step else []
        try:
            step = plan.send(results)
        except StopIteration as e:
            return e.value


def context_for(artifact_paths: Sequence[Path | str], state_dir: Path | str, partitions: int = 1) -> ReduceContext:
    """A context for calling a reduce directly (tests, notebooks): shard *i* = ``artifact_paths[i]``."""
    state = Path(state_dir)
    scratch = state.parent / f".{state.name}-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    arts = [(i, str(p)) for i, p in enumerate(artifact_paths) if Path(p).exists()]
    return ReduceContext(arts, str(state), str(scratch), partitions, len(artifact_paths))


# -- per-shard apply state ------------------------------------------------------------------


def shard_state_path(state_dir: str | Path, shard: int) -> str:
    return join(state_dir, "shards", f"part-{shard:05d}.parquet")


class ShardStateCache:
    """Apply-side state of one shard at a time, looked up by ``doc_id`` (no Python dicts).

    ``lookup(ids, shard)`` returns the row of the shard's state table for each id (-1 if
    absent). The state of a shard is loaded when the first batch of that shard arrives.
    """

    def __init__(self) -> None:
        self.state_dir: str | None = None
        self._shard = -1
        self._table: pa.Table | None = None
        self._keys: pa.Array | None = None

    def open(self, state_dir: Path | str | storage.RemotePath) -> None:
        """``state_dir``: a local folder or a URL (a shard's part is read from there when needed)."""
        self.state_dir = str(state_dir)
        self._shard = -1
        self._table = None

    def table(self, shard: int) -> pa.Table | None:
        if self.state_dir is None:
            raise RuntimeError("apply state not loaded: call load_state(state_dir) first (the executor does)")
        if shard != self._shard:
            path = shard_state_path(self.state_dir, shard)
            self._table = read_parquet(path) if storage.exists(path) else None
            self._keys = self._table.column("doc_id").combine_chunks() if self._table is not None else None
            self._shard = shard
        return self._table

    def lookup(self, ids: pa.Array | pa.ChunkedArray, shard: int) -> np.ndarray:
        t = self.table(shard)
        if t is None or t.num_rows == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        idx = pc.index_in(ids.cast(pa.string()), value_set=self._keys)
        return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def write_table(path: str | Path, table: pa.Table) -> None:
    """Apply state: written durably (local) or in one PUT (object stores), zstd."""
    from pipeline.writers import write_table_atomic

    write_table_atomic(path, table)


# -- reduce-task I/O through pipeline.storage (local paths and URLs alike) ----------------------


def join(base: str | Path | storage.RemotePath, *parts: str) -> str:
    """``base/part/...`` as a string, for a local path or a URL (``Path`` would mangle ``s3://``)."""
    out = str(base).rstrip("/")
    for part in parts:
        out = f"{out}/{part}"
    return out


def is_local(path: str | Path) -> bool:
    return not storage.is_url(path)


def parquet_file(path: str) -> pq.ParquetFile:
    """A Parquet file opened for reading row group by row group (remote: ranged reads)."""
    return pq.ParquetFile(storage.open_input_file(path))


def read_parquet(path: str, **kw: Any) -> pa.Table:
    """``pq.read_table`` on a location (``columns``/``filters`` prune column chunks and row groups)."""
    fs, p = storage.resolve(path)
    return pq.read_table(p, filesystem=fs, **kw)


def write_scratch_table(path: str, table: pa.Table, **kw: Any) -> None:
    """A scratch Parquet file (not durable: a killed reduce starts over), published whole."""
    if is_local(path):
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        pq.write_table(table, tmp, **kw)
        tmp.replace(final)
        return
    with storage.open_output(path) as out:
        pq.write_table(table, out, **kw)


def put_bytes(path: str, data: bytes) -> None:
    """A scratch file published whole (local: temp + rename, no fsync; remote: one PUT)."""
    if is_local(path):
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(final)
        return
    storage.write_bytes(path, data)


def put_json(path: str, text: str) -> None:
    """A small state file (``index.json``, ``threshold.json``…), durable and published whole."""
    storage.write_bytes(path, text.encode())


def list_folder(path: str, suffix: str = "") -> list[str]:
    """Files under ``path`` ending in ``suffix`` (temp files excluded), sorted; [] if none."""
    return [str(f) for f in storage.list_files(path)
            if f.name.endswith(suffix) and not f.name.startswith(".")]


def save_npz(path: str, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    put_bytes(path, buf.getbuffer().tobytes())


def load_npz(path: str) -> dict[str, np.ndarray]:
    src: Any = path if is_local(path) else io.BytesIO(read_whole(path))
    with np.load(src) as z:
        return {k: z[k] for k in z.files}


def read_whole(path: str) -> bytes:
    """All bytes of a remote file by large ranged reads (a streamed GET of a big object can be
    far slower on some stores: 2 MiB/s against 100+ MiB/s in 64 MiB ranges, measured on moto)."""
    f = storage.open_input_file(path)
    try:
        n = f.size()
        step = 64 << 20
        return b"".join(f.read_at(min(step, n - o), o) for o in range(0, n, step))
    finally:
        f.close()


def save_npy(path: str, array: np.ndarray) -> None:
    """An array as .npy: local, straight to the file; remote, zstd-compressed in one upload
    (a count sketch's uint32 counters are mostly small, so it moves a fraction of the bytes)."""
    if is_local(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
        return
    with storage.open_output(path) as raw, pa.CompressedOutputStream(raw, "zstd") as out:
        np.save(out, array, allow_pickle=False)


def load_npy(path: str) -> np.ndarray:
    """An array written by :func:`save_npy` (local: memory-mapped, read-only)."""
    if is_local(path):
        return np.load(path, mmap_mode="r")
    data = pa.CompressedInputStream(pa.BufferReader(read_whole(path)), "zstd").read()
    head = io.BytesIO(data)
    version = np.lib.format.read_magic(head)
    read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(head)
    if fortran:
        raise ValueError(f"{path}: a Fortran-ordered array (save_npy writes C order)")
    # a read-only view of the decompressed bytes, like the local memory map (no third copy)
    return np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=head.tell()).reshape(shape)


def process_tag() -> str:
    """Where this code runs: ``<node>:<pid>`` (the Ray node id inside Ray, else the host name)."""
    node = None
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            node = ray.get_runtime_context().get_node_id()
        except Exception:  # pragma: no cover - an old or half-initialized Ray
            node = None
    return f"{node or socket.gethostname()}:{os.getpid()}"


def run_traced(task: ReduceTask) -> tuple[Any, str]:
    """``(task(), process_tag())``: the executors run tasks so, the reduce marker records where."""
    return task(), process_tag()


# -- partitioning ---------------------------------------------------------------------------


def hash_partition(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each uint64 key by hash *range* (the key's top bits): ``key * P >> 64``."""
    k = np.asarray(keys, dtype=np.uint64)
    if partitions == 1:
        return np.zeros(k.shape[0], dtype=np.int64)
    # mix first, so that keys which are themselves small integers spread evenly
    with np.errstate(over="ignore"):
        h = k ^ (k >> np.uint64(31))
        h = h * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    hi = (h >> np.uint64(32)).astype(np.uint64)
    return ((hi * np.uint64(partitions)) >> np.uint64(32)).astype(np.int64)


def string_key(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash of each string (for partitioning by ``doc_id``)."""
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) for s in values.cast(pa.string()).to_pylist()),
                       dtype=np.uint64, count=len(values))


# -- exact sums -----------------------------------------------------------------------------


def exact_sum(values: np.ndarray) -> Fraction:
    """The exact sum of finite float64 values, as a Fraction (mergeable: add the Fractions).

    Each value is ``m * 2**(e - 53)`` with an integer mantissa ``m``; mantissas are summed per
    exponent in two 26/27-bit halves in int64 (no overflow below 2**36 values), then combined
    as Python integers. The float of the result is correctly rounded whatever the grouping.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[v != 0.0]
    if v.size == 0:
        return Fraction(0)
    m, e = np.frexp(v)
    mi = np.ldexp(m, 53).astype(np.int64)  # exact: |m| < 1, 53 bits
    order = np.argsort(e, kind="stable")
    e_sorted, mi_sorted = e[order], mi[order]
    starts = np.flatnonzero(np.r_[True, e_sorted[1:] != e_sorted[:-1]])
    hi = np.add.reduceat(mi_sorted >> 26, starts)
    lo = np.add.reduceat(mi_sorted & ((1 << 26) - 1), starts)
    exps = e_sorted[starts].astype(np.int64) - 53
    base = int(exps.min())
    total = 0
    for h, lw, ex in zip(hi.tolist(), lo.tolist(), exps.tolist(), strict=True):
        total += ((h << 26) + lw) << (ex - base)
    return Fraction(total) * (Fraction(2) ** base)


# -- exact distributed quantiles (radix select) --------------------------------------------------

_DIGIT_BITS = 16
_ROUNDS = 64 // _DIGIT_BITS


def sortable_bits(v: np.ndarray) -> np.ndarray:
    """uint64 keys whose unsigned order is the float64 order (finite values, -0.0 == 0.0)."""
    v = np.asarray(v, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    b = v.view(np.uint64)
    neg = (b >> np.uint64(63)).astype(bool)
    return np.where(neg, ~b, b | np.uint64(1 << 63))


def from_sortable_bits(k: int) -> float:
    k = np.uint64(k)
    b = k & ~np.uint64(1 << 63) if (k >> np.uint64(63)) else ~k
    return float(np.array([b], dtype=np.uint64).view(np.float64)[0])


def digit_histograms(keys: np.ndarray, prefixes: list[tuple[int, int]]) -> np.ndarray:
    """For each (prefix, round): counts of the next 16-bit digit among keys with that prefix."""
    out = np.zeros((len(prefixes), 1 << _DIGIT_BITS), dtype=np.int64)
    for j, (prefix, rnd) in enumerate(prefixes):
        shift = 64 - _DIGIT_BITS * rnd
        if rnd == 0:
            sel = keys
        else:
            sel = keys[(keys >> np.uint64(shift)) == np.uint64(prefix)]
        digits = ((sel >> np.uint64(shift - _DIGIT_BITS)) & np.uint64((1 << _DIGIT_BITS) - 1)).astype(np.int64)
        out[j] = np.bincount(digits, minlength=1 << _DIGIT_BITS)
    return out


FIRST_ROUND: list[tuple[int, int]] = [(0, 0)]  # the prefixes of round 0, whatever the ranks


def first_round_histogram(keys: np.ndarray) -> np.ndarray:
    """Round 0 of :func:`select_kth` over these keys (``digit_histograms(keys, FIRST_ROUND)``):
    a task that produces the values can return it, and the plan then skips that round's step."""
    return digit_histograms(keys, FIRST_ROUND)


def select_kth(
    ranks: list[int], histograms_of: Callable[[list[tuple[int, int]]], list[ReduceTask]],
    first: list[np.ndarray] | None = None,
) -> Generator[list[ReduceTask], list[Any], list[int]]:
    """Sub-plan: the keys of the given 0-based ranks, by 4 rounds of merged digit histograms.

    ``histograms_of(prefixes)`` returns the tasks of one round; each task returns a
    ``digit_histograms`` array for its part of the data. Yields those steps; returns keys.
    A round asks for each distinct prefix once (ranks close together share theirs: round 0
    always has one, ``FIRST_ROUND``). ``first``: round 0's histograms, if the tasks that made the
    values returned them (:func:`first_round_histogram`) — one step and one read of the data
    fewer; the keys are the same.
    """
    prefixes = [0] * len(ranks)
    remaining = list(ranks)
    for rnd in range(_ROUNDS):
        asked = sorted(set(prefixes))
        if rnd == 0 and first is not None:
            results = list(first)
        else:
            results = yield histograms_of([(p, rnd) for p in asked])
        hist = np.sum(np.stack(results), axis=0) if results else np.zeros((len(asked), 1 << _DIGIT_BITS), np.int64)
        cums = {p: np.cumsum(hist[i]) for i, p in enumerate(asked)}
        for j in range(len(ranks)):
            cum = cums[prefixes[j]]
            d = int(np.searchsorted(cum, remaining[j], side="right"))
            remaining[j] -= int(cum[d - 1]) if d > 0 else 0
            prefixes[j] = (prefixes[j] << _DIGIT_BITS) | d
    return prefixes



def lerp_quantile(lo: float, hi: float, t: float) -> float:
    """numpy's 'linear' interpolation between two order statistics (same rounding as np.quantile)."""
    d = hi - lo
    if t >= 0.5:
        return float(hi - d * (1.0 - t))
    return float(lo + d * t)


def quantile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """(lower rank, upper rank, fraction) of quantile ``q`` in [0, 1] over ``n`` values (numpy linear)."""
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    return lo, hi, pos - lo


def exact_quantiles(
    n: int, qs: list[float], histograms_of: Callable[[list[tuple[int, int]]], list[ReduceTask]],
    first: list[np.ndarray] | None = None,
) -> Generator[list[ReduceTask], list[Any], list[float]]:
    """Sub-plan: exact ``np.quantile(values, qs)`` over distributed values (``n`` of them);
    ``first``: see :func:`select_kth`."""
    triples = [quantile_ranks(n, q) for q in qs]
    ranks = sorted({r for lo, hi, _ in triples for r in (lo, hi)})
    keys = yield from select_kth(ranks, histograms_of, first)
    val = {r: from_sortable_bits(k) for r, k in zip(ranks, keys, strict=True)}
    return [lerp_quantile(val[lo], val[hi], t) for lo, hi, t in triples]


def shard_groups(rc: ReduceContext) -> list[list[tuple[int, str]]]:
    """The artifacts split into ``rc.partitions`` groups of whole shards (empty groups dropped)."""
    groups = [rc.artifacts[j :: rc.partitions] for j in range(rc.partitions)]
    return [g for g in groups if g]


def run_plan_inline(plan: Generator[list[ReduceTask], list[Any], Any]) -> Any:
    """Run a sub-plan with a return value in-process (for tests)."""
    try:
        step = next(plan)
        while True:
            step = plan.send(run_inline(step))
    except StopIteration as e:
        return e.value
