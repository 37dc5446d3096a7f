"""filter.decontaminate: same keep/drop decisions as datatrove's NGramsDecontFilter on real text."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pyarrow as pa
import pytest

from pipeline.executor import run_stages_in_process
from pipeline.filters.decontaminate import DecontaminateFilter, reference_hashes
from tests.conftest import SHARED, read_jsonl_zst


@pytest.fixture(scope="module")
def corpus():
    rows = read_jsonl_zst(SHARED / "quality_train.jsonl.zst")
    random.Random(3).shuffle(rows)
    prose = [r["text"] for r in rows if r["label"] == 1 and len(r["text"].split()) > 120][:160]
    other = [r["text"] for r in rows if r["label"] == 0][:120]
    rng = random.Random(7)
    # "benchmark" items: a passage of a prose document split into query | label
    refs = []
    for i, text in enumerate(prose[:40]):
        w = text.split()
        s = rng.randrange(0, len(w) - 60)
        refs.append({"query": " ".join(w[s:s + 25]), "text": " ".join(w[s + 25:s + 50]),
                     "task": "bench_a" if i % 2 else "bench_b"})
    docs = list(prose[:40])            # the sources themselves: contaminated
    docs += prose[40:]                 # unrelated prose: clean (mostly)
    docs += other                      # changelogs, licences...: clean (mostly)
    for i, r in enumerate(refs[:20]):  # a label pasted into another document, case and punctuation changed
        host = other[i].split()
        k = len(host) // 2
        docs.append(" ".join(host[:k]) + "\n\n" + r["text"].upper().replace(" ", " , ") + " " + " ".join(host[k:]))
    for i, r in enumerate(refs[20:30]):  # only the query (default config does not look for it)
        docs.append(other[40 + i] + " " + r["query"])
    for i, r in enumerate(refs[30:40]):  # 6 words of label: shorter than one 12-gram
        docs.append(other[60 + i] + " zzqx " + " ".join(r["text"].split()[:6]))
    assert len(refs) == 40 and len(docs) == 160 + 120 + 40
    return refs, docs


def _datatrove_decisions(refs, docs, tmp_path, n=12):
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    cfg = NGramsDecontConfig(n_grams=n)
    # the indexer's own compute_hashes (its run() needs lighteval's task registry, not installed)
    me = SimpleNamespace(tokenizer=load_word_tokenizer("en"), config=cfg, hash_func=create_hash_func(cfg.hash_config))
    by_task: dict[str, set[int]] = {}
    for r in refs:
        by_task.setdefault(r["task"], set()).update(NGramsDecontIndexer.compute_hashes(me, r["text"], r["query"]))
    idx = tmp_path / "dt_index"
    idx.mkdir()
    for task, hs in by_task.items():
        np.array(sorted(hs), dtype="<u8").tofile(idx / f"{task}.index.hashes")
    flt = NGramsDecontFilter(str(idx), config=cfg)
    out = []
    for i, d in enumerate(docs):
        res = flt.filter(Document(text=d, id=str(i)))
        out.append(res is True)
    return out, by_task


def test_parity_with_datatrove(corpus, tmp_path):
    refs, docs = corpus
    ref_file = tmp_path / "refs.jsonl"
    ref_file.write_text("".join(json.dumps(r) + "\n" for r in refs))
    expected, by_task = _datatrove_decisions(refs, docs, tmp_path)
    # our index entries are datatrove's, item by item
    ours_task: dict[str, set[int]] = {}
    for r in refs:
        ours_task.setdefault(r["task"], set()).update(reference_hashes(r["text"], r["query"], 12))
    assert ours_task == by_task
    st = DecontaminateFilter({"reference": [str(ref_file)]})
    table = pa.table({"doc_id": [str(i) for i in range(len(docs))], "text": pa.array(docs, pa.large_string()),
                      "source": ["t"] * len(docs), "url": pa.array([None] * len(docs), pa.string())})
    kept, counters = run_stages_in_process([st], table)
    ours = [str(i) in set(kept.column("doc_id").to_pylist()) for i in range(len(docs))]
    assert ours == expected
    n_dropped = expected.count(False)
    assert n_dropped >= 60  # 40 sources + 20 pasted labels
    assert expected[160 + 120: 160 + 120 + 20] == [False] * 20   # pasted labels found
    # query-only and 6-word pastes add nothing: each is dropped only if its host document is
    # (a few changelogs/licences share a 12-gram with the prose on their own)
    assert expected[300:310] == expected[160 + 40:160 + 50]
    assert expected[310:320] == expected[160 + 60:160 + 70]
    assert sum(expected[300:320]) >= 15
    c = counters[st.name]
    assert c["dropped.contaminated"] == n_dropped
    assert c["contaminated.bench_a"] + c["contaminated.bench_b"] == n_dropped


def test_bad_reference_fails_with_the_field(tmp_path):
    p = tmp_path / "refs.jsonl"
    p.write_text(json.dumps({"question": "no text field"}) + "\n")
    st = DecontaminateFilter({"reference": [str(p)]})
    with pytest.raises(ValueError, match="'text'"):
        st.setup()
