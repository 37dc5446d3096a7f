"""The CLI as a user meets it: help, stages, one stage alone, a spec run, a bad spec."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
from click.testing import CliRunner

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_the_commands():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("run", "stage", "stages", "show", "bench", "serve"):
        assert cmd in r.output


def test_stages_lists_kinds_with_fields():
    r = CliRunner().invoke(main, ["stages", "--json"])
    assert r.exit_code == 0, r.output
    stages = {s["kind"]: s for s in json.loads(r.output)}
    assert stages["filter.gopher_quality"]["shape"] == "filter"
    assert stages["dedup.exact"]["shape"] == "barrier"
    assert "min_doc_words" in {f["name"] for f in stages["filter.gopher_quality"]["config"]}


def test_stage_lid_alone_keeps_every_row(tmp_path: Path, shared_data: Path):
    from tests.conftest import read_jsonl_zst

    rows = read_jsonl_zst(shared_data / "langid_dev.jsonl.zst")[::400][:300]  # the file is grouped by language
    src = tmp_path / "paras.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": r["text"], "label": r.get("lang")}) + "\n" for i, r in enumerate(rows)))
    r = CliRunner().invoke(main, ["stage", "lid.fasttext", str(src), str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 0, r.output
    t = ds.dataset(tmp_path / "out" / "shards", format="parquet").to_table()
    assert t.num_rows == 300
    assert t.column("lang").null_count == 0
    assert len(set(t.column("lang").to_pylist())) > 5  # many languages, none dropped


def test_stage_set_values_are_typed_and_bad_ones_named(tmp_path: Path, raw_docs):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in raw_docs[:50]))
    r = CliRunner().invoke(main, ["stage", "filter.length", str(src), str(tmp_path / "o"), "--set", "min_chars=2000", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "too_short" in r.output
    r = CliRunner().invoke(main, ["stage", "filter.length", str(src), str(tmp_path / "o2"), "--set", "min_chars=lots"])
    assert r.exit_code == 2
    assert "stages[0] (filter.length).min_chars" in r.output and "'lots'" in r.output


def test_run_demo_spec_prints_the_table_and_balances(tmp_path: Path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["run", str(REPO / "examples" / "demo.toml"), "--output", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    for stage in ("extract.html", "lid.fasttext", "filter.gopher_quality", "dedup.exact"):
        assert stage in r.output
    assert "exact_duplicate 3" in r.output and "q:broken_warc_record 1" in r.output
    assert "[ok]" in r.output
    show = CliRunner().invoke(main, ["show", str(out)])
    assert show.exit_code == 0 and "snapshot" in show.output


def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path):
    p = tmp_path / "bad.toml"
    p.write_text('[input]\npaths = ["examples/data"]\n[output]\ndir = "x"\n[[stages]]\nkind = "filter.gopher_quality"\nmin_doc_words = "many"\n')
    r = CliRunner().invoke(main, ["run", str(p)])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0
    assert "stages[0] (filter.gopher_quality).min_doc_words" in r.output
