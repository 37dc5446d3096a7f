"""Inputs of the lever ablation (bench.ablation_data): task items are faithful to their source,
every eval set is decontaminated against the training pool, and the build is reproducible."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import bench.ablation_data as prep
from trainer_bridge.evaluation import read_texts, text_hash

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _flat(t: str) -> str:
    return " ".join(t.split())


@pytest.fixture(scope="module")
def prose() -> list[str]:
    src = DATA / "quality_train.jsonl.zst"
    if not src.exists():
        pytest.skip(f"real data not found at {src}")
    return sorted(read_texts(src, {"label": 1}), key=text_hash)[:300]


def test_cloze_items_are_true_last_words(prose: list[str]) -> None:
    items = prep.cloze_items(prose, 100, "cloze")
    assert len(items) >= 80
    flat = [_flat(t) for t in prose]
    positions = set()
    for it in items:
        assert len(it["options"]) == 4 and len(set(it["options"])) == 4
        ans = it["options"][it["answer"]]
        positions.add(it["answer"])
        # the context followed by the answer is a passage of a source doc, ending a sentence
        assert any(it["context"] + ans + c in f for f in flat for c in ".!?"), it
        assert all(o.strip().isalpha() for o in it["options"])
    assert positions == {0, 1, 2, 3}  # the answer is not always in the same place


def test_next_sentence_items_use_other_docs_as_distractors(prose: list[str]) -> None:
    items = prep.next_sentence_items(prose, 100, "next")
    assert len(items) >= 80
    flat = [_flat(t) for t in prose]
    for it in items:
        ans = it["options"][it["answer"]]
        src = [f for f in flat if it["context"] + ans in f]
        assert src, it
        for k, o in enumerate(it["options"]):
            if k != it["answer"]:
                assert o.strip() not in src[0]  # a distractor never comes from the same doc


@pytest.mark.slow
def test_build_is_decontaminated_and_reproducible(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb (Debian) to fetch the neutral packages")
    if not (DATA / "pretrain_raw.jsonl.zst").exists():
        pytest.skip(f"real data not found at {DATA}")
    args = ["--fraction", "0.01", "--neutral-packages", "debian-history,gnu-standards",
            "--task-items", "30", "--shards", "2", "--debs", str(tmp_path / "debs")]
    prep.main(["--out", str(tmp_path / "a"), *args])
    prep.main(["--out", str(tmp_path / "b"), *args])
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*.jsonl"))
    assert {str(f) for f in files} >= {"eval/prose.jsonl", "eval/neutral.jsonl",
                                       "eval/raw_heldout.jsonl", "eval/tasks.jsonl",
                                       "raw_in/part-00000.jsonl", "raw_in/part-00001.jsonl"}
    for f in files:  # the same bytes from the same inputs
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    pool: set[int] = set()
    n_pool = 0
    for part in (a / "raw_in").glob("*.jsonl"):
        for line in part.open():
            pool |= prep.shingles(json.loads(line)["text"])
            n_pool += 1
    assert n_pool > 100
    sets = {}
    for name in ("prose", "neutral", "raw_heldout"):
        recs = [json.loads(x) for x in (a / "eval" / f"{name}.jsonl").open()]
        assert len(recs) > 20, name
        sets[name] = [r["text"] for r in recs]
        for r in recs:  # no 13-word shingle of any eval text is in the training pool
            assert not prep.shingles(r["text"]) & pool, (name, r["text"][:80])
    assert {json.loads(x)["source"] for x in (a / "eval" / "neutral.jsonl").open()} == {
        "debian-history", "gnu-standards"}
    assert sets["prose"] == sorted(sets["prose"], key=prep.hkey)  # hash order, not file order
    meta = json.loads((a / "prep.json").read_text())
    assert meta["pool"]["kept"] == n_pool
    tasks = [json.loads(x) for x in (a / "eval" / "tasks.jsonl").open()]
    assert {t["task"] for t in tasks} == {"cloze_prose", "next_sentence_prose",
                                          "next_sentence_neutral"}
