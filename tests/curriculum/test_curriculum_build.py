"""Curriculum build on real text: phases by quality, token shares, mixing, deterministic order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from curriculum.build import build_curriculum, domain_of, parse_phases
from curriculum.signals import compute_signals
from curriculum.snapshot_io import (
    read_jsonl_texts,
    read_manifest,
    read_snapshot,
    table_from_records,
    write_snapshot,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """quality_train items (label 1 = prose, 0 = boilerplate), no quality column: signals only."""
    src = DATA / "quality_train.jsonl.zst"
    if not src.exists():
        pytest.skip(f"real data not found at {src}")
    recs = read_jsonl_texts(src)[::6]
    for r in recs:
        r["source"] = f"{r['kind']}:{r['source']}"
    table = table_from_records(recs)
    out = tmp_path_factory.mktemp("cur") / "in"
    half = table.num_rows // 2
    write_snapshot(out, [("a", table.slice(0, half)), ("b", table.slice(half))], name="qt")
    return out


def test_signals_separate_prose_from_boilerplate(labelled: Path) -> None:
    t = read_snapshot(labelled)
    sig = compute_signals(t)
    label = np.array(t.column("label").to_pylist())
    # heuristic quality (no scorer column) ranks prose above boilerplate on average
    assert sig["quality"][label == 1].mean() > sig["quality"][label == 0].mean() + 0.1
    assert np.all((sig["compression_ratio"] > 0) & (sig["compression_ratio"] < 1.2))


def test_build_phases_shares_and_order(labelled: Path, tmp_path: Path) -> None:
    m = build_curriculum(labelled, tmp_path / "c", phases="stable:0.9,anneal:0.1", seed=3)
    cur = m["extra"]["curriculum"]
    assert [p["name"] for p in cur["phases"]] == ["stable", "anneal"]
    anneal = cur["phases"][1]
    assert 0.1 <= anneal["token_frac"] < 0.13  # fills its share, overshoots by one doc at most
    assert anneal["mean_quality"] > cur["phases"][0]["mean_quality"]
    t = read_snapshot(tmp_path / "c")
    assert {"phase", "order", "weight", "curriculum.quality"} <= set(t.column_names)
    assert t.column("order").to_pylist() == list(range(t.num_rows))  # shards in training order
    phases = t.column("phase").to_pylist()
    assert phases == sorted(phases, key=["stable", "anneal"].index)
    label = np.array(t.column("label").to_pylist())
    is_anneal = np.array(phases) == "anneal"
    assert label[is_anneal].mean() > label[~is_anneal].mean()  # best data goes last
    assert sorted(t.column("doc_id").to_pylist()) == sorted(
        read_snapshot(labelled).column("doc_id").to_pylist()
    )
    assert [s["phase"] for s in m["shards"]] == ["stable", "anneal"]
    assert m["parents"] == [read_manifest(labelled)["snapshot_id"]]
    again = build_curriculum(tmp_path / "c", tmp_path / "c2", phases="stable:0.9,anneal:0.1")
    assert again["totals"]["rows"] == m["totals"]["rows"]  # a curriculum snapshot re-builds


def test_order_is_pure_function_of_manifest_seed_epoch(labelled: Path, tmp_path: Path) -> None:
    a = build_curriculum(labelled, tmp_path / "a", seed=1, epoch=0)
    b = build_curriculum(labelled, tmp_path / "b", seed=1, epoch=0)
    c = build_curriculum(labelled, tmp_path / "c", seed=1, epoch=1)
    assert a["snapshot_id"] == b["snapshot_id"] != c["snapshot_id"]
    assert (tmp_path / "a/manifest.json").read_bytes() == (
        tmp_path / "b/manifest.json"
    ).read_bytes()
    ids = [read_snapshot(tmp_path / x).column("doc_id").to_pylist() for x in "abc"]
    assert ids[0] == ids[1] != ids[2]
    assert sorted(ids[0]) == sorted(ids[2])


def test_easy_to_hard_and_mixing(labelled: Path, tmp_path: Path) -> None:
    m = build_curriculum(
        labelled,
        tmp_path / "e",
        order="easy-to-hard",
        mix={"stable": {"changelog": 0.0, "wordlist": 2.0}},
    )
    t = read_snapshot(tmp_path / "e")
    stable = t.filter(pa.compute.equal(t.column("phase"), "stable"))
    d = np.array(stable.column("curriculum.difficulty").to_pylist())
    assert np.all(np.diff(d) >= 0)
    doms = [domain_of(s) for s in stable.column("source").to_pylist()]
    base = read_snapshot(labelled)
    n_word = sum(domain_of(s) == "wordlist" for s in base.column("source").to_pylist())
    assert "changelog" not in doms
    assert 0 < doms.count("wordlist") <= 2 * n_word
    assert doms.count("wordlist") % 2 == 0  # each kept wordlist doc appears exactly twice
    assert "changelog" not in m["extra"]["curriculum"]["mixture"]["stable"]


def test_bad_phase_spec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        parse_phases("stable:0.9,anneal:0.2")
    with pytest.raises(ValueError, match="NAME:SHARE"):
        parse_phases("stable=0.9")


def test_cli_build(labelled: Path, tmp_path: Path) -> None:
    from curriculum.cli import curriculum

    r = CliRunner().invoke(
        curriculum,
        ["build", str(labelled), str(tmp_path / "o"), "--phases", "stable:0.8,mid:0.1,anneal:0.1"],
    )
    assert r.exit_code == 0, r.output
    assert "anneal" in r.output
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [p["name"] for p in m["extra"]["curriculum"]["phases"]] == ["stable", "mid", "anneal"]
    bad = CliRunner().invoke(
        curriculum, ["build", str(labelled), str(tmp_path / "x"), "--phases", "a:0.5"]
    )
    assert bad.exit_code != 0 and "sum to 1" in bad.output


def test_build_never_replaces_a_snapshot_and_refuses_bad_shard_sizes(labelled: Path, tmp_path: Path) -> None:
    """Output = the input snapshot replaced its manifest (its documents orphaned); output = another
    snapshot's folder did the same to that one; --rows-per-shard -5 wrote a snapshot of no shards."""
    import shutil

    from curriculum.cli import curriculum

    src = tmp_path / "in"
    shutil.copytree(labelled, src)
    before = (src / "manifest.json").read_bytes()

    def cli(*args: str) -> Any:
        return CliRunner().invoke(curriculum, ["build", *args])

    r = cli(str(src), str(src) + "/")
    assert r.exit_code == 2 and "is the input snapshot's own folder" in r.output, r.output
    assert cli(str(src), str(tmp_path / "c")).exit_code == 0
    assert cli(str(src), str(tmp_path / "c")).exit_code == 0  # the same build again: a rebuild, same manifest
    built = (tmp_path / "c" / "manifest.json").read_bytes()
    r = cli(str(src), str(tmp_path / "c"), "--seed", "3")  # another spec into that folder
    assert r.exit_code == 2 and "holds another snapshot (spec hash" in r.output, r.output
    assert (tmp_path / "c" / "manifest.json").read_bytes() == built
    r = cli(str(tmp_path / "c"), str(src))  # a curriculum of the curriculum, into the first snapshot's folder
    assert r.exit_code == 2 and "holds another snapshot" in r.output, r.output
    assert (src / "manifest.json").read_bytes() == before
    for flag, v in (("--rows-per-shard", "0"), ("--rows-per-shard", "-5"), ("--seed", "-1"), ("--epoch", "-1")):
        r = cli(str(src), str(tmp_path / "d"), flag, v)
        assert r.exit_code == 2 and f"Invalid value for '{flag}': {v} is not in the range" in r.output, r.output
    with pytest.raises(ValueError, match="rows_per_shard=-5: give at least 1 row per shard"):
        build_curriculum(src, tmp_path / "d", rows_per_shard=-5)
    assert not (tmp_path / "d").exists()
