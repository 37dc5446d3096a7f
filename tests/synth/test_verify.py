"""`assay synth verify IN OUT`: every row back with a verdict, JSONL and Parquet."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from synth.verify import answer_key, answers_match, majority, parse_number

ROWS = [
    {"id": "a", "program": "print(sum(i * i for i in range(1, 11)))", "answer": "385", "reference": "385"},
    {"id": "b", "program": "print(2 ** 10)", "answer": "1000"},                       # stated wrong
    {"id": "c", "program": "print(7 / 3)", "answer": "7/3", "reference": "2.3333333"},  # tolerance
    {"id": "d", "program": "print(1 / 0)", "answer": "1"},
    {"id": "e", "program": "while True:\n    pass", "answer": "1"},
    {"id": "f", "program": "import socket\nsocket.socket()", "answer": "1"},
    {"id": "g", "program": "print(41)", "answer": "41", "reference": "42"},          # reference disagrees
    {"id": "h", "answer": "3"},                                                        # no program
    {"id": "i", "program": "x = 1", "answer": "1"},                                    # prints nothing
]
EXPECT = {"a": "verified", "b": "wrong_answer", "c": "verified", "d": "error", "e": "timeout",
          "f": "violation", "g": "wrong_answer", "h": "error", "i": "error"}


def test_number_comparison_convention():
    assert answers_match("42", "42.0") and answers_match("1/3", "0.3333333") and answers_match("1,000", 1000)
    assert answers_match("$12.50", "12.5") and answers_match("Paris.", "paris")
    assert not answers_match("42", "43") and not answers_match("0.3334", "1/3") and not answers_match("42", "forty-two")
    assert parse_number("nan") is None and parse_number("1/0") is None
    assert answer_key("2.0") == answer_key("2") == answer_key("4/2")
    assert majority(["3", "3.0", "4", None]) == (answer_key("3"), 2)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_verify_cli_writes_every_row_with_a_verdict(tmp_path, suffix):
    inp = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        inp.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "this is not json\n")
    else:
        pq.write_table(pa.Table.from_pylist([{**{"program": None, "reference": None}, **r} for r in ROWS]), inp)
    out = tmp_path / f"out{suffix}"
    res = CliRunner().invoke(main, ["synth", "verify", str(inp), str(out), "--cpu-s", "1", "--wall-s", "4"])
    assert res.exit_code == 0, res.output
    if suffix == ".jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert rows[-1]["synth.verdict"] == "error" and "malformed" in rows[-1]["synth.reason"]
        rows = rows[:-1]
    else:
        rows = pq.read_table(out).to_pylist()
    assert {r["id"]: r["synth.verdict"] for r in rows} == EXPECT
    by = {r["id"]: r for r in rows}
    assert by["a"]["synth.result"] == "385" and by["b"]["synth.result"] == "1024"
    assert "reference" in by["g"]["synth.reason"] and "seccomp" in by["f"]["synth.reason"]
    assert "ZeroDivisionError" in by["d"]["synth.reason"]
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["rows"] == len(ROWS) + (suffix == ".jsonl") and summary["verified"] == 2


def test_verify_cli_refuses_to_run_without_a_sandbox(tmp_path, monkeypatch):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(ROWS[0]) + "\n")
    monkeypatch.setenv("PATH", "/nonexistent")
    res = CliRunner().invoke(main, ["synth", "verify", str(inp), str(tmp_path / "out.jsonl")])
    assert res.exit_code == 2 and "sandbox unavailable" in res.output
    assert not (tmp_path / "out.jsonl").exists()
