"""The manifest's ``words`` (whitespace words) and ``tokens`` (only from a named tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.run import run_spec
from pipeline.spec import PipelineSpec, SpecError


def _spec(tmp: Path, warcs: list[Path], **output) -> PipelineSpec:  # type: ignore[no-untyped-def]
    return PipelineSpec.from_dict({
        "name": "tokens",
        "input": {"paths": [str(w) for w in warcs]},
        "output": {"dir": str(tmp / "out"), **output},
        "stages": [{"kind": "extract.html"}, {"kind": "filter.length", "min_chars": 200}],
    })


def _texts(root: Path, manifest: dict) -> list[str]:
    return [t for s in manifest["shards"] for t in pq.read_table(root / s["path"]).column("text").to_pylist()]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory, demo_warcs) -> Path:
    """A small byte-level BPE trained with `tokenizers` on the demo pages' text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from pipeline.readers import read_table

    texts = read_table(demo_warcs[0]).column("html").to_pylist()[:50]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([str(t)[:20000] for t in texts], trainers.BpeTrainer(vocab_size=600))
    d = tmp_path_factory.mktemp("tok")
    tok.save(str(d / "tokenizer.json"))
    return d


def test_without_tokenizer_tokens_are_null_and_words_are_words(tmp_path, demo_warcs):
    m = run_spec(_spec(tmp_path, demo_warcs), progress=False, workers=1)
    texts = _texts(tmp_path / "out", m)
    assert texts and m["tokenizer"] is None
    assert m["totals"]["tokens"] is None and all(s["tokens"] is None for s in m["shards"])
    assert m["totals"]["words"] == sum(len(t.split()) for t in texts)
    assert m["totals"]["words"] == sum(s["words"] for s in m["shards"])


def test_words_are_counted_for_final_shards_only_and_stay_exact_with_a_barrier(tmp_path, demo_warcs):
    """With a barrier the run writes intermediate shards: their words are not counted (nothing
    reads them); the final shards' count — the manifest's — is still exact."""
    spec = _spec(tmp_path, demo_warcs)
    spec = PipelineSpec.from_dict({**spec.model_dump(mode="json"),
                                   "stages": [*spec.model_dump(mode="json")["stages"], {"kind": "dedup.exact"}]})
    m = run_spec(spec, progress=False, workers=1)
    texts = _texts(tmp_path / "out", m)
    assert texts and m["totals"]["words"] == sum(len(t.split()) for t in texts)
    seg0 = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "_work" / "markers" / "seg0").glob("*.json"))]
    assert seg0 and all(x["words"] is None for x in seg0) and any(x["rows"] for x in seg0)


def test_with_tokenizer_tokens_are_the_tokenizers_count(tmp_path, demo_warcs, bpe):
    from tokenizers import Tokenizer

    m = run_spec(_spec(tmp_path, demo_warcs, tokenizer=str(bpe)), progress=False, workers=1)
    texts = _texts(tmp_path / "out", m)
    tok = Tokenizer.from_file(str(bpe / "tokenizer.json"))
    want = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
    assert m["totals"]["tokens"] == want
    assert want > 1.2 * m["totals"]["words"]  # a 600-entry BPE splits words: not a word count
    assert m["tokenizer"]["sha256"] and m["tokenizer"]["file"] == "tokenizer.json"
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["totals"]["tokens"] == want


def test_bad_tokenizer_is_a_one_line_spec_error(tmp_path, demo_warcs):
    with pytest.raises((SpecError, ValueError)) as e:
        _spec(tmp_path, demo_warcs, tokenizer=str(tmp_path / "nope"))
    assert "output.tokenizer" in str(e.value) and "\n" not in str(e.value).strip()


def test_word_count_is_str_split_on_real_text_and_every_whitespace(raw_docs):
    import pyarrow as pa

    from pipeline.tokens import word_count

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    edge = ["", "  ", "a", "naïve café", "日本語 テキスト"] + [f"x{s}y{s}{s}z" for s in spaces]
    edge += ["\u2000\u200b\u200a", "a\u00a0\u0085b", "\u3000end\u205f", "Ünï\u1680cødé"]
    texts = [d["text"] for d in raw_docs[:300]] + edge
    for chunked in (pa.chunked_array([pa.array(texts[:150]), pa.array(texts[150:])]),
                    pa.chunked_array([pa.array(texts, pa.large_string())])):
        t = pa.table({"text": chunked})
        assert word_count(t) == sum(len(x.split()) for x in texts)
    assert word_count(pa.table({"text": pa.array(["a b", None], pa.string())})) == 2
    for s in spaces:  # each whitespace char alone separates, as str.split says
        assert word_count(pa.table({"text": [f"a{s}b"]})) == 2, hex(ord(s))
    assert word_count(pa.table({"text": ["a\u200bb"]})) == 1  # zero-width space is not whitespace
