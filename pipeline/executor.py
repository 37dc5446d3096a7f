"""Executors: run a spec's plan over its input shards and write a snapshot.

The unit of work is (segment, input shard): :class:`ShardWorker` reads the shard (or the
previous segment's output for it), streams its batches through the segment's stages, writes
one output file, and last of all writes a completion marker holding the shard's counters. A
killed run therefore resumes by skipping shards whose marker exists; outputs are named from
(segment, shard index, input stem) and written temp-then-rename, so a resumed run writes the
same bytes as an uninterrupted one, and the manifest (built only from markers and final
files) is identical.

:class:`LocalExecutor` runs shards in-process (``workers=1``, the default) or in a process
pool; :class:`pipeline.ray_executor.RayExecutor` runs the same :class:`ShardWorker` inside Ray
Data actor pools. Neither branches on stage kinds.

Barrier reduces are plans of small tasks (:mod:`pipeline.reduce`) split into ``partitions``
hash ranges or shard groups; the driver only sends task descriptors and merges small results.
In-process they run one after the other, with ``workers > 1`` in the same process pool as the
shards, on Ray as Ray tasks on any node. Reduce tasks read artifacts and write scratch and
state through :mod:`pipeline.storage` wherever they run, so on remote storage nothing is
staged on the driver. The partition count never changes the bytes written.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline import _trace, schema, storage
from pipeline.manifest import CorruptShardError, build_manifest, check_shard, merge_stats
from pipeline.plan import Plan, Segment, make_plan
from pipeline.readers import Quarantined, ReaderOptions, read_shard
from pipeline.reduce import ReduceContext, ReduceTask, drive, process_tag, run_traced
from pipeline.spec import PipelineSpec, SpecError
from pipeline.stage import BarrierStage, Stage, StageContext
from pipeline.storage import Loc
from pipeline.writers import ParquetShardWriter, atomic_write_json, write_table_atomic

READ_STAGE = "read"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def shard_stem(path: Loc) -> str:
    name = path.name
    for suffix in (".gz", ".zst", ".zstd", ".warc", ".wet", ".jsonl", ".json", ".ndjson", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return _safe(name)[:80] or "shard"


@dataclass(frozen=True)
class RunLayout:
    """Where a run keeps everything; the snapshot is ``root`` itself (a local path or a URL)."""

    root: Loc

    @property
    def work(self) -> Loc:
        return self.root / "_work"

    def final_shard(self, i: int, stem: str) -> Loc:
        return self.root / "shards" / f"part-{i:05d}-{stem}.parquet"

    def intermediate(self, seg: int, i: int) -> Loc:
        return self.work / f"seg{seg}" / f"part-{i:05d}.parquet"

    def artifact(self, stage: str, i: int) -> Loc:
        return self.work / "artifacts" / _safe(stage) / f"part-{i:05d}.parquet"

    def state_dir(self, stage: str) -> Loc:
        return self.root / "state" / _safe(stage)

    def marker(self, seg: int, i: int) -> Loc:
        return self.work / "markers" / f"seg{seg}" / f"part-{i:05d}.json"

    def reduce_marker(self, stage: str) -> Loc:
        return self.work / "markers" / f"reduce-{_safe(stage)}.json"

    def quarantine(self, i: int) -> Loc:
        return self.root / "quarantine" / f"part-{i:05d}.parquet"

    def dropped(self, seg: int, i: int) -> Loc:
        return self.root / "dropped" / f"seg{seg}-part-{i:05d}.parquet"


class ShardWorker:
    """Runs one segment over one shard. One per process or Ray actor; stages set up once."""

    def __init__(self, spec_data: dict[str, Any], root: str):
        self.spec = PipelineSpec.from_dict(spec_data)
        self.layout = RunLayout(storage.as_loc(root))
        self.plan: Plan = make_plan(self.spec.build_stages())
        self._token_counter: Any = None
        self.reader_opts = ReaderOptions(
            format=self.spec.input.format,
            text_field=self.spec.input.text_field,
            id_field=self.spec.input.id_field,
            url_field=self.spec.input.url_field,
            source=self.spec.input.source,
            max_doc_bytes=self.spec.input.max_doc_bytes,
            batch_size=self.spec.execution.batch_size,
        )
        self.split = self.spec.input.split
        self._ready: set[str] = set()
        self._manifests: dict[str, dict[str, Any]] = {}
        self._state_dirs = contextlib.ExitStack()  # third-party stages' local copies of remote state

    def _prepare(self, seg: Segment) -> None:
        for st in seg.all_stages() + ([seg.barrier_out] if seg.barrier_out else []):
            if st.name not in self._ready:
                st.setup()
                self._ready.add(st.name)
        if seg.barrier_in is not None and f"state:{seg.barrier_in.name}" not in self._ready:
            # the built-in barriers read their state through storage (a shard's part when that
            # shard's batches arrive); a third-party stage gets a local copy of remote state
            state = self.layout.state_dir(seg.barrier_in.name)
            if not getattr(seg.barrier_in, "remote_state", False):
                state = self._state_dirs.enter_context(storage.local_dir(state))
            seg.barrier_in.load_state(state)
            self._ready.add(f"state:{seg.barrier_in.name}")

    def teardown(self) -> None:
        """Call every set-up stage's ``teardown()`` once (the executors call this at the end)."""
        seen: set[str] = set()
        for seg in self.plan.segments:
            for st in seg.all_stages() + ([seg.barrier_out] if seg.barrier_out else []):
                if st.name in self._ready and st.name not in seen:
                    seen.add(st.name)
                    st.teardown()
        self._ready.clear()
        self._state_dirs.close()

    def _source(self, seg_idx: int, shard_idx: int, input_path: Loc, counters: Counter[str]) -> Iterator[pa.Table | Quarantined]:
        if seg_idx == 0:
            part = (shard_idx % self.split, self.split)
            if part[0] == 0:
                counters["bytes_in"] += storage.size(input_path) if storage.exists(input_path) else 0
            bad = self._snapshot_check(input_path)
            if bad is not None:  # a shard of an earlier snapshot whose bytes changed
                if part[0] == 0:
                    yield Quarantined(str(input_path), f"corrupt_shard: {bad}")
                return
            yield from read_shard(input_path, self.reader_opts, part)
            return
        prev = self.layout.intermediate(seg_idx - 1, shard_idx)
        if not storage.exists(prev):  # the previous segment kept nothing for this shard
            return
        pf = pq.ParquetFile(storage.open_input_file(prev))
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i)

    def _snapshot_check(self, path: Loc) -> str | None:
        """For an input that is a shard of a snapshot (``<snap>/shards/x.parquet`` beside a
        manifest): None when its sha256 matches the manifest, else what is wrong."""
        if path.parent.name != "shards" or not storage.exists(path.parent.parent / "manifest.json"):
            return None
        key = str(path.parent.parent)
        if key not in self._manifests:
            self._manifests[key] = storage.read_json(path.parent.parent / "manifest.json")
        rel = f"shards/{path.name}"
        entry = next((e for e in self._manifests[key]["shards"] if e["path"] == rel), None)
        if entry is None:
            return None
        try:
            check_shard(path.parent.parent, entry)
        except CorruptShardError as e:
            return str(e)
        return None

    def run(self, seg_idx: int, shard_idx: int, input_path: str, last: bool) -> dict[str, Any]:
        seg = self.plan.segments[seg_idx]
        self._prepare(seg)
        path = storage.as_loc(input_path)
        stem = shard_stem(path)
        if self.split > 1:
            stem = f"{stem}-{shard_idx % self.split}of{self.split}"
        out_path = self.layout.final_shard(shard_idx, stem) if last else self.layout.intermediate(seg_idx, shard_idx)
        counter = None
        if last and self.spec.output.tokenizer:  # only final shards are in the manifest
            if self._token_counter is None:
                from pipeline.tokens import TokenCounter

                self._token_counter = TokenCounter(self.spec.output.tokenizer)
            counter = self._token_counter
        writer = ParquetShardWriter(out_path, self.spec.output.compression, self.spec.output.rows_per_row_group,
                                    token_counter=counter, count_words=last)  # words: final shards only
        keep_dropped = self.spec.output.write_dropped
        stages = seg.all_stages()
        ctxs = {st.name: StageContext(st.name, str(path), shard_idx, keep_dropped) for st in stages}
        map_ctx = StageContext(seg.barrier_out.name, str(path), shard_idx) if seg.barrier_out else None
        times: dict[str, list[float]] = {st.name: [0.0, 0.0] for st in stages}
        read_counters: Counter[str] = Counter()
        quarantined: list[Quarantined] = []
        artifacts: list[pa.Table] = []
        try:
            for item in self._source(seg_idx, shard_idx, path, read_counters):
                if isinstance(item, Quarantined):
                    quarantined.append(item)
                    read_counters["docs_in"] += 1
                    read_counters["quarantined"] += 1
                    read_counters[f"quarantined.{item.reason.split(':', 1)[0]}"] += 1
                    continue
                table = item
                if seg_idx == 0:
                    read_counters["docs_in"] += table.num_rows
                    read_counters["docs_out"] += table.num_rows
                for st in stages:
                    if table.num_rows == 0:
                        break
                    ctx = ctxs[st.name]
                    ctx.add("docs_in", table.num_rows)
                    ctx.add("bytes_in", _text_bytes(table))
                    w0, c0 = time.perf_counter(), time.process_time()
                    table = st.process(table, ctx)
                    times[st.name][0] += time.perf_counter() - w0
                    times[st.name][1] += time.process_time() - c0
                    ctx.add("docs_out", table.num_rows)
                if seg.barrier_out is not None and table.num_rows:
                    assert map_ctx is not None
                    w0 = time.perf_counter()
                    artifacts.append(seg.barrier_out.map(table, map_ctx))
                    map_ctx.add("map_wall_s", time.perf_counter() - w0)
                writer.write(table)
            wrote = writer.close()
        except BaseException:
            writer.abort()
            raise
        if seg.barrier_out is not None:
            art = pa.concat_tables(artifacts, promote_options="permissive") if artifacts else None
            if art is not None:
                write_table_atomic(self.layout.artifact(seg.barrier_out.name, shard_idx), art)
        if quarantined:
            qt = pa.table(
                {
                    "source": [str(path)] * len(quarantined),
                    "location": [q.location for q in quarantined],
                    "reason": [q.reason for q in quarantined],
                    "raw": [q.raw for q in quarantined],
                },
                schema=schema.QUARANTINE_SCHEMA,
            )
            write_table_atomic(self.layout.quarantine(shard_idx), qt)
        dropped = [t for c in ctxs.values() for t in c.dropped]
        if dropped:
            write_table_atomic(self.layout.dropped(seg_idx, shard_idx), pa.concat_tables(dropped, promote_options="permissive"))
        stage_counts = {st.name: dict(ctxs[st.name].counters) for st in stages}
        stage_times = {name: {"wall_s": w, "cpu_s": c} for name, (w, c) in times.items()}
        if seg_idx == 0:
            stage_counts = {READ_STAGE: dict(read_counters), **stage_counts}
        if map_ctx is not None:
            stage_times.setdefault(f"{map_ctx.stage_name}.map", {"wall_s": map_ctx.counters.get("map_wall_s", 0.0), "cpu_s": 0.0})
        marker = {
            "segment": seg_idx,
            "shard": shard_idx,
            "input": str(path),
            "output": str(out_path.relative_to(self.layout.root)) if wrote else None,
            "rows": writer.rows,
            "words": writer.words,
            "tokens": writer.tokens,
            "stages": stage_counts,
            "times": stage_times,
        }
        atomic_write_json(self.layout.marker(seg_idx, shard_idx), marker)
        return marker


def _remove_segment(layout: RunLayout, seg: int) -> None:
    with _trace.span("driver", f"cleanup seg{seg}"):
        storage.remove_tree(layout.work / f"seg{seg}")


def _text_bytes(table: pa.Table) -> int:
    """Bytes of content a stage reads: the text, or the raw HTML before extraction."""
    import pyarrow.compute as pc

    col = schema.TEXT
    if schema.HTML in table.column_names:
        col = schema.HTML
    elif schema.TEXT not in table.column_names:
        return 0
    return int(pc.sum(pc.binary_length(table.column(col))).as_py() or 0)


# -- process-pool plumbing ---------------------------------------------------------------------------

_WORKER: ShardWorker | None = None


def _pool_init(spec_data: dict[str, Any], root: str, env: dict[str, str] | None = None) -> None:
    from multiprocessing import util

    global _WORKER
    if env is not None:
        # the driver's environment as it is now: a fork server keeps the one it started with, so
        # a later pool of a long-lived driver (tests, the service) would miss e.g. AWS_ENDPOINT_URL
        for k in set(os.environ) - set(env):
            del os.environ[k]
        os.environ.update(env)
    with _trace.span("worker", "init"):
        _WORKER = ShardWorker(spec_data, root)
    # stages' teardown() when the pool shuts this worker down (multiprocessing runs
    # finalizers on a worker's normal exit; atexit hooks it does not)
    util.Finalize(_WORKER, _WORKER.teardown, exitpriority=10)


def _pool_run(args: tuple[int, int, str, bool]) -> dict[str, Any]:
    assert _WORKER is not None
    with _trace.span("worker", f"seg{args[0]} shard {args[1]}"):
        return _WORKER.run(*args)


def _pool_noop() -> None:
    """Submitted first to a new pool: its submission returns once the first worker exists."""


def _pool_reduce(task: ReduceTask) -> tuple[Any, str]:
    with _trace.span("worker", f"reduce {task.fn.__module__.rsplit('.', 1)[-1]}.{task.fn.__name__}"):
        return run_traced(task)


# -- executors ------------------------------------------------------------------------------------------

ShardRunner = Callable[[list[tuple[int, int, str, bool]]], Iterator[dict[str, Any]]]


class BaseExecutor:
    """Shared driver logic: layout checks, segment loop, barrier reduces, manifest."""

    def __init__(self, progress: bool = True, partitions: int | None = None):
        self.progress = progress
        self.partitions = partitions

    def _workers_ahead(self, spec: PipelineSpec, n_shards: int) -> None:
        """Called once the run knows its shards, before it fingerprints inputs and plans: an
        executor may start its workers here, so their start-up overlaps that work."""

    # subclasses provide how a list of shard tasks runs
    def _run_tasks(self, spec: PipelineSpec, root: Loc, tasks: list[tuple[int, int, str, bool]]) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    # ... and how one step of reduce tasks runs (default: in this process, in order); returns
    # each task's ``run_traced`` pair (result, process tag) and how they ran ("inline", "pool",
    # "ray"). Tasks take locations (paths or URLs) and do their own I/O, so they run anywhere.
    def _run_reduce_tasks(self, spec: PipelineSpec, root: Loc, tasks: list[ReduceTask]) -> tuple[list[Any], str]:
        return [run_traced(t) for t in tasks], "inline"

    def _reduce_partitions(self, spec: PipelineSpec) -> int:
        return self.partitions or spec.execution.workers

    def run(self, spec: PipelineSpec) -> dict[str, Any]:
        """Run ``spec`` to completion (resuming if its output holds a partial run)."""
        t0 = time.perf_counter()
        with _trace.span("driver", "start"):
            files = spec.resolve_inputs()  # a missing input is an error before any work starts
            # shard i reads part i % split of file i // split (split = 1: one shard per file)
            inputs = [f for f in files for _ in range(spec.input.split)]
            root = storage.as_loc(spec.output.dir)
            layout = RunLayout(root)
            spec_hash = spec.spec_hash()
            self._check_resources(spec)
            self._workers_ahead(spec, len(inputs))
            prints = self._check_or_start(layout, spec_hash, files)
            plan = make_plan(spec.build_stages())
        # how much work each shard is likely to be (its input's bytes; later segments: the rows
        # the previous segment kept), so that each segment hands out its largest shards first
        weight = [_print_bytes(prints[i // spec.input.split]) for i in range(len(inputs))]
        n_seg = len(plan.segments)
        final_markers: list[dict[str, Any]] = []
        all_markers: list[dict[str, Any]] = []
        # a segment's intermediate shards are read by the next segment only: once that one has
        # all its markers they are deleted in the background (a resume never needs them again),
        # rather than all at the end while the workers wait
        cleaner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-cleanup")
        cleanups = []
        try:
            for seg in plan.segments:
                last = seg.index == n_seg - 1
                tasks = []
                done: list[dict[str, Any]] = []
                # one listing instead of a lookup per shard (on an object store each is a request)
                present = {str(f) for f in storage.list_files(layout.work / "markers" / f"seg{seg.index}")}
                for i, p in enumerate(inputs):
                    m = layout.marker(seg.index, i)
                    if str(m) in present:
                        done.append(storage.read_json(m))
                    else:
                        tasks.append((seg.index, i, str(p), last))
                # largest first (stable: ties in index order). The last tasks of a segment are
                # then its smallest, so the workers reach the barrier close together: in input
                # order a worker could idle for a whole large shard there (seg 0 of the bench
                # scale corpus: shards of 6.8-21.8 MB, 0.18-0.54 CPU-s). Which process runs
                # a shard, or when, changes nothing in its bytes.
                tasks.sort(key=lambda t: -weight[t[1]])
                bar = tqdm(total=len(inputs), initial=len(done), unit="shard", disable=not self.progress,
                           desc=f"segment {seg.index + 1}/{n_seg}", file=sys.stderr, dynamic_ncols=True)
                docs = sum(int(d["rows"]) for d in done)
                with _trace.span("driver", f"seg{seg.index}"):
                    for marker in self._run_tasks(spec, root, tasks):
                        done.append(marker)
                        docs += int(marker["rows"])
                        bar.update(1)
                        bar.set_postfix(docs_out=docs)
                bar.close()
                done.sort(key=lambda d: d["shard"])
                for d in done:
                    weight[int(d["shard"])] = int(d["rows"])
                all_markers.extend(done)
                if last:
                    final_markers = done
                if seg.index > 0:
                    cleanups.append(cleaner.submit(_remove_segment, layout, seg.index - 1))
                if seg.barrier_out is not None:
                    with _trace.span("driver", f"reduce {seg.barrier_out.name}"):
                        self._reduce(spec, layout, seg.barrier_out, len(inputs))
            for f in cleanups:
                f.result()
        finally:
            cleaner.shutdown(wait=True)
        with _trace.span("driver", "manifest"):
            stats = merge_stats(all_markers, plan, wall_s=time.perf_counter() - t0)
            manifest = build_manifest(spec, spec_hash, layout.root, final_markers, stats)
            atomic_write_json(layout.root / "stats.json", stats)
            atomic_write_json(layout.root / "manifest.json", manifest)
            for seg in plan.segments[:-1]:  # all gone but a resume's leftovers: cheap
                storage.remove_tree(layout.work / f"seg{seg.index}")
            for folder in ("shards", "quarantine", "dropped"):  # temp files of killed attempts
                for tmp in storage.list_files(layout.root / folder):
                    if tmp.name.startswith(".") and ".tmp" in tmp.name:
                        storage.remove(tmp)
        return manifest

    def _reduce(self, spec: PipelineSpec, layout: RunLayout, barrier: BarrierStage, n_shards: int) -> None:
        marker = layout.reduce_marker(barrier.name)
        if storage.exists(marker):
            return
        present = {str(f) for f in storage.list_files(layout.work / "artifacts" / _safe(barrier.name))}
        found = [(i, p) for i, p in ((i, layout.artifact(barrier.name, i)) for i in range(n_shards)) if str(p) in present]
        state = layout.state_dir(barrier.name)
        storage.remove_tree(state)  # a reduce killed midway starts over
        partitions = max(1, int(self._reduce_partitions(spec)))
        # The tasks get locations — the run's own artifact files, scratch under _work/reduce and
        # the state folder, local paths or URLs alike — and do their I/O through storage
        # (pipeline.reduce's helpers), so they run wherever the executor puts them: the pool, or
        # Ray tasks on any node. Nothing is downloaded or staged here. A task publishes whole
        # files (no rename on object stores); this marker, written after the plan ends, makes
        # the state visible, and a reduce killed midway starts over (state and scratch cleared).
        scratch = layout.work / "reduce" / _safe(barrier.name)
        storage.remove_tree(scratch)
        storage.makedirs(scratch)
        storage.makedirs(state)
        t0 = time.perf_counter()
        steps = 0
        where: set[str] = set()
        procs: set[str] = set()

        def runner(tasks: list[ReduceTask]) -> list[Any]:
            nonlocal steps
            steps += 1
            with _trace.span("driver", f"reduce step {steps} ({len(tasks)} tasks)"):
                traced, ran = self._run_reduce_tasks(spec, layout.root, tasks)
            where.add(ran)
            procs.update(tag for _, tag in traced)
            return [r for r, _ in traced]

        rc = ReduceContext([(i, str(p)) for i, p in found], str(state), str(scratch), partitions, n_shards)
        info = drive(barrier.reduce_plan(rc), runner)
        storage.remove_tree(scratch)
        atomic_write_json(marker, {"stage": barrier.name, "artifacts": len(found), "partitions": partitions,
                                   "steps": steps, "ran": sorted(where), "wall_s": time.perf_counter() - t0,
                                   # where the tasks ran ("<node>:<pid>"), beside the driver's own tag
                                   "driver": process_tag(), "task_processes": sorted(procs),
                                   "work": info if isinstance(info, dict) else None})

    def _check_resources(self, spec: PipelineSpec) -> None:
        """Fail before any work when the machine cannot give the stages the memory they declare."""

    @staticmethod
    def _check_or_start(layout: RunLayout, spec_hash: str, inputs: list[Loc]) -> list[list[str]]:
        """Record (or, on resume, check) what this run is: its spec hash and each input's content;
        returns the inputs' ``[name, fingerprint]`` pairs.

        Inputs are identified by a content fingerprint (:func:`pipeline.storage.fingerprint`),
        not name + size: an input edited between a kill and the resume would otherwise mix
        outputs of two different files into one snapshot.
        """
        run_file = layout.work / "run.json"
        ident = {"spec_hash": spec_hash, "inputs": fingerprints(inputs)}
        if storage.exists(run_file):
            prev = storage.read_json(run_file)
            if prev.get("spec_hash") != spec_hash:
                raise SpecError(
                    f"output dir {str(layout.root)!r} holds a run of another spec (hash {prev.get('spec_hash', '?')[:12]}, "
                    f"this spec {spec_hash[:12]}); choose a new --output or delete that folder"
                )
            if prev.get("inputs") != ident["inputs"]:
                raise SpecError(
                    f"output dir {str(layout.root)!r} holds a run over other inputs ({_first_change(prev.get('inputs'), ident['inputs'])}); "
                    "refusing to mix outputs: restore the input, or choose a new --output or delete that folder"
                )
            return ident["inputs"]
        if storage.exists(layout.root / "manifest.json"):
            raise SpecError(f"output dir {str(layout.root)!r} already holds a snapshot; choose a new --output")
        atomic_write_json(run_file, ident)
        return ident["inputs"]


def _print_bytes(pair: list[str]) -> int:
    """The input size in a ``[name, "<bytes>:xxh3_128:<hex>"]`` fingerprint pair (0 if unknown)."""
    try:
        return int(str(pair[1]).split(":", 1)[0])
    except (ValueError, IndexError):
        return 0


def fingerprints(inputs: list[Loc]) -> list[list[str]]:
    """[name, content fingerprint] per input, hashed a few files at a time (I/O bound)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, max(1, len(inputs)))) as pool:
        prints = list(pool.map(storage.fingerprint, inputs))
    return [[p.name, f] for p, f in zip(inputs, prints, strict=True)]


def _first_change(old: Any, new: list[list[str]]) -> str:
    old = old or []
    for a, b in zip(old, new, strict=False):
        if a != b:
            what = "content changed" if a[0] == b[0] else f"now {b[0]!r}"
            return f"input {a[0]!r}: {what}"
    return f"{len(old)} inputs then, {len(new)} now"


class LocalExecutor(BaseExecutor):
    """In-process streaming executor (the default). ``workers > 1`` runs shards in processes.

    The process pool lives for the whole run, so its workers start (imports, model loading in
    ``setup()``) once, not once per segment.
    """

    def __init__(self, workers: int | None = None, progress: bool = True, partitions: int | None = None):
        super().__init__(progress, partitions)
        self.workers = workers
        self._worker: ShardWorker | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pool_up = False  # its first worker has been forked

    def run(self, spec: PipelineSpec) -> dict[str, Any]:
        try:
            return super().run(spec)
        finally:
            if self._pool is not None:
                with _trace.span("driver", "pool shutdown"):
                    self._pool.shutdown()
                self._pool = None
                self._pool_up = False
            if self._worker is not None:
                self._worker.teardown()

    def _workers_ahead(self, spec: PipelineSpec, n_shards: int) -> None:
        # the pool's fork server imports the stages and loads their kernels (~1 CPU-s, pipeline.
        # preload) while this process fingerprints the inputs and plans, instead of after; not
        # for one shard (it runs in this process) — a resume with nothing left may start it idly
        if (self.workers or spec.execution.workers) > 1 and n_shards > 1:
            _start_fork_server(spec)

    def _check_resources(self, spec: PipelineSpec) -> None:
        """``workers`` × the largest ``Resources.memory_gb`` must fit in this machine's memory."""
        workers = self.workers or spec.execution.workers
        need = workers * max([st.resources.memory_gb for st in spec.build_stages()] + [0.0])
        total = _physical_memory_gb()
        if total and need > total:
            raise SpecError(
                f"execution.workers: {workers} workers x {need / workers:g} GB (the largest stage's "
                f"Resources.memory_gb) = {need:g} GB > this machine's {total:.1f} GB; use fewer --workers"
            )

    def _run_tasks(self, spec: PipelineSpec, root: Loc, tasks: list[tuple[int, int, str, bool]]) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        workers = self.workers or spec.execution.workers
        if workers <= 1 or (len(tasks) == 1 and self._pool is None):
            for t in tasks:
                yield self._run_here(spec, root, t)
            return
        if self._pool_up:
            yield from self._ensure_pool(spec, root, workers).map(_pool_run, tasks)
            return
        yield from self._run_while_pool_starts(spec, root, workers, tasks)

    def _worker_here(self, spec: PipelineSpec, root: Loc) -> ShardWorker:
        if self._worker is None or self._worker.spec != spec:
            self._worker = ShardWorker(spec.model_dump(mode="json"), str(root))
        return self._worker

    def _set_up_here(self, spec: PipelineSpec, root: Loc, seg: int) -> bool:
        """Set up segment ``seg``'s stages in this process (once); True."""
        w = self._worker_here(spec, root)
        with _trace.span("driver", f"seg{seg} setup"):
            w._prepare(w.plan.segments[seg])
        return True

    def _run_here(self, spec: PipelineSpec, root: Loc, task: tuple[int, int, str, bool]) -> dict[str, Any]:
        """One shard task in this process."""
        w = self._worker_here(spec, root)
        with _trace.span("driver", f"seg{task[0]} shard {task[1]}"):
            return w.run(*task)

    def _run_while_pool_starts(self, spec: PipelineSpec, root: Loc, workers: int,
                               tasks: list[tuple[int, int, str, bool]]) -> Iterator[dict[str, Any]]:
        """The first tasks of a pool: its first worker exists only once the fork server has
        preloaded (~1 s, serial: pipeline.preload), so while a thread waits for it this process
        runs shards itself, from the far end of the list (all of them, if the pool takes that
        long); once the pool is up every task left goes to it and this process only collects.
        Which process ran a shard changes nothing in its bytes (a shard task is a pure function
        of its inputs)."""
        import queue
        import threading

        pool = self._ensure_pool(spec, root, workers)
        helping = _cheap_to_run_here(spec, self._worker_here(spec, root).plan.segments[tasks[0][0]], workers)
        left = list(tasks)
        lock = threading.Lock()
        up = threading.Event()
        stop = threading.Event()
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def feed() -> None:
            try:
                # returns once the fork server has forked the first worker (after its preload);
                # a no-op, so that every shard stays free for this process until then
                pool.submit(_pool_noop)
                self._pool_up = True
                with lock:
                    rest, left[:] = ([] if stop.is_set() else list(left)), []
                up.set()
                for t in rest:
                    pool.submit(_pool_run, t).add_done_callback(results.put)
            except BaseException as e:  # noqa: BLE001 - re-raised by the driver below
                results.put(e)
            finally:
                up.set()

        feeder = threading.Thread(target=feed, name="assay-pool-start", daemon=True)
        feeder.start()
        got = 0
        try:
            while got < len(tasks):
                task = None
                if helping and not up.is_set():
                    with lock:
                        task = left.pop() if left else None
                if task is not None and self._set_up_here(spec, root, task[0]) and up.is_set():
                    # the pool came up while this process set its stages up: the task is its
                    pool.submit(_pool_run, task).add_done_callback(results.put)
                    task = None
                    continue
                if task is not None:
                    marker = self._run_here(spec, root, task)
                else:
                    item = results.get()
                    if isinstance(item, BaseException):
                        raise item
                    marker = item.result()
                got += 1
                yield marker
        finally:
            stop.set()
            feeder.join()

    def _ensure_pool(self, spec: PipelineSpec, root: Loc, workers: int) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = _start_fork_server(spec)
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init,
                                             initargs=(spec.model_dump(mode="json"), str(root), dict(os.environ)))
        return self._pool

    def _reduce_partitions(self, spec: PipelineSpec) -> int:
        return self.partitions or self.workers or spec.execution.workers

    def _run_reduce_tasks(self, spec: PipelineSpec, root: Loc, tasks: list[ReduceTask]) -> tuple[list[Any], str]:
        workers = self.workers or spec.execution.workers
        if workers <= 1 or len(tasks) <= 1:
            return [run_traced(t) for t in tasks], "inline"
        return list(self._ensure_pool(spec, root, workers).map(_pool_reduce, tasks)), "pool"


def _start_fork_server(spec: PipelineSpec) -> Any:
    """The pool's multiprocessing context; its fork server started now (it preloads the
    stages' modules, :mod:`pipeline.preload`, in the background). The fork server is one per
    process: a later run reuses the running one (its preload list is the first run's)."""
    if sys.platform == "win32":  # pragma: no cover - no fork server there
        return get_context("spawn")
    import multiprocessing.forkserver as fs

    from pipeline.preload import modules_for

    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(modules_for(spec.build_stages()))  # used when it (re)starts
    with _trace.span("driver", "fork server start"), _sys_path_for_the_server():
        fs.ensure_running()
    return ctx


@contextlib.contextmanager
def _sys_path_for_the_server() -> Iterator[None]:
    """This process's ``sys.path`` as the fork server's ``PYTHONPATH`` while it is launched.

    The server imports its preload list with the search path of a fresh interpreter: Python
    hands it the driver's ``sys.path`` but applies it only in each forked worker, after the
    preload. So a driver whose path differs — a script or notebook that inserts a checkout or a
    folder of its own stage modules, ``bench scale --compare-tree`` — had its workers run the
    preloaded modules from another tree (the working directory's or the installed one: found
    measuring an A/B of two trees), and a stage module found only on the driver's path was not
    preloaded at all, so workers did not know its kind."""
    old = os.environ.get("PYTHONPATH")
    entries = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries + ([old] if old else [])))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _cheap_to_run_here(spec: PipelineSpec, seg: Segment, workers: int) -> bool:
    """Whether the driver may run this segment's shards while its pool starts: no stage needs a
    GPU, and one more process holding the stages (``Resources.memory_gb``) still fits."""
    stages = seg.all_stages() + ([seg.barrier_out] if seg.barrier_out else [])
    if any(st.resources.gpus > 0 for st in stages):
        return False
    total = _physical_memory_gb()
    need = (workers + 1) * max([st.resources.memory_gb for st in spec.build_stages()] + [0.0])
    return not total or need <= total


def _physical_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def run_stages_in_process(stages: list[Stage], table: pa.Table) -> tuple[pa.Table, dict[str, Counter[str]]]:
    """Apply non-barrier stages to one table in memory (notebooks, tests, `assay stage` previews)."""
    counters: dict[str, Counter[str]] = {}
    for st in stages:
        if isinstance(st, BarrierStage):
            raise ValueError(f"{st.kind} needs the whole corpus; run it through an executor")
        st.setup()
        ctx = StageContext(st.name)
        table = st.process(table, ctx)
        counters[st.name] = ctx.counters
    return table, counters
