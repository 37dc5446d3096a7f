"""The process pool's fork server preloads modules and numba kernels (pipeline.preload)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.preload import modules_for
from pipeline.registry import get_stage_class

REPO = Path(__file__).resolve().parents[2]


def test_preload_names_the_stage_modules_and_their_declared_lazy_imports():
    stages = [get_stage_class("dedup.minhash")(), get_stage_class("filter.length")()]
    mods = modules_for(stages)
    assert mods[0] == "__main__" and mods[-1] == "pipeline._forkserver_warm"
    for m in ("pipeline.executor", "dedup.minhash", "dedup.components", "polars", "pipeline.filters.basic"):
        assert m in mods
    assert len(mods) == len(set(mods))


def test_warming_loads_cached_kernels_without_compiling():
    """A fresh process that imports the warm module holds the cached kernels (loaded, not
    compiled: a kernel's first call compiles it and writes the cache, the next process loads it)."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from pipeline._wordcount import count_words\n"
        "import pipeline._forkserver_warm as w\n"
        "print(w.WARMED, len(count_words.overloads))\n" % str(REPO)
    )
    # first process: make sure the word counter's cache exists (compiles it once if missing)
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r)\n"
                    "from pipeline.tokens import word_count\nimport pyarrow as pa\n"
                    "word_count(pa.table({'text': ['a b c']}))" % str(REPO)], check=True, timeout=240)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True)
    warmed, overloads = map(int, r.stdout.split())
    assert warmed >= 1 and overloads >= 1, r.stdout


def test_the_fork_server_preloads_while_the_driver_plans_and_the_trace_shows_every_step(tmp_path: Path, raw_docs):
    """``workers > 1``: the fork server (which imports and warms the stages, ~1 CPU-s) is
    started when the run starts, before the driver fingerprints the inputs and plans — not
    when the first shard is submitted. ``ASSAY_TRACE`` timelines every process's spans."""
    import json

    from pipeline import _trace

    inp = tmp_path / "in"
    inp.mkdir()
    _write_shards(inp, raw_docs, per_shard=40)
    spec = {"name": "t", "input": {"paths": [str(inp)]}, "output": {"dir": str(tmp_path / "out")},
            "stages": [{"kind": "filter.length", "min_chars": 100}, {"kind": "dedup.exact"}]}
    trace = tmp_path / "trace"
    trace.mkdir()
    code = (
        "import json, sys; sys.path.insert(0, %r)\n"
        "from pipeline.run import run_spec\nfrom pipeline.spec import PipelineSpec\n"
        "run_spec(PipelineSpec.from_dict(json.loads(%r)), progress=False, workers=2)\n" % (str(REPO), json.dumps(spec))
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=240, env={**os.environ, _trace.ENV: str(trace)})
    ev = _trace.load(trace)
    start = next(e for e in ev if e["role"] == "driver" and e["what"] == "start")
    launch = next(e for e in ev if e["role"] == "driver" and e["what"] == "fork server start")
    preload = next(e for e in ev if e["role"] == "forkserver")
    # launched inside the driver's start-up (fingerprints, plan), not at the first submit
    assert start["t0"] <= launch["t0"] <= launch["t1"] <= start["t1"], (launch, start)
    assert preload["t1"] > launch["t0"]
    # every shard ran once: in a pool worker, or in the driver while the pool started
    ran = sorted(e["what"] for e in ev if e["role"] in ("worker", "driver") and " shard " in e["what"])
    assert ran == sorted(f"seg{g} shard {i}" for g in (0, 1) for i in range(4))
    assert any(e["role"] == "worker" and e["what"].startswith("reduce exact.") for e in ev)
    assert all(e["t1"] >= e["t0"] and e["cpu_s"] >= 0 for e in ev)
    # segment 0's intermediate shards are deleted once segment 1 has all its markers, before
    # the manifest is written (in the background: the workers need not wait for it)
    span = {e["what"]: e for e in ev if e["role"] == "driver"}
    assert span["seg1"]["t1"] <= span["cleanup seg0"]["t0"] <= span["cleanup seg0"]["t1"] <= span["manifest"]["t0"]
    assert not (tmp_path / "out" / "_work" / "seg0").exists()
    # what `assay bench scale --timeline` reports from it: both workers, each with its tasks
    from bench.scale import timeline

    tl = timeline(trace)
    assert len(tl["workers"]) == 2 and sum(w["tasks"] for w in tl["workers"]) >= 8
    assert tl["fork_server"]["preload_cpu_s"] > 0 and tl["driver_start"]["s"] >= 0
    assert all(0 <= w["idle_s"] <= tl["run_s"] for w in tl["workers"])


def test_the_driver_runs_shards_while_the_pool_starts_and_the_snapshot_is_the_same(tmp_path: Path, raw_docs):
    """While the fork server preloads (made slow here: its preload runs the driver script's top
    level, which sleeps 3 s there only), no pool worker exists yet: the driver runs segment 0's
    shards itself, from the end of the list, and stops once the pool is up. Every shard runs
    exactly once and the snapshot is the 1-worker one."""
    import json
    import textwrap

    from pipeline import _trace
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    inp = tmp_path / "in"
    inp.mkdir()
    for s in range(6):
        with open(inp / f"s{s}.jsonl", "w") as fh:
            for i, d in enumerate(raw_docs[s * 30:(s + 1) * 30]):
                fh.write(json.dumps({"id": f"{s}-{i}", "text": d["text"]}) + "\n")
    data = {"name": "t", "input": {"paths": [str(inp)]}, "output": {"dir": str(tmp_path / "two")},
            "stages": [{"kind": "filter.length", "min_chars": 100}, {"kind": "dedup.exact"}]}
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        sys.path.insert(0, {str(REPO)!r})
        if __name__ != "__main__":  # the fork server's preload of the main module
            time.sleep(3.0)
        if __name__ == "__main__":
            from pipeline.run import run_spec
            from pipeline.spec import PipelineSpec
            m = run_spec(PipelineSpec.from_dict(json.loads({json.dumps(data)!r})), progress=False, workers=2)
            print(json.dumps({{"pid": os.getpid(), "snapshot_id": m["snapshot_id"]}}))
    """))
    trace = tmp_path / "trace"
    trace.mkdir()
    r = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=240,
                       env={**os.environ, _trace.ENV: str(trace)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    ev = _trace.load(trace)
    here = [e for e in ev if e["role"] == "driver" and " shard " in e["what"]]
    pool = [e for e in ev if e["role"] == "worker" and " shard " in e["what"]]
    assert here and all(e["pid"] == out["pid"] and e["what"].startswith("seg0 ") for e in here), here
    assert sorted(e["what"] for e in here + pool) == sorted(f"seg{g} shard {i}" for g in (0, 1) for i in range(6))
    # from the far end of the list (largest input first, so: smallest first), one after the other
    by_size = sorted(range(6), key=lambda s: -(inp / f"s{s}.jsonl").stat().st_size)
    order = [int(e["what"].rsplit(" ", 1)[1]) for e in sorted(here, key=lambda e: e["t0"])]
    assert order == by_size[::-1][:len(order)], (order, by_size)
    preload = next(e for e in ev if e["role"] == "forkserver")
    assert min(e["t0"] for e in here) < preload["t1"]  # while the server was still preloading
    one = run_spec(PipelineSpec.from_dict({**data, "output": {"dir": str(tmp_path / "one")}}), progress=False, workers=1)
    assert one["snapshot_id"] == out["snapshot_id"]


def test_the_fork_server_preloads_from_the_drivers_sys_path(tmp_path: Path, raw_docs):
    """A driver that puts a folder of its own stage modules on ``sys.path`` (a notebook, a
    script; ``bench scale --compare-tree`` does it with a whole checkout): the fork server
    preloads that module from there — before, it imported its preload list with a fresh
    interpreter's path, so the module was not found (workers=2 then failed: the workers did not
    know the stage's kind) and a checkout on the driver's path lost to the working directory's."""
    import json
    import textwrap

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "probe_stage.py").write_text(textwrap.dedent("""
        import os
        from typing import ClassVar
        import pyarrow as pa
        from pipeline.registry import register
        from pipeline.stage import Stage
        IMPORTED_IN = os.getpid()
        @register
        class ProbeStage(Stage):
            kind: ClassVar[str] = "test.probe"
            def process(self, table, ctx):
                tag = f"{IMPORTED_IN}:{os.getpid()}"  # where the module was imported : where it runs
                return table.append_column("probe", pa.array([tag] * table.num_rows, pa.string()))
    """))
    inp = tmp_path / "in"
    inp.mkdir()
    _write_shards(inp, raw_docs, per_shard=10)
    out = tmp_path / "out"
    data = {"name": "t", "input": {"paths": [str(inp)]}, "output": {"dir": str(out)},
            "stages": [{"kind": "dedup.exact"}, {"kind": "test.probe"}]}  # probe after the barrier: in the pool
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, os, sys
        if __name__ == "__main__":  # the path is the driver's only: not set again in the server
            sys.path.insert(0, {str(REPO)!r})
            sys.path.insert(0, {str(mods)!r})
            import probe_stage
            from pipeline.run import run_spec
            from pipeline.spec import PipelineSpec
            m = run_spec(PipelineSpec.from_dict(json.loads({json.dumps(data)!r})), progress=False, workers=2)
            print(json.dumps({{"pid": os.getpid(), "snapshot_id": m["snapshot_id"]}}))
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    driver_pid = json.loads(r.stdout.strip().splitlines()[-1])["pid"]
    import pyarrow.parquet as pq

    tags = set()
    for f in (out / "shards").glob("*.parquet"):
        tags.update(pq.read_table(f, columns=["probe"]).column(0).to_pylist())
    in_pool = {t for t in tags if int(t.split(":")[1]) != driver_pid}
    assert in_pool, tags  # some shards ran in pool workers ...
    assert all(t.split(":")[0] != t.split(":")[1] for t in in_pool), tags  # ... with the module preloaded


def _write_shards(inp: Path, raw_docs: list[dict], per_shard: int, shards: int = 4) -> None:
    """``shards`` JSONL inputs of ``per_shard`` real docs each, ids ``<shard>-<row>``."""
    import json

    for s in range(shards):
        with open(inp / f"s{s}.jsonl", "w") as fh:
            for i, d in enumerate(raw_docs[s * per_shard:(s + 1) * per_shard]):
                fh.write(json.dumps({"id": f"{s}-{i}", "text": d["text"]}) + "\n")
