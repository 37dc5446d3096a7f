"""``assay bench dedup``: MinHash near-dup dedup vs datasketch, rensa and datatrove, same docs.

What it measures, all in one run on one corpus of real text (Debian copyright files and
changelogs — real near-duplicates — plus ~1.3 KB chunks of the raw pretraining corpus):

- **quality**: doc-level precision / recall / F1 against exact-Jaccard ground truth on the word
  5-gram shingle sets (:mod:`dedup.evaluate`, prefix-filtered all-pairs, exact), for us, for
  datasketch's ``MinHashLSH`` and rensa's ``RMinHashLSH`` (both + union-find, the usual recipe);
- **signature speed** (docs per CPU-second, ``time.process_time``): our numba kernel (JIT time
  reported apart), its numpy reference, datasketch and rensa fed shingle strings built the
  usual Python way (``re.findall(r"\\w+")`` + join);
- **whole run**: our map -> reduce -> apply over 4 shards vs datatrove's MinhashDedupSignature ->
  Buckets -> Cluster -> Filter on ``--datatrove-docs`` documents spread evenly over the corpus
  (its spaCy word tokenizer makes it slow, so it runs on a sample; docs per second compared);
- **memory**: peak RSS growth of map (per 10,000-doc shard) and of reduce (all docs), each in
  a fresh process, at several corpus sizes; a line fitted to the reduce points extrapolates to
  MB per million documents.
- **SoftDedup**: the weight distribution per source kind on the same corpus.
- **Data-Juicer**: its ``document_minhash_deduplicator`` (``py-data-juicer==1.6.1``, in its own
  venv ``.venv-dj``: ``make venv-dj``) in the same quality table, as shipped (its whitespace
  word 5-grams, lower-cased, 256 permutations) and fed the neutral words with 128
  permutations, threshold as ours, its own band choice; without the venv its rows say so.

Run: ``assay bench dedup`` or ``python -m bench.dedup --max-docs 30000``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
_WORD = re.compile(r"\w+")


def _read_zst(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a .jsonl.zst file, streamed (the raw corpus is 282 MB of text)."""
    import zstandard

    with open(path, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for line in reader:
            yield json.loads(line)


def load_corpus(data: Path, max_docs: int, chunk_chars: int = 1300) -> pa.Table:
    """Copyright files + changelogs whole, then raw-corpus chunks up to ``max_docs`` rows."""
    ids, texts, kinds = [], [], []
    for name, kind in (
        ("neardup_copyright.jsonl.zst", "copyright"),
        ("neardup_changelog.jsonl.zst", "changelog"),
    ):
        for r in _read_zst(data / name):
            ids.append(f"{kind}-{r['id']}")
            texts.append(r["text"])
            kinds.append(kind)
    need = max_docs - len(texts)
    if need > 0:
        for r in _read_zst(data / "pretrain_raw.jsonl.zst"):
            t = r["text"]
            for k, s in enumerate(range(0, len(t), chunk_chars)):
                ids.append(f"raw-{r['id']}-{k}")
                texts.append(t[s : s + chunk_chars])
                kinds.append(r.get("kind", "raw"))
                need -= 1
                if need == 0:
                    break
            if need == 0:
                break
    n = min(max_docs, len(texts))
    return pa.table(
        {
            "doc_id": pa.array(ids[:n], pa.string()),
            "text": pa.array(texts[:n], pa.large_string()),
            "source": pa.array(kinds[:n], pa.string()),
            "url": pa.nulls(n, pa.string()),
        }
    )


def _union_find_mask(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    return np.bincount(roots, minlength=n)[roots] > 1


def _py_shingles(text: str, n: int = 5) -> list[str]:
    """The neutral shingles (lower-cased ``\\w+`` word 5-grams), what every peer is fed."""
    from bench.neutral_truth import shingles

    return shingles(text, n)


NOT_INSTALLED = "not installed"


def run_ours(
    table: pa.Table, work: Path, threshold: float, shards: int = 4, **cfg: Any
) -> dict[str, Any]:
    """map per shard -> reduce -> apply (annotate), like the executor; CPU and wall times.

    ``setup()`` (numba kernel load) is inside the timers, as datatrove's start-up is in its.
    """
    from dedup.minhash import MinhashDedupStage
    from pipeline.stage import StageContext
    from pipeline.writers import write_table_atomic

    t_wall, t_cpu = time.perf_counter(), time.process_time()
    stage = MinhashDedupStage({"mode": "annotate", "threshold": threshold, **cfg})
    stage.setup()
    work.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // shards)
    parts = [table.slice(i, step) for i in range(0, table.num_rows, step)]
    t_setup = time.perf_counter() - t_wall
    paths = []
    for i, p in enumerate(parts):
        path = work / f"art-{i:05d}.parquet"
        write_table_atomic(path, stage.map(p, StageContext("m", shard_index=i)))  # as the executor
        paths.append(path)
    t_map = time.perf_counter() - t_wall - t_setup
    state = work / "state"
    state.mkdir(exist_ok=True)
    stage.reduce(paths, state)
    t_reduce = time.perf_counter() - t_wall - t_setup - t_map
    stage.load_state(state)
    out = pa.concat_tables(  # apply state is per shard: the executor sets shard_index
        [stage.process(p, StageContext("m", shard_index=i)) for i, p in enumerate(parts)]
    )
    wall = time.perf_counter() - t_wall
    cpu = time.process_time() - t_cpu
    info = json.loads((state / "index.json").read_text())
    return {
        "predicted": out.column("dedup.cluster_size").to_numpy() > 1,
        "wall_s": wall,
        "cpu_s": cpu,
        "setup_s": t_setup,
        "map_s": t_map,
        "reduce_s": t_reduce,
        "docs_per_s": table.num_rows / wall,
        "info": info,
    }


def _datatrove_neutral_signature():  # type: ignore[no-untyped-def]
    """datatrove's MinhashDedupSignature fed the neutral shingles (its own hashing kept)."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    class NeutralShingleSignature(MinhashDedupSignature):
        def get_shingles(self, text: str) -> np.ndarray:
            return np.fromiter(
                (self._hash_func(s) for s in _py_shingles(text, self.config.n_grams)),
                dtype=np.uint64,
            ).reshape((-1, 1))

    return NeutralShingleSignature


def lsh_bands(threshold: float, num_perm: int = 128) -> tuple[int, int]:
    """datasketch's own (bands, rows) choice for ``threshold`` (equal FP/FN weights)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def run_datatrove(
    table: pa.Table, work: Path, neutral: bool = False, threshold: float = 0.8
) -> dict[str, Any]:
    """datatrove's four MinHash stages in-process; predicted = in a cluster >= 2.

    ``neutral=False``: datatrove as shipped (its spaCy word tokenizer + text normalisation,
    default ``MinhashConfig``: 14 buckets x 8 hashes). ``neutral=True``: the neutral shingles
    and datasketch's band split for ``threshold`` (same shingling and banding as datasketch).
    Signature and filter run as one task each, Buckets one task per bucket (datatrove needs that).
    """
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    t0, c0 = time.perf_counter(), time.process_time()
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(table.column("text").to_pylist())]
    if neutral:
        b, r = lsh_bands(threshold)
        cfg = MinhashConfig(num_buckets=b, hashes_per_bucket=r)
        sig_cls = _datatrove_neutral_signature()
    else:
        cfg = MinhashConfig()
        sig_cls = MinhashDedupSignature
    kept: list[tuple[str, int]] = []

    def collect(data, rank: int = 0, world_size: int = 1):  # type: ignore[no-untyped-def]
        for d in data:
            kept.append((d.id, int(d.metadata.get("minhash_cluster_size", 1))))
            yield d

    sig, buck, clus = work / "sig", work / "buckets", work / "clusters"
    steps = [
        [docs, sig_cls(output_folder=str(sig), config=cfg)],
        [MinhashDedupBuckets(input_folder=str(sig), output_folder=str(buck), config=cfg)],
        [
            MinhashDedupCluster(
                input_folder=str(buck), output_folder=str(clus), config=cfg, save_cluster_size=True
            )
        ],
        [docs, MinhashDedupFilter(input_folder=str(clus), load_cluster_sizes=True), collect],
    ]
    for i, pipe in enumerate(steps):
        tasks = cfg.num_buckets if i == 1 else 1
        LocalPipelineExecutor(
            pipeline=pipe, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}")
        ).run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = table.num_rows
    predicted = np.ones(n, dtype=bool)  # removed docs were in clusters
    for d, size in kept:
        predicted[int(d)] = size > 1
    return {
        "predicted": predicted,
        "wall_s": wall,
        "cpu_s": cpu,
        "docs_per_s": n / wall,
        "config": f"{cfg.num_buckets} buckets x {cfg.hashes_per_bucket} hashes",
    }


DJ_VENV = Path(__file__).resolve().parents[1] / ".venv-dj"

#: Data-Juicer's document_minhash_deduplicator variants: (label, feed neutral text?, op kwargs)
DJ_VARIANTS = (
    ("Data-Juicer, as shipped (space split, lowercase, 256 perms)", False,
     {"num_permutations": 256}),
    ("Data-Juicer, neutral words, 128 perms", True, {"num_permutations": 128}),
)


def datajuicer_missing() -> str | None:
    """Why Data-Juicer cannot run here (None when its venv is there)."""
    if not (DJ_VENV / "bin" / "python").exists():
        return f"not run: {DJ_VENV} missing (make venv-dj)"
    return None


def run_datajuicer(table: pa.Table, work: Path, threshold: float, **op_cfg: Any) -> dict[str, Any]:
    """Data-Juicer's ``document_minhash_deduplicator`` in its own venv on ``table``'s texts.

    A fresh process (:mod:`bench._dj_minhash`): ``cpu_s``/``wall_s`` from building the
    operator to the kept dataset (imports excluded, as in our in-process runs; its worker
    process included); ``tree_cpu_s``/``tree_wall_s`` the whole command, start-up included.
    Raises when it fails: a peer is never dropped silently.
    """
    from bench._tree_cpu import run_cmd_measured

    work.mkdir(parents=True, exist_ok=True)
    inp, out = work / "dj-in.parquet", work / "dj-pred.npy"
    pq.write_table(table.select(["text"]), inp)
    cfg = {"jaccard_threshold": threshold, "tokenization": "space", "window_size": 5,
           "lowercase": True, **op_cfg}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_DATASETS_CACHE=str(work / "hf"), DATA_JUICER_CACHE_HOME=str(work / "dj-home"),
               HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    p = run_cmd_measured(
        [str(DJ_VENV / "bin" / "python"), str(Path(__file__).with_name("_dj_minhash.py")),
         str(inp), str(out), json.dumps(cfg)], env=env)
    inner = json.loads(p["stdout"].strip().splitlines()[-1])
    predicted = np.load(out)
    if predicted.shape != (table.num_rows,):
        raise RuntimeError(
            f"Data-Juicer returned {predicted.shape} predictions for {table.num_rows} docs"
        )
    return {"predicted": predicted, "cpu_s": inner["cpu_s"], "wall_s": inner["wall_s"],
            "tree_cpu_s": p["cpu_s"], "tree_wall_s": p["wall_s"],
            "config": f"{inner['bands']} bands x {inner['rows']} rows, "
                      f"{cfg['num_permutations']} perms", "kept": inner["kept"]}


def _time_sig(fn, docs: int, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = 0.0
    for _ in range(repeats):  # best of 3: the machine is shared
        c0 = time.process_time()
        fn()
        best = max(best, docs / (time.process_time() - c0))
    return best


def signature_speed(table: pa.Table, sample: int) -> dict[str, Any]:
    """Signature docs per CPU-second; every ratio is taken on one sample, timed the same way.

    The sample is ``sample`` raw-corpus chunks (~1.3 KB, the issue's doc size; all docs when
    the table has no ``raw-`` rows), spread evenly; ours, datasketch and rensa each get it (the
    peers as neutral shingle strings, built inside their timer like a user would), best of 3.
    """
    from dedup import signature as sig

    out: dict[str, Any] = {}
    texts = table.column("text").combine_chunks()
    t0 = time.perf_counter()
    out["numba_jit_s"] = sig.warm_up()
    out["numba_first_call_s"] = time.perf_counter() - t0
    out["ours_numba_all_docs"] = _time_sig(lambda: sig.signatures(texts), len(texts))
    out["all_docs_bytes_mean"] = texts.nbytes / max(len(texts), 1)
    raw = pa.compute.starts_with(table.column("doc_id"), "raw-")
    chunks = table.filter(raw).column("text").combine_chunks()
    if not len(chunks):
        chunks = texts
    pick = np.linspace(0, len(chunks) - 1, min(sample, len(chunks))).astype(np.int64)
    sub_arr = chunks.take(pa.array(pick))
    sub = sub_arr.to_pylist()
    out["sample_docs"] = len(sub)
    out["sample_bytes_mean"] = sum(len(t.encode()) for t in sub) / max(len(sub), 1)
    out["ours_numba"] = _time_sig(lambda: sig.signatures(sub_arr), len(sub))
    m = max(len(sub) // 20, 50)
    out["ours_numpy_reference"] = _time_sig(lambda: sig.signatures_reference(sub[:m]), m, 1)
    try:
        import datasketch

        def ds() -> None:
            for t in sub:
                mh = datasketch.MinHash(num_perm=128, seed=1)
                mh.update_batch([s.encode() for s in _py_shingles(t)])

        out["datasketch"] = _time_sig(ds, len(sub), 1)
    except ImportError:
        out["datasketch"] = NOT_INSTALLED
    try:
        import rensa

        def rs() -> None:
            for t in sub:
                r = rensa.RMinHash(num_perm=128, seed=1)
                r.update(_py_shingles(t))

        out["rensa"] = _time_sig(rs, len(sub), 1)
    except ImportError:
        out["rensa"] = NOT_INSTALLED
    return out


def peer_quality(table: pa.Table, threshold: float) -> dict[str, Any]:
    """datasketch / rensa LSH + union-find over all docs (no verification): masks and time.

    Both get the neutral shingles; a peer that does not import is reported as not installed.
    """
    out: dict[str, Any] = {}
    texts = table.column("text").to_pylist()
    n = len(texts)
    try:
        import datasketch

        t0 = time.perf_counter()
        lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=128)
        mhs = []
        for i, t in enumerate(texts):
            m = datasketch.MinHash(num_perm=128, seed=1)
            m.update_batch([s.encode() for s in _py_shingles(t)])
            lsh.insert(i, m)
            mhs.append(m)
        pairs = [(i, j) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i]
        out["datasketch"] = {
            "predicted": _union_find_mask(n, pairs),
            "wall_s": time.perf_counter() - t0,
        }
    except ImportError:
        out["datasketch"] = NOT_INSTALLED
    try:
        import rensa

        t0 = time.perf_counter()
        lsh_r = rensa.RMinHashLSH(threshold=threshold, num_perm=128, num_bands=16)
        rms = []
        for i, t in enumerate(texts):
            r = rensa.RMinHash(num_perm=128, seed=1)
            r.update(_py_shingles(t))
            lsh_r.insert(i, r)
            rms.append(r)
        pairs = [(i, j) for i, r in enumerate(rms) for j in lsh_r.query(r) if j != i]
        out["rensa"] = {"predicted": _union_find_mask(n, pairs), "wall_s": time.perf_counter() - t0}
    except ImportError:
        out["rensa"] = NOT_INSTALLED
    return out


def _whole_run_worker(side: str, inp: str, out: str, work: str, threshold: float) -> None:
    """One side of the whole-run comparison, in a fresh process (imports and start-up count)."""
    table = pq.read_table(inp)
    t0, c0 = time.perf_counter(), time.process_time()
    if side == "assay":
        r = run_ours(table, Path(work), threshold, shards=1)
    else:
        r = run_datatrove(table, Path(work))
    np.save(out, r["predicted"])
    print(json.dumps({"in_process_wall_s": time.perf_counter() - t0,
                      "in_process_cpu_s": time.process_time() - c0}))


def whole_run(
    table: pa.Table, work: Path, threshold: float, peers: tuple[str, ...] = ("datatrove",)
) -> dict[str, Any]:
    """assay and each of ``peers`` (datatrove, datajuicer) as whole fresh processes on the same
    docs, one task each per step.

    Wall time from spawn to the last exit and the CPU seconds of each side's whole process tree
    (:mod:`bench._tree_cpu`, so any worker process counts): every side pays its interpreter
    start, imports and set-up (numba cache load / spaCy / Data-Juicer's torch import) inside
    the timer. Data-Juicer runs as shipped (:data:`DJ_VARIANTS`' first); without its venv the
    side is recorded with the reason, not dropped.
    """
    from bench._tree_cpu import run_cmd_measured

    work.mkdir(parents=True, exist_ok=True)
    inp = work / "in.parquet"
    pq.write_table(table, inp)
    repo = Path(__file__).resolve().parents[1]
    res: dict[str, Any] = {"docs": table.num_rows}
    for side in ("assay", "datatrove"):
        if side != "assay" and side not in peers:
            continue
        p = run_cmd_measured(
            [sys.executable, "-m", "bench.dedup", "--worker", side, "--worker-in", str(inp),
             "--worker-out", str(work / f"{side}.npy"), "--worker-dir", str(work / side),
             "--threshold", str(threshold)],
            cwd=repo,
        )
        wall, cpu = p["wall_s"], p["cpu_s"]
        inner = json.loads(p["stdout"].strip().splitlines()[-1])
        res[side] = {"wall_s": wall, "cpu_s": cpu, **inner,
                     "predicted": np.load(work / f"{side}.npy")}
    if "datajuicer" in peers:
        why = datajuicer_missing()
        if why:
            res["datajuicer"] = {"status": why}
        else:
            r = run_datajuicer(table, work / "dj", threshold, **DJ_VARIANTS[0][2])
            res["datajuicer"] = {"wall_s": r["tree_wall_s"], "cpu_s": r["tree_cpu_s"],
                                 "in_process_cpu_s": r["cpu_s"], "in_process_wall_s": r["wall_s"],
                                 "predicted": r["predicted"], "config": r["config"]}
    a = res["assay"]
    for side, suffix in (("datatrove", ""), ("datajuicer", "_datajuicer")):
        d = res.get(side)
        if d is None or "status" in d:
            continue
        res["ratio_cpu" + suffix] = d["cpu_s"] / a["cpu_s"]
        res["ratio_wall" + suffix] = d["wall_s"] / a["wall_s"]
        res["ratio_in_process_cpu" + suffix] = d["in_process_cpu_s"] / a["in_process_cpu_s"]
    return res


_RSS_MAP = """
import sys, json
from pathlib import Path
sys.path.insert(0, {repo!r})
from bench.dedup import load_corpus
from dedup.minhash import MinhashDedupStage
from pipeline.stage import StageContext
from pipeline.writers import write_table_atomic

def status(key):
    return int([l for l in open('/proc/self/status') if l.startswith(key)][0].split()[1]) / 1024

stage = MinhashDedupStage({{"mode": "annotate", "threshold": {thr}}})
stage.setup()
t = load_corpus(Path({data!r}), {n})
base = status('VmRSS')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # VmHWM := current RSS
step = 10_000  # executor-sized shards: map memory follows the shard, not the corpus
for i in range(0, t.num_rows, step):
    p = Path({work!r}) / f"a{{i:08d}}.parquet"
    write_table_atomic(p, stage.map(t.slice(i, step), StageContext("m")))
print(json.dumps({{"docs": t.num_rows, "map_mb": status('VmHWM') - base}}))
"""

# A fresh process that only reduces: nothing else in memory, so its peak is the reduce's own.
_RSS_REDUCE = """
import sys, json
from pathlib import Path
sys.path.insert(0, {repo!r})
from dedup.minhash import MinhashDedupStage

def status(key):
    return int([l for l in open('/proc/self/status') if l.startswith(key)][0].split()[1]) / 1024

stage = MinhashDedupStage({{"mode": "annotate", "threshold": {thr}}})
stage.setup()
paths = sorted(Path({work!r}).glob("a*.parquet"))
state = Path({work!r}) / "state"
state.mkdir()
base = status('VmRSS')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
stage.reduce(paths, state)
stage.load_state(state)
print(json.dumps({{"reduce_mb": status('VmHWM') - base, "base_mb": base}}))
"""


def rss_curve(data: Path, sizes: list[int], threshold: float) -> dict[str, Any]:
    """Peak RSS growth of map (per 10k-doc shard) and of reduce (all docs), fresh processes.

    VmHWM includes resident pages of the memory-mapped shingle store (file-backed, reclaimable
    by the kernel), so the reduce figure is an upper bound on what it really needs.
    """
    repo = str(Path(__file__).resolve().parents[1])
    points = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as work:
            kw = {"repo": repo, "data": str(data), "n": n, "thr": threshold, "work": work}
            pt = {}
            for code in (_RSS_MAP, _RSS_REDUCE):
                res = subprocess.run(
                    [sys.executable, "-c", code.format(**kw)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                pt.update(json.loads(res.stdout.strip().splitlines()[-1]))
        points.append(pt)
    x = np.array([p["docs"] for p in points], dtype=float)
    y = np.array([p["reduce_mb"] for p in points])
    slope, intercept = np.polyfit(x, y, 1) if len(points) > 1 else (0.0, float(y[0]))
    return {
        "points": points,
        "reduce_mb_fixed": float(intercept),
        "reduce_mb_per_million_docs": float(slope * 1e6),
    }


def softdedup_weights(table: pa.Table, work: Path) -> dict[str, Any]:
    from dedup.softdedup import SoftDedupStage
    from pipeline.stage import StageContext

    st = SoftDedupStage()
    st.setup()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pq.write_table(st.map(table, StageContext("s")), work / "a.parquet", row_group_size=20_000)
    (work / "state").mkdir(exist_ok=True)
    st.reduce([work / "a.parquet"], work / "state")
    st.load_state(work / "state")
    out = st.process(table, StageContext("s"))
    wall = time.perf_counter() - t0
    w = out.column("weight").to_numpy()
    src = np.array(out.column("source").to_pylist())
    by = {}
    for s in sorted(set(src.tolist())):
        ws = w[src == s]
        if ws.size >= 20:
            by[s] = {
                "docs": int(ws.size),
                "mean": float(ws.mean()),
                "median": float(np.median(ws)),
                "weight_share": float(ws.sum() / w.sum()),
                "doc_share": float(ws.size / w.size),
            }
    return {
        "wall_s": wall,
        "quantiles": {q: float(np.quantile(w, q)) for q in (0.01, 0.1, 0.5, 0.9, 0.99)},
        "by_source": by,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="assay bench dedup", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA), help="folder with the shared real-text files")
    ap.add_argument("--max-docs", type=int, default=25_000, help="corpus size (docs)")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument(
        "--sig-sample", type=int, default=3000, help="1.3 KB chunks timed for all signatures"
    )
    ap.add_argument(
        "--datatrove-docs", type=int, default=-1,
        help="docs for datatrove's quality runs (-1 = all, 0 = skip)",
    )
    ap.add_argument(
        "--speed-docs", type=int, default=5000,
        help="docs for the whole-run speed comparison with datatrove (0 = skip)",
    )
    ap.add_argument(
        "--no-peer-quality", action="store_true", help="skip datasketch/rensa LSH quality"
    )
    ap.add_argument(
        "--rss-sizes", default="5000,10000,20000", help="corpus sizes for the RSS curve ('' = skip)"
    )
    ap.add_argument(
        "--soft-raw-docs",
        type=int,
        default=0,
        help="also SoftDedup this many whole raw-corpus docs",
    )
    ap.add_argument(
        "--no-datajuicer", action="store_true",
        help="skip Data-Juicer's document_minhash_deduplicator (its rows then say so)",
    )
    ap.add_argument(
        "--whole-peers", default="datatrove",
        help="peers of the whole-run comparison, comma-separated: datatrove, datajuicer",
    )
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--rss-only", action="store_true", help="only the memory curve")
    ap.add_argument("--sig-only", action="store_true", help="only the signature speed")
    ap.add_argument("--worker", choices=["assay", "datatrove"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-in", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--worker-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _whole_run_worker(args.worker, args.worker_in, args.worker_out, args.worker_dir,
                          args.threshold)
        return {}
    if args.sig_only:
        sp = signature_speed(load_corpus(Path(args.data), args.max_docs), args.sig_sample)
        print(json.dumps(sp, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(sp, indent=2))
        return {"signatures_docs_per_cpu_s": sp}
    if args.rss_only:
        r = rss_curve(Path(args.data), [int(x) for x in args.rss_sizes.split(",")], args.threshold)
        print(json.dumps(r, indent=2))
        return {"rss": r}

    from bench import neutral_truth as nt

    data = Path(args.data)
    table = load_corpus(data, args.max_docs)
    n = table.num_rows
    mb = sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
    print(f"corpus: {n} docs, {mb:.1f} MB (copyright + changelog files, raw-corpus chunks)")
    res: dict[str, Any] = {"docs": n, "mb": mb, "threshold": args.threshold}

    t0 = time.perf_counter()
    texts = table.column("text").to_pylist()
    left, right, _ = nt.exact_pairs(nt.shingle_sets(texts), args.threshold)
    truth = nt.true_duplicate_docs(n, left, right)
    res["ground_truth"] = {
        "definition": "lower-cased \\w+ word 5-grams, exact Jaccard (bench/neutral_truth.py)",
        "pairs": int(left.size),
        "dup_docs": int(truth.sum()),
        "s": time.perf_counter() - t0,
    }
    print(
        f"neutral ground truth: {left.size} pairs at J >= {args.threshold}, "
        f"{truth.sum()} docs with a partner ({res['ground_truth']['s']:.0f} s)"
    )
    neutral = table.set_column(
        table.column_names.index("text"), "text",
        pa.array([nt.neutral_text(t) for t in texts], pa.large_string()),
    )

    res["signatures_docs_per_cpu_s"] = sp = signature_speed(table, args.sig_sample)
    print(
        f"\nsignatures, docs per CPU-second on {sp['sample_docs']} chunks of "
        f"{sp['sample_bytes_mean']:.0f} B (numba cache load {sp['numba_jit_s']:.2f} s, apart)"
    )
    for k in ("ours_numba", "ours_numpy_reference", "datasketch", "rensa"):
        v = sp[k]
        if isinstance(v, str):
            print(f"  {k:22s} {v}")
        else:
            print(f"  {k:22s} {v:>12,.0f}   ours / this = {sp['ours_numba'] / v:.1f}x")

    quality: dict[str, Any] = {}

    def add(name: str, predicted: np.ndarray | None, **extra: Any) -> None:
        if predicted is None:
            quality[name] = {"status": NOT_INSTALLED}
        else:
            quality[name] = nt.doc_metrics(predicted, truth) | extra

    with tempfile.TemporaryDirectory() as d:
        for label, tab in (("own tokenizer", table), ("neutral words", neutral)):
            ours = run_ours(tab, Path(d) / f"ours-{label[:3]}", args.threshold)
            add(f"assay verified, {label}", ours["predicted"], wall_s=ours["wall_s"],
                cpu_s=ours["cpu_s"])
            unv = run_ours(tab, Path(d) / f"unv-{label[:3]}", args.threshold, verify=False)
            add(f"assay --no-verify, {label}", unv["predicted"], wall_s=unv["wall_s"],
                cpu_s=unv["cpu_s"])
            if label == "own tokenizer":
                res["ours_run"] = {k: v for k, v in ours.items() if k != "predicted"}
        if not args.no_peer_quality:
            for name, r in peer_quality(table, args.threshold).items():
                add(name, None if isinstance(r, str) else r["predicted"],
                    **({} if isinstance(r, str) else {"wall_s": r["wall_s"]}))
        if args.datatrove_docs:
            try:
                import datatrove  # noqa: F401

                have_dt = True
            except ImportError:
                have_dt = False
            m = n if args.datatrove_docs < 0 else min(args.datatrove_docs, n)
            if m != n:
                raise SystemExit("--datatrove-docs must be -1 (all docs): quality is on one truth")
            for neu in (False, True):
                name = "datatrove, " + ("neutral shingles + datasketch's bands" if neu
                                        else "as shipped")
                if not have_dt:
                    add(name, None)
                    continue
                r = run_datatrove(table, Path(d) / f"dt-{neu}", neutral=neu,
                                  threshold=args.threshold)
                add(name, r["predicted"], wall_s=r["wall_s"], cpu_s=r["cpu_s"],
                    config=r["config"])
        why = "skipped (--no-datajuicer)" if args.no_datajuicer else datajuicer_missing()
        for label, neu, dj_cfg in DJ_VARIANTS:
            if why:  # an explicit row, never a silent gap
                quality[label] = {"status": why}
                continue
            r = run_datajuicer(neutral if neu else table, Path(d) / f"dj-{neu}", args.threshold,
                               **dj_cfg)
            add(label, r["predicted"], **{k: v for k, v in r.items() if k != "predicted"})
        add("baseline: every doc a duplicate", np.ones(n, dtype=bool))
        if args.speed_docs:
            m = min(args.speed_docs, n)
            sub = table.take(np.linspace(0, n - 1, m).astype(np.int64))  # spread over the corpus
            w = whole_run(sub, Path(d) / "whole", args.threshold,
                          tuple(x for x in args.whole_peers.split(",") if x))
            res["whole_run"] = {k: ({kk: vv for kk, vv in v.items() if kk != "predicted"}
                                    if isinstance(v, dict) else v) for k, v in w.items()}
        res["softdedup"] = softdedup_weights(table, Path(d) / "soft")
    res["lsh_bands_datasketch"] = list(lsh_bands(args.threshold))
    res["quality"] = quality
    print(f"\ndoc-level quality vs the neutral truth at J >= {args.threshold} "
          f"({truth.sum()} true duplicate docs of {n})")
    print(f"  {'method':60s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'wall s':>7s} "
          f"{'CPU s':>7s}")
    for k, q in quality.items():
        if "status" in q:
            print(f"  {k:60s} {q['status']}")
            continue
        cpu = f"{q['cpu_s']:7.1f}" if "cpu_s" in q else f"{'-':>7s}"
        print(
            f"  {k:60s} {q['precision']:9.4f} {q['recall']:7.4f} {q['f1']:6.4f} "
            f"{q.get('wall_s', 0):7.1f} {cpu}"
            + (f"  ({q['config']}; whole command {q['tree_cpu_s']:.1f} CPU-s)"
               if "tree_cpu_s" in q else "")
        )
    o = res["ours_run"]
    print(
        f"\nour whole run (4 shards, in-process): {n} docs in {o['wall_s']:.1f} s wall / "
        f"{o['cpu_s']:.1f} s CPU (setup {o['setup_s']:.2f}, map {o['map_s']:.1f}, "
        f"reduce {o['reduce_s']:.1f})"
    )
    if "whole_run" in res:
        w = res["whole_run"]
        print(
            f"whole run, fresh processes, same {w['docs']} docs, one task per step: assay "
            f"{w['assay']['wall_s']:.1f} s wall / {w['assay']['cpu_s']:.1f} CPU-s"
        )
        for side, suffix in (("datatrove", ""), ("datajuicer", "_datajuicer")):
            if side not in w:
                continue
            if "status" in w[side]:
                print(f"  {side}: {w[side]['status']}")
                continue
            print(
                f"  {side} {w[side]['wall_s']:.1f} s / {w[side]['cpu_s']:.1f} CPU-s -> "
                f"{w['ratio_cpu' + suffix]:.1f}x CPU, {w['ratio_wall' + suffix]:.1f}x wall "
                f"({w['ratio_in_process_cpu' + suffix]:.1f}x CPU without interpreter start and "
                "imports)"
            )
    s = res["softdedup"]
    print(
        f"\nSoftDedup weights ({s['wall_s']:.1f} s): quantiles "
        + ", ".join(f"q{int(q * 100)}={v:.2f}" for q, v in s["quantiles"].items())
    )
    for k, v in s["by_source"].items():
        print(
            f"  {k:22s} docs {v['docs']:6d} mean {v['mean']:.2f} median {v['median']:.2f} "
            f"doc share {v['doc_share']:.3f} -> weight share {v['weight_share']:.3f}"
        )
    if args.rss_sizes:
        sizes = [int(x) for x in args.rss_sizes.split(",") if x]
        res["rss"] = r = rss_curve(data, sizes, args.threshold)
        print(
            "\npeak RSS growth (fresh processes; map per 10k-doc shard, reduce over all): "
            + ", ".join(
                f"{p['docs']} docs: map +{p['map_mb']:.0f} MB, reduce +{p['reduce_mb']:.0f} MB"
                for p in r["points"]
            )
            + f"; reduce fit: {r['reduce_mb_fixed']:.0f} MB + "
            f"{r['reduce_mb_per_million_docs']:.0f} MB per million docs"
        )
    if args.soft_raw_docs:
        raw = []
        for r in _read_zst(data / "pretrain_raw.jsonl.zst"):
            raw.append((r["id"], r["text"], r.get("kind", "raw")))
            if len(raw) >= args.soft_raw_docs:
                break
        rt = pa.table(
            {
                "doc_id": pa.array([x[0] for x in raw], pa.string()),
                "text": pa.array([x[1] for x in raw], pa.large_string()),
                "source": pa.array([x[2] for x in raw], pa.string()),
                "url": pa.nulls(len(raw), pa.string()),
            }
        )
        del raw
        with tempfile.TemporaryDirectory() as d:
            res["softdedup_raw"] = s = softdedup_weights(rt, Path(d))
        print(
            f"\nSoftDedup on the raw corpus ({rt.num_rows} whole docs, {s['wall_s']:.1f} s): "
            + ", ".join(f"q{int(q * 100)}={v:.2f}" for q, v in s["quantiles"].items())
        )
        for k, v in sorted(s["by_source"].items(), key=lambda kv: kv[1]["mean"]):
            print(
                f"  {k:22s} docs {v['docs']:6d} mean {v['mean']:.2f} median {v['median']:.2f} "
                f"doc share {v['doc_share']:.3f} -> weight share {v['weight_share']:.3f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
