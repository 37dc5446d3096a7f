"""Data-Juicer's MinHash deduplicator as ``assay bench dedup`` runs it (bench/_dj_minhash.py,
in its own venv): its doc-level predictions are read right, and a missing venv is a row that
says so, never a silent gap."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from bench import dedup as bd
from bench import neutral_truth as nt


def test_missing_venv_is_an_explicit_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(bd, "DJ_VENV", tmp_path / "no-venv")
    why = bd.datajuicer_missing()
    assert why and "make venv-dj" in why


@pytest.mark.slow
@pytest.mark.skipif(bd.datajuicer_missing() is not None, reason="needs .venv-dj (make venv-dj)")
def test_datajuicer_predictions_match_the_truth(raw_docs, tmp_path):
    rng = random.Random(5)
    base = [d["text"][:1500] for d in raw_docs[:150] if len(d["text"].split()) > 60][:100]
    texts = list(base)
    for t in rng.sample(base, 30):  # a near copy: one word dropped (J well above 0.8)
        w = t.split()
        k = rng.randrange(len(w))
        texts.append(" ".join(w[:k] + w[k + 1 :]))
    left, right, _ = nt.exact_pairs(nt.shingle_sets(texts), 0.8)
    truth = nt.true_duplicate_docs(len(texts), left, right)
    assert 50 <= truth.sum() < len(texts) // 2
    table = pa.table({"text": pa.array([nt.neutral_text(t) for t in texts], pa.large_string())})
    r = bd.run_datajuicer(table, tmp_path, 0.8, num_permutations=128)
    m = nt.doc_metrics(r["predicted"], truth)
    assert m["recall"] >= 0.95 and m["precision"] >= 0.95, m
    assert r["kept"] == len(texts) - int(r["predicted"].sum()) // 2  # one kept per pair
    assert r["cpu_s"] > 0 and r["tree_cpu_s"] >= r["cpu_s"]


def test_whole_run_keeps_a_missing_datajuicer_as_a_reason(monkeypatch, tmp_path, raw_docs):
    monkeypatch.setattr(bd, "DJ_VENV", tmp_path / "no-venv")
    texts = [d["text"][:1300] for d in raw_docs[:60]]
    table = pa.table(
        {
            "doc_id": [str(i) for i in range(60)],
            "text": pa.array(texts, pa.large_string()),
            "source": ["raw"] * 60,
            "url": pa.nulls(60, pa.string()),
        }
    )
    res = bd.whole_run(table, tmp_path / "w", 0.8, peers=("datajuicer",))
    assert "make venv-dj" in res["datajuicer"]["status"]
    assert "datatrove" not in res and res["assay"]["cpu_s"] > 0
    assert "ratio_cpu_datajuicer" not in res
