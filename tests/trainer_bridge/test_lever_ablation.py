"""The lever ablation: hash-ordered eval texts, choice scoring, interval statistics, curriculum
phases scaled to the budget (anneal reached), and a bounded end-to-end run with resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer_bridge.ablation import mean_ci, run_levers, summary_markdown, token_ratio
from trainer_bridge.evaluation import (
    build_eval_tensor,
    read_items,
    read_texts,
    score_choices,
    text_hash,
)
from trainer_bridge.tokenizer import TextTokenizer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _prose(n: int = 120) -> list[str]:
    src = DATA / "quality_train.jsonl.zst"
    if not src.exists():
        pytest.skip(f"real data not found at {src}")
    return read_texts(src, {"label": 1}, order="file")[:n]


def test_eval_texts_are_hash_ordered_whatever_the_file_order(tmp_path: Path) -> None:
    texts = _prose()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    shuffled = texts[:]
    random.Random(1).shuffle(shuffled)
    b.write_text("".join(json.dumps({"text": t}) + "\n" for t in shuffled))
    ra, rb = read_texts(a), read_texts(b)
    assert ra == rb == sorted(texts, key=text_hash)
    assert ra != texts  # not file order
    # the bounded form keeps exactly the smallest-hash prefix that reaches max_chars
    cap = sum(len(t) for t in ra[:10]) - 1
    assert read_texts(b, max_chars=cap) == ra[:10]
    capf = sum(len(t) for t in texts[:10]) - 1
    assert read_texts(a, max_chars=capf, order="file") == texts[:10]


def test_per_doc_cap_gives_one_row_per_document(tokenizer_dir: Path) -> None:
    tok = TextTokenizer(tokenizer_dir)
    texts = sorted(_prose(), key=text_hash)
    data = build_eval_tensor(texts, tok, 32, 16, per_doc=33)
    assert data.shape == (16, 33)
    # every row starts with the first tokens of its own document
    for row, t in zip(data, texts):
        ids = tok.encode(t)[:32]
        assert row[: len(ids)].tolist() == ids


def test_score_choices_matches_a_direct_computation(trained_run: Path) -> None:
    from trainer_bridge.trainer import load_model

    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    items = [
        {"task": "t", "context": "The ship sailed out of the", "options": [" harbour", " xq"],
         "answer": 0},
        {"task": "t", "context": "It was a truth universally", "options": [" zz", " acknowledged"],
         "answer": 1},
    ]
    got = score_choices(model, tok, items, max_len=64)
    # reference: one option at a time, no batching or padding
    correct_sum = correct_char = 0
    pc = []
    for it in items:
        ctx = tok.encode(it["context"])
        lps = []
        for o in it["options"]:
            ids = ctx + tok.encode(o)
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([ids[:-1]])), -1)[0]
            n = len(tok.encode(o))
            lps.append(sum(float(lp[len(ids) - 1 - n + j, ids[len(ids) - n + j]]) for j in range(n)))
        s = np.array(lps)
        correct_sum += int(np.argmax(s) == it["answer"])
        correct_char += int(np.argmax(s / [len(o) for o in it["options"]]) == it["answer"])
        p = np.exp(s - s.max())
        pc.append(p[it["answer"]] / p.sum())
    assert got["t"]["items"] == 2
    assert got["t"]["acc"] == correct_sum / 2
    assert got["t"]["acc_per_char"] == correct_char / 2
    assert got["t"]["p_correct"] == pytest.approx(float(np.mean(pc)), abs=1e-5)


def test_read_items_rejects_bad_answers(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"task": "x", "context": "c", "options": ["a", "b"], "answer": 2}))
    with pytest.raises(ValueError, match="answer 2"):
        read_items(p)
    p.write_text(json.dumps({"task": "x", "options": ["a", "b"], "answer": 0}))
    with pytest.raises(ValueError, match="context"):
        read_items(p)


def test_mean_ci_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for vals in ([0.5, 0.7, 0.6, 0.4, 0.9], [1.0, 2.0], list(np.linspace(0, 1, 12))):
        ci = mean_ci(vals)
        lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
        assert ci["mean"] == pytest.approx(np.mean(vals))
        assert ci["lo"] == pytest.approx(lo) and ci["hi"] == pytest.approx(hi)


def test_token_ratio_both_directions() -> None:
    toks = [100, 200, 300, 400]
    base = [5.0, 4.0, 3.5, 3.0]
    assert token_ratio(toks, base, base, 400) == 1.0
    # the arm reaches 3.0 halfway between 200 and 300 tokens
    assert token_ratio(toks, [4.5, 3.5, 2.5, 2.0], base, 400) == pytest.approx(250 / 400)
    # a worse arm ends at 3.5, which the baseline reached at 300 tokens: 400/300
    assert token_ratio(toks, [5.5, 4.5, 4.0, 3.5], base, 400) == pytest.approx(400 / 300)


def test_curriculum_phased_to_budget_reaches_anneal(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    from curriculum.build import build_curriculum
    from trainer_bridge.loader import ShardLoader
    from trainer_bridge.trainer import TrainConfig, Trainer

    budget = 40 * 8 * 32  # 40 steps of 8 x 32 tokens: far less than the snapshot
    whole = build_curriculum(real_snapshot, tmp_path / "whole", "stable:0.9,anneal:0.1")
    scaled = build_curriculum(real_snapshot, tmp_path / "scaled", "stable:0.9,anneal:0.1",
                              budget_tokens=budget, tokenizer=str(tokenizer_dir))
    ph = {p["name"]: p for p in scaled["extra"]["curriculum"]["phases"]}
    assert list(ph) == ["stable", "anneal", "rest"]
    assert budget * 0.1 <= ph["anneal"]["tokens"] < budget * 0.1 + 5000
    assert ph["rest"]["docs"] > 0
    full = ShardLoader(tmp_path / "whole", tokenizer_dir, seq_len=32, batch_size=8)
    assert full.phase_token_starts()["anneal"] > 3 * budget  # whole-snapshot shares: never reached
    ld = ShardLoader(tmp_path / "scaled", tokenizer_dir, seq_len=32, batch_size=8)
    start = ld.phase_token_starts()["anneal"]
    assert 0.85 * budget < start < budget  # the anneal phase falls inside the budget ...
    tr = Trainer(TrainConfig(snapshot=str(tmp_path / "scaled"), out_dir=str(tmp_path / "run"),
                             tokenizer=str(tokenizer_dir), model=dict(n_layer=1, n_head=2,
                             n_kv_head=1, d_model=32), seq_len=32, batch_size=8, max_steps=40,
                             warmup_steps=2, schedule="wsd", log_every=0, quiet=True,
                             shuffle_buffer=0))
    assert tr.decay_start == start // (8 * 32)  # ... and the LR decays over it
    del whole


def _arm_snapshots(real_snapshot: Path, tokenizer_dir: Path, tmp: Path) -> dict[str, str]:
    from curriculum.build import build_curriculum

    # whole-snapshot shares: the ablation phases them to the run's budget in the loader
    build_curriculum(real_snapshot, tmp / "cur", "stable:0.9,anneal:0.1",
                     tokenizer=str(tokenizer_dir))
    return {"raw": str(real_snapshot), "curriculum": str(tmp / "cur")}


@pytest.mark.slow
def test_bounded_lever_ablation_end_to_end(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    arms = _arm_snapshots(real_snapshot, tokenizer_dir, tmp_path)
    items = tmp_path / "tasks.jsonl"
    texts = sorted(_prose(200), key=text_hash)
    import bench.ablation_data as prep

    built = prep.cloze_items(texts, 20, "cloze") + prep.next_sentence_items(texts, 20, "next")
    items.write_text("".join(json.dumps(it) + "\n" for it in built))
    ev = tmp_path / "prose.jsonl"
    ev.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[100:]))
    kw = dict(tasks=str(items), seeds=[0, 1], max_tokens=30 * 8 * 32, n_evals=3, eval_seqs=8,
              tokenizer=str(tokenizer_dir), n_layer=1, n_head=2, n_kv_head=1, d_model=32,
              seq_len=32, batch_size=8, quiet=True)
    s = run_levers(arms, {"prose": str(ev), "again": str(ev)}, str(tmp_path / "out"), **kw)
    cur = s["arms"]["curriculum"]
    assert cur["seeds"] == [0, 1]
    for e in ("prose", "again"):
        assert cur["eval"][e]["token_ratio"]["n"] == 2
        assert s["arms"]["raw"]["eval"][e]["token_ratio"]["mean"] == 1.0
        assert s["arms"]["raw"]["eval"][e]["delta_final_loss"]["mean"] == 0.0
    assert cur["eval"]["prose"]["final_loss"] == cur["eval"]["again"]["final_loss"]
    assert set(cur["tasks"]) == {"cloze", "next"}
    assert 0 <= cur["tasks"]["cloze"]["acc_per_char"]["mean"] <= 1
    run = json.loads((tmp_path / "out" / "runs" / "curriculum-s1.json").read_text())
    assert run["phase_budget"] == 30 * 8 * 32  # phased in the loader ...
    assert run["decay_start_step"] == 27 and len(run["eval_tokens"]) == 3  # ... decays at 0.9
    assert s["settings"]["phased_in_loader"] == ["curriculum"]
    assert json.loads((tmp_path / "out" / "runs" / "raw-s0.json").read_text())["phase_budget"] is None
    assert run["eval_tokens"][-1] == 30 * 8 * 32
    # the seeds differ (different shuffles and inits) ...
    r0 = json.loads((tmp_path / "out" / "runs" / "raw-s0.json").read_text())
    r1 = json.loads((tmp_path / "out" / "runs" / "raw-s1.json").read_text())
    assert r0["eval_loss"]["prose"] != r1["eval_loss"]["prose"]
    # ... a rerun reuses finished runs and gives the same summary; a removed run is redone
    # bit for bit (CPU, one thread)
    (tmp_path / "out" / "runs" / "raw-s1.json").unlink()
    s2 = run_levers(arms, {"prose": str(ev), "again": str(ev)}, str(tmp_path / "out"), **kw)
    assert json.loads((tmp_path / "out" / "runs" / "raw-s1.json").read_text())["eval_loss"] == \
        r1["eval_loss"]
    assert s2["arms"]["curriculum"]["eval"] == cur["eval"]
    md = summary_markdown(s2)
    assert "| curriculum |" in md and "token ratio (prose)" in md and "cloze acc_per_char" in md
    # summarize-only: a missing run is reported as missing, not trained
    (tmp_path / "out" / "runs" / "curriculum-s1.json").unlink()
    s3 = run_levers(arms, {"prose": str(ev), "again": str(ev)}, str(tmp_path / "out"),
                    train=False, **kw)
    assert s3["arms"]["curriculum"]["seeds"] == [0]
    assert not (tmp_path / "out" / "runs" / "curriculum-s1.json").exists()
    assert "curriculum 1 of 2 requested" in summary_markdown(s3)
