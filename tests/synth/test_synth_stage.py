"""synth.generate through the executors: provenance, selection, verification, cache, resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run import run_spec
from pipeline.spec import PipelineSpec, SpecError
from synth.sandbox import Sandbox, SandboxLimits
from synth.stage import SynthGenerateStage, derive_seed
from synth.tasks import make_task, parse_critique, parse_qa, parse_reasoning
from tests.synth.conftest import EXAMPLES_SYNTH

REPO = Path(__file__).resolve().parents[2]
SEEDS = EXAMPLES_SYNTH / "seeds.jsonl"


def _spec(out: Path, cache: Path, **stage) -> PipelineSpec:
    return PipelineSpec.from_dict({
        "name": "t", "input": {"paths": [str(SEEDS)]}, "output": {"dir": str(out), "write_dropped": True},
        "stages": [{"kind": "synth.generate", "cache": str(cache), **stage}],
    })


def test_templates_are_versioned_and_hashed(tmp_path):
    a, b = make_task("rewrite"), make_task("rewrite", max_chars=100)
    assert a.template_hash != b.template_hash and len(a.template_hash) == 16
    c1 = make_task("critique", constitution_rules=["Be polite."])
    c2 = make_task("critique", constitution_rules=["Be brief."])
    assert c1.template_hash != c2.template_hash
    toml = tmp_path / "c.toml"
    toml.write_text('rules = ["Be polite."]\n')
    assert make_task("critique", constitution=str(toml)).template_hash == c1.template_hash
    conv = c1.conversation("Some text.")
    assert "1. Be polite." in conv[-1]["content"] and conv[0]["role"] == "system"
    with pytest.raises(ValueError, match="does not exist"):
        make_task("critique", constitution=str(tmp_path / "missing.toml"))


def test_parsers_on_model_style_output():
    r = parse_reasoning("Reasoning: 4*6=24, 24-5=19\n```python\nprint(4 * 6 - 5)\n```\nAnswer: **19**.\n\nProblem: next")
    assert r["synth.program"].strip() == "print(4 * 6 - 5)" and r["synth.answer"] == "19"
    assert parse_reasoning("Reasoning: 17 + 25 = 32.")["_drop"] == "synth.unparseable"
    q = parse_qa("Question: Who founded Debian?\nAnswer: Ian Murdock.", "Debian was founded by Ian Murdock.")
    assert q["synth.question"] == "Who founded Debian?" and q["synth.grounding"] == 1.0
    assert parse_qa("Question: Who?\nAnswer: the moon landing crew", "Debian was founded by Ian Murdock.")["synth.grounding"] == 0.0
    cr = parse_critique("Critique: rude.\nRewrite: Please read the manual.", "RTFM!")
    assert cr["text"] == "Please read the manual." and cr["synth.original"] == "RTFM!"


def test_seeds_are_deterministic_and_distinct():
    assert derive_seed(0, "h", "d", 1) == derive_seed(0, "h", "d", 1)
    assert len({derive_seed(0, "h", "d", s) for s in range(64)}) == 64
    assert derive_seed(1, "h", "d", 0) != derive_seed(0, "h", "d", 0)


def _group(stage, texts):
    rows = []
    for s, t in enumerate(texts):
        row = {"_drop": None, "synth.sample": s, **parse_reasoning(t)}
        rows.append(row)
    stage._verify_group(rows, stage._ref)
    return rows


@pytest.fixture(scope="module")
def verifier():
    st = SynthGenerateStage({"task": "reasoning", "samples": 4, "keep_unverified": True})
    st.sandbox = Sandbox(SandboxLimits(wall_s=8, cpu_s=2))
    return st


def _trace(program: str, answer: str) -> str:
    return f"Reasoning: ...\n```python\n{program}\n```\nAnswer: {answer}"


def test_reasoning_kept_only_when_executed_equals_stated_and_reference(verifier):
    verifier._ref = "42"
    rows = _group(verifier, [
        _trace("print(17 + 25)", "42"),          # verified
        _trace("print(17 + 24)", "41"),          # self-consistent but wrong vs reference
        _trace("print(17 + 25)", "32"),          # stated answer disagrees with execution
        _trace("while True:\n    pass", "42"),   # timeout
    ])
    assert [r["synth.verdict"] for r in rows] == ["verified", "wrong_answer", "wrong_answer", "timeout"]
    assert "reference" in rows[1]["synth.reason"] and rows[0]["synth.result"] == "42"


def test_reasoning_without_reference_uses_the_majority(verifier):
    verifier._ref = None
    rows = _group(verifier, [
        _trace("print(12 * 11)", "132"),
        _trace("x = 12\nprint(x * 11)", "132.0"),
        _trace("print(12 * 11 + 1)", "133"),
        _trace("print(11 * 12)", "132"),
    ])
    assert [r["synth.verdict"] for r in rows] == ["verified", "verified", "wrong_answer", "verified"]
    assert [r["synth.votes"] for r in rows] == [3, 3, 1, 3]
    verifier._ref = None
    split = _group(verifier, [_trace("print(1)", "1"), _trace("print(2)", "2"), _trace("print(1)", "1"),
                              _trace("print(2)", "2")])
    assert all(r["synth.verdict"] == "wrong_answer" for r in split)  # 2 vs 2: no majority


def test_spec_errors_name_the_field(tmp_path):
    with pytest.raises(SpecError, match="base_url"):
        _spec(tmp_path / "o", tmp_path / "c.sqlite", task="rewrite", backend="openai")
    with pytest.raises(SpecError, match="constitution"):
        _spec(tmp_path / "o", tmp_path / "c.sqlite", task="critique")
    with pytest.raises(SpecError, match="samples"):
        _spec(tmp_path / "o", tmp_path / "c.sqlite", task="rewrite", samples=0)


def test_generate_hf_tiny_rows_provenance_and_balance(tmp_path, tiny_model):
    out = tmp_path / "out"
    spec = _spec(out, tmp_path / "c.sqlite", task="rewrite", backend="hf", model=tiny_model, samples=2,
                 max_tokens=6, quality_column="quality.label", min_quality=1)
    m = run_spec(spec, progress=False)
    t = pq.read_table(out / m["shards"][0]["path"])
    assert t.num_rows == 4 * 2  # 4 seeds with quality.label 1, 2 samples each
    rows = t.to_pylist()
    seeds = [json.loads(x) for x in SEEDS.read_text().splitlines()]
    good_ids = {s["id"] for s in seeds if s["quality.label"] == 1}
    assert {r["synth.task"] for r in rows} == {"rewrite"} and {r["source"] for r in rows} == {"synth/rewrite"}
    assert {r["synth.sample"] for r in rows} == {0, 1}
    assert all(r["synth.model"] == tiny_model and r["synth.backend"] == "hf" for r in rows)
    assert len({r["doc_id"] for r in rows}) == 8 and all(r["text"] for r in rows)
    assert json.loads(rows[0]["synth.params"]) == {"max_tokens": 6, "temperature": 0.7, "top_p": 0.95, "seed": 0}
    assert all(0 < r["synth.completion_tokens"] <= 6 for r in rows)
    stats = json.loads((out / "stats.json").read_text())
    st = stats["stages"][1]
    assert st["dropped"] == {"synth.not_selected": 2, "synth.seed": 4}
    assert stats["generated"] == 8 and stats["balanced"]
    assert m["stats"]["generated"] == 8
    dropped = pq.read_table(next((out / "dropped").glob("*.parquet")))
    assert len(dropped) == 6  # the seeds are written aside, not lost
    # the seed docs' ids as the reader assigned them are the provenance
    from pipeline.readers import ReaderOptions, read_shard

    ids = {}
    for tb in read_shard(SEEDS, ReaderOptions()):
        ids.update(zip(tb.column("id").to_pylist(), tb.column("doc_id").to_pylist(), strict=True))
    assert {r["synth.seed_doc_id"] for r in rows} == {ids[i] for i in good_ids}


def test_missing_quality_column_is_a_clear_error(tmp_path, tiny_model):
    spec = _spec(tmp_path / "o", tmp_path / "c.sqlite", task="rewrite", backend="hf", model=tiny_model,
                 max_tokens=2, quality_column="quality.edu", min_quality=3)
    with pytest.raises(ValueError, match="quality.edu"):
        run_spec(spec, progress=False)


@pytest.mark.slow
def test_killed_generation_resumes_without_regenerating(tmp_path, tiny_model):
    cache = tmp_path / "c.sqlite"
    job = {"task": "rewrite", "backend": "hf", "model": tiny_model, "samples": 6, "max_tokens": 24,
           "request_batch": 1, "temperature": 0.8}

    def write_spec(out: Path, cache_path: Path) -> Path:
        data = _spec(out, cache_path, **job).model_dump(mode="json", exclude_none=True)
        p = tmp_path / f"{out.name}.json"
        p.write_text(json.dumps(data))
        return p

    def cached(path: Path) -> int:
        if not path.exists():
            return 0
        try:
            return sqlite3.connect(str(path), timeout=5).execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    runner = ("import json, sys\nfrom pipeline.spec import PipelineSpec\nfrom pipeline.run import run_spec\n"
              "run_spec(PipelineSpec.from_dict(json.load(open(sys.argv[1]))), progress=False)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", runner, str(write_spec(out, cache))], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while cached(cache) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = cached(cache)
    total = 6 * 6  # all 6 seed docs (no quality selection) x 6 samples
    assert 3 <= at_kill < total, f"kill landed at {at_kill} cached completions"
    assert not (out / "manifest.json").exists()
    m = run_spec(PipelineSpec.from_dict(json.loads((tmp_path / "run.json").read_text())), progress=False)
    st = json.loads((out / "stats.json").read_text())["stages"][1]["counters"]
    assert st["synth.requests_generated"] == total - at_kill and st["synth.cache_hits"] == at_kill
    # an uninterrupted run with its own empty cache writes the same bytes
    m2 = run_spec(PipelineSpec.from_dict(json.loads(write_spec(tmp_path / "fresh", tmp_path / "c2.sqlite").read_text())),
                  progress=False)
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in m2["shards"]]
    # a rerun into a new folder with the first cache generates nothing
    m3 = run_spec(PipelineSpec.from_dict(json.loads(write_spec(tmp_path / "again", cache).read_text())), progress=False)
    st3 = json.loads((tmp_path / "again" / "stats.json").read_text())["stages"][1]["counters"]
    assert st3.get("synth.requests_generated", 0) == 0 and st3["synth.cache_hits"] == total
    assert [s["sha256"] for s in m3["shards"]] == [s["sha256"] for s in m["shards"]]


def test_gpu_stage_declares_a_gpu():
    st = SynthGenerateStage({"task": "rewrite", "device": "cuda"})
    assert st.resources.gpus == 1
    assert SynthGenerateStage({"task": "rewrite"}).resources.gpus == 0


def test_keep_seeds_passes_them_through(tmp_path, tiny_model):
    from pipeline.executor import run_stages_in_process

    st = SynthGenerateStage({"task": "rewrite", "backend": "hf", "model": tiny_model, "max_tokens": 3,
                             "keep_seeds": True, "cache": str(tmp_path / "c.sqlite")})
    t = pa.table({"doc_id": ["a"], "text": pa.array(["The quick brown fox."], pa.large_string()), "source": ["s"],
                  "url": pa.array([None], pa.string()), "extra": [1]})
    out, counters = run_stages_in_process([st], t)
    assert out.num_rows == 2 and out.column("extra").to_pylist() == [1, None]
    assert counters[st.name]["generated"] == 1 and counters[st.name].get("dropped", 0) == 0


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_executor_runs_the_engine_in_its_actors(tmp_path, tiny_model):
    stage = {"task": "rewrite", "backend": "hf", "model": tiny_model, "samples": 2, "max_tokens": 5}
    local = run_spec(_spec(tmp_path / "local", tmp_path / "c1.sqlite", **stage), progress=False)
    on_ray = run_spec(_spec(tmp_path / "ray", tmp_path / "c2.sqlite", **stage), ray="auto", progress=False)
    # the actor loaded its own engine (empty cache: everything generated there) and wrote the same bytes
    st = json.loads((tmp_path / "ray" / "stats.json").read_text())["stages"][1]["counters"]
    assert st["synth.requests_generated"] == 12 and st.get("synth.cache_hits", 0) == 0
    assert [s["sha256"] for s in on_ray["shards"]] == [s["sha256"] for s in local["shards"]]
    assert on_ray["stats"] == local["stats"]
