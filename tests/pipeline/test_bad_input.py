"""Bad input loses nothing: every bad record or file is quarantined with a reason, the job
completes, and in = kept + dropped + quarantined."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.run import run_spec
from pipeline.spec import PipelineSpec


def _lines(docs: list[dict]) -> bytes:
    return b"".join(json.dumps({"id": f"d{i}", "text": d["text"], "url": d.get("url")}).encode() + b"\n"
                    for i, d in enumerate(docs))


@pytest.fixture()
def bad_inputs(tmp_path: Path, raw_docs: list[dict], demo_warcs: list[Path]) -> tuple[Path, dict]:
    d = tmp_path / "in"
    d.mkdir()
    docs = [x for x in raw_docs if 200 < len(x["text"]) < 20_000][:120]
    expected = {"good_docs": 0, "quarantine": {}}

    def q(reason: str, n: int = 1) -> None:
        expected["quarantine"][reason] = expected["quarantine"].get(reason, 0) + n

    (d / "a_good.jsonl").write_bytes(_lines(docs[:20]))
    expected["good_docs"] += 20
    whole = gzip.compress(_lines(docs[20:60]))
    (d / "b_truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    q("truncated_or_corrupt_stream")
    good_utf8 = _lines(docs[60:70]).splitlines(keepends=True)
    good_utf8.insert(4, b'{"id": "bad", "text": "caf\xe9 au lait \xff\xfe"}\n')
    (d / "c_bad_utf8.jsonl").write_bytes(b"".join(good_utf8))
    expected["good_docs"] += 10
    q("invalid_utf8")
    broken = _lines(docs[70:80]).splitlines(keepends=True)
    broken.insert(2, b'{"id": "x", "text": "unterminated\n')
    broken.insert(5, b"[1, 2, 3]\n")
    broken.insert(7, b'{"id": "y", "body": "no text field"}\n')
    (d / "d_broken_json.jsonl").write_bytes(b"".join(broken))
    expected["good_docs"] += 10
    q("invalid_json")
    q("not_an_object")
    q("missing_text")
    (d / "e_empty.jsonl").write_bytes(b"")
    huge = {"id": "huge", "text": ("The quick brown fox jumps over the lazy dog. " * 1_200_000)[: 50 * 1024 * 1024]}
    (d / "f_huge.jsonl").write_bytes(json.dumps(huge).encode() + b"\n" + _lines(docs[80:82]))
    expected["good_docs"] += 2
    q("too_large")
    pq.write_table(pa.table({"body": ["no text column here"], "n": [1]}), d / "g_wrong_schema.parquet")
    q("wrong_schema")
    (d / "h_not_parquet.parquet").write_bytes(b"PAR1 this is not really parquet")
    q("unreadable_parquet")
    zst = zstandard.ZstdCompressor().compress(_lines(docs[82:120]))
    (d / "i_truncated.jsonl.zst").write_bytes(zst[: len(zst) // 2])
    q("truncated_or_corrupt_stream")
    shutil.copy(demo_warcs[1], d / "j_broken_record.warc.gz")  # 191 pages + 1 broken record
    expected["good_docs"] += 191
    q("broken_warc_record")
    return d, expected


@pytest.mark.parametrize("split", [1, 3])
def test_bad_input_is_quarantined_and_counts_balance(tmp_path: Path, bad_inputs, split: int):
    """With ``split = 3`` each file is read as three shards: still every record and every
    problem exactly once."""
    d, expected = bad_inputs
    out = tmp_path / "out"
    spec = PipelineSpec.from_dict({"name": "bad", "input": {"paths": [str(d)], "split": split},
                                   "output": {"dir": str(out)},
                                   "stages": [{"kind": "filter.length", "min_chars": 0}]})
    manifest = run_spec(spec, progress=False)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"], stats
    assert stats["docs_in"] == stats["kept"] + stats["dropped"] + stats["quarantined"]
    qt = pa.concat_tables([pq.read_table(p) for p in sorted((out / "quarantine").glob("*.parquet"))])
    reasons = [r.split(":", 1)[0] for r in qt.column("reason").to_pylist()]
    got = {r: reasons.count(r) for r in set(reasons)}
    assert got == expected["quarantine"]
    # the truncated streams still yield the records before the cut
    per_input: dict[str, int] = {}
    for s in manifest["shards"]:
        per_input[s["input"]] = per_input.get(s["input"], 0) + s["rows"]
    assert per_input["b_truncated.jsonl.gz"] > 0 and per_input["i_truncated.jsonl.zst"] > 0
    assert stats["kept"] >= expected["good_docs"]
    # the raw bytes of a bad line are kept, so nothing is lost
    raw = dict(zip(reasons, qt.column("raw").to_pylist(), strict=True))
    assert b"\xff\xfe" in raw["invalid_utf8"]
    assert raw["broken_warc_record"].startswith(b"WARC/1.0")
    assert len(raw["too_large"]) == 1 << 20  # capped, location points at the rest
