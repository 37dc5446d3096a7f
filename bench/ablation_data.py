"""Build every input of the lever ablation (docs/benchmarks/ablation.md), reproducibly.

    nice assay bench ablation_data --out /tmp/abl          # or: python -m bench.ablation_data

Writes under OUT (everything is a pure function of the inputs and the options):

- ``eval/prose.jsonl``: held-out well-written prose = the label-1 items of
  ``quality_train.jsonl.zst`` in the classifier's held-out split
  (``classifiers.data.holdout_mask(texts, 0.2, seed=0)``, the split ``assay classifier train
  fasttext --holdout 0.2 --seed 0`` uses), so the quality classifier never saw them.
- ``eval/neutral.jsonl``: real English text of four Debian packages that are in neither
  training pool nor the classifier's training data: ``debian-history`` (project history,
  constitution, social contract), ``gnu-standards`` (GNU coding standards),
  ``gnome-user-docs`` (desktop user help, Mallard XML) and ``vim-runtime`` (Vim's reference
  manual), cut into ~1,500-character paragraph chunks, the same number of characters from each
  package. Chunks sharing any 13-word shingle with the training pool or ``quality_train`` are
  dropped. Neither curation nor the classifier was tuned toward this text (the packages were
  never read by anything assay tunes); ``prep.json`` records the classifier's scores on it.
- ``eval/raw_heldout.jsonl``: held-out documents of ``pretrain_raw`` itself (the next
  ``--raw-heldout`` share by id hash, outside the training fraction; no 13-word shingle shared
  with the pool): the raw distribution, which curation moves *away* from. With the prose set
  (which curation moves towards) and the neutral set it brackets what curation buys.
- ``eval/tasks.jsonl``: downstream-style multiple-choice items scored by answer-option
  likelihood (DataDecide-style): ``cloze_prose`` (the last word of a held-out prose sentence
  vs three last words of other items) and ``next_sentence_prose`` / ``next_sentence_neutral``
  (the true next sentence vs three sentences of other held-out docs of similar length).
- ``raw_in/part-0000K.jsonl``: the training pool = the ``--fraction`` of ``pretrain_raw`` (by
  a hash of the doc id) that shares no 13-word shingle with the prose set or the tasks. Every
  arm of the ablation is built from these same files.
- ``specs/*.toml`` + ``snap_*``: one snapshot per arm (``--build``): raw, heuristics,
  dedup, quality, softdedup, curriculum and full. The curriculum arms hold *every* document
  of their pool: stable = 90 % and anneal = the best-scored 10 % of the snapshot's tokens. The
  ablation's loader scales those shares to the training budget (``ShardLoader(phase_budget=
  ...)``), so the arm draws as many tokens from the same pool as its baseline and only the
  order differs. ``--budget-tokens N`` instead phases the *snapshot* to N tokens (a stable
  phase of whole sampled docs summing to 0.9 N): that older form confounds order with pool
  diversity and is kept only to reproduce the earlier figures.
- ``quality_ft.bin`` (the classifier, trained on the 80 % train split), ``tokenizer/`` (BPE
  trained on the raw arm), ``prep.json`` (every count).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import xxhash
import zstandard

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEUTRAL_DEBS = ("debian-history", "gnu-standards", "gnome-user-docs", "vim-runtime")
ARMS = ("raw", "heuristics", "dedup", "quality", "softdedup", "curriculum", "full")


def shingles(text: str, n: int = 13) -> set[int]:
    words = text.lower().split()
    return {
        xxhash.xxh64_intdigest(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)
    }


def hkey(text: str, seed: int = 123) -> int:
    return xxhash.xxh64_intdigest(text, seed=seed)


def _zst_lines(path: Path) -> Any:
    return io.TextIOWrapper(
        zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8"
    )


# -- neutral set ------------------------------------------------------------------------------
def fetch_debs(folder: Path, packages: tuple[str, ...] = NEUTRAL_DEBS) -> Path:
    """Download (``apt-get download``) and unpack the neutral packages under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    x = folder / "x"
    have = {p.name.split("_")[0] for p in folder.glob("*.deb")}
    missing = [p for p in packages if p not in have]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=folder, check=True)
    for deb in sorted(folder.glob("*.deb")):
        pkg = deb.name.split("_")[0]
        if pkg in packages and not (x / pkg).exists():
            (x / pkg).mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(x / pkg)], check=True)
    return x


def _mallard_text(path: Path) -> str:
    root = ET.parse(path).getroot()
    paras = []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in ("title", "p", "item", "code", "screen"):
            t = " ".join("".join(el.itertext()).split())
            if t and tag != "item":
                paras.append(t)
    return "\n\n".join(paras)


def neutral_sources(x: Path, packages: tuple[str, ...] = NEUTRAL_DEBS) -> dict[str, list[str]]:
    """Package → its English texts (one string per file)."""
    out: dict[str, list[str]] = {p: [] for p in NEUTRAL_DEBS}
    dh = x / "debian-history/usr/share/doc/debian-history"
    for p in [
        dh / "docs/project-history.en.txt.gz",
        dh / "debian-manifesto.gz",
        dh / "social-contract.txt.gz",
        dh / "constitution.txt.gz",
        *sorted((dh / "dedication").glob("dedication-[0-9].[0-9].txt")),
    ]:
        if p.exists():
            raw = gzip.open(p, "rt", errors="replace").read() if p.suffix == ".gz" else p.read_text(
                errors="replace"
            )
            out["debian-history"].append(raw)
    gs = x / "gnu-standards/usr/share/doc/gnu-standards"
    for name in ("standards.text.gz", "maintain.text.gz"):
        if (gs / name).exists():
            out["gnu-standards"].append(gzip.open(gs / name, "rt", errors="replace").read())
    for p in sorted((x / "gnome-user-docs/usr/share/help/C").rglob("*.page")):
        try:
            out["gnome-user-docs"].append(_mallard_text(p))
        except ET.ParseError:
            continue
    vim = sorted((x / "vim-runtime/usr/share/vim").glob("vim*/doc/*.txt"))
    for p in vim:
        out["vim-runtime"].append(p.read_text(errors="replace"))
    return {k: v for k, v in out.items() if k in packages}


def chunk(text: str, target: int = 1500) -> list[str]:
    """Paragraph-aligned chunks of about ``target`` characters."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out, cur = [], ""
    for p in paras:
        cur = f"{cur}\n\n{p}" if cur else p
        if len(cur) >= target:
            out.append(cur)
            cur = ""
    if len(cur) >= target // 3:
        out.append(cur)
    return out


# -- tasks ------------------------------------------------------------------------------------
_SENT_END = re.compile(r"(?<=[a-z][.!?])\s+(?=[A-Z\"'])")


def sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s for s in _SENT_END.split(flat) if s]


def cloze_items(texts: list[str], n: int, name: str, k: int = 4) -> list[dict[str, Any]]:
    """Last word of a sentence given the text before it; distractors: other items' words."""
    cands = []
    for t in texts:
        sents = sentences(t)
        ok = [
            i
            for i, s in enumerate(sents)
            if i >= 1 and re.search(r"\s([a-z]{4,})[.!?]$", s) and len(s.split()) >= 6
        ]
        if not ok:
            continue
        i = ok[hkey(t, 7) % len(ok)]
        m = re.search(r"\s([a-z]{4,})[.!?]$", sents[i])
        assert m is not None
        before = " ".join(sents[max(0, i - 3) : i] + [sents[i][: m.start(1)].rstrip()])
        cands.append((before[-400:].split(" ", 1)[-1], m.group(1)))
    cands = cands[:n]
    words = sorted({w for _, w in cands})
    items = []
    for j, (ctx, ans) in enumerate(cands):
        pool = [w for w in words if w != ans]
        if len(pool) < k - 1:
            break
        start = hkey(ctx, 11) % len(pool)
        dis = [pool[(start + d * 7919) % len(pool)] for d in range(k - 1)]
        if len(set(dis)) < k - 1:
            continue
        opts = [" " + w for w in [ans, *dis]]
        rot = hkey(ans + ctx, 13) % k  # answer position, not always 0
        opts = opts[rot:] + opts[:rot]
        items.append(
            {"task": name, "id": f"{name}-{j}", "context": ctx, "options": opts,
             "answer": (k - rot) % k}
        )
    return items


def next_sentence_items(texts: list[str], n: int, name: str, k: int = 4) -> list[dict[str, Any]]:
    """The true next sentence vs sentences of other docs of similar length."""
    cands, pool = [], []
    for t in texts:
        sents = sentences(t)
        ok = [i for i in range(1, len(sents)) if 30 <= len(sents[i]) <= 200]
        if len(ok) < 2:
            continue
        i = ok[hkey(t, 17) % len(ok)]
        ctx = " ".join(sents[max(0, i - 3) : i])[-400:]  # the text right before the answer
        cands.append((ctx, sents[i], len(pool)))
        pool.extend((len(cands) - 1, sents[k]) for k in ok)
    cands = cands[:n]
    by_len = sorted(range(len(pool)), key=lambda q: (len(pool[q][1]), q))
    rank = {q: r for r, q in enumerate(by_len)}
    items = []
    for j, (ctx, ans, first) in enumerate(cands):
        # distractors: sentences of OTHER docs whose length is nearest the answer's
        r = rank[next(q for q in range(first, len(pool)) if pool[q][1] == ans)]
        dis: list[str] = []
        step = 1
        while len(dis) < k - 1 and step < len(by_len):
            for rr in (r - step, r + step):
                if 0 <= rr < len(by_len):
                    doc, s = pool[by_len[rr]]
                    if doc != j and s != ans and s not in dis and len(dis) < k - 1:
                        dis.append(s)
            step += 1
        opts = [" " + s for s in [ans, *dis]]
        rot = hkey(ans + ctx, 19) % k
        opts = opts[rot:] + opts[:rot]
        items.append(
            {"task": name, "id": f"{name}-{j}", "context": ctx, "options": opts,
             "answer": (k - rot) % k}
        )
    return items


# -- snapshots --------------------------------------------------------------------------------
HEURISTICS = """
[[stages]]
kind = "filter.length"
min_chars = 200
[[stages]]
kind = "lid.fasttext"
[[stages]]
kind = "filter.lang"
languages = ["en"]
min_score = 0.65
[[stages]]
kind = "filter.gopher_repetition"
[[stages]]
kind = "filter.gopher_quality"
"""
DEDUP = """
[[stages]]
kind = "dedup.exact"
[[stages]]
kind = "dedup.minhash"
threshold = 0.8
"""
CLASSIFY = """
[[stages]]
kind = "classify.fasttext"
model_path = "{model}"
"""
THRESHOLD = """
[[stages]]
kind = "filter.threshold"
column = "quality.fasttext"
min = 0.5
"""
SOFTDEDUP = """
[[stages]]
kind = "dedup.softdedup"
"""
NOOP = """
[[stages]]
kind = "filter.length"
min_chars = 1
"""


def arm_stages(arm: str, model: str) -> str:
    cls = CLASSIFY.format(model=model)
    return {
        "raw": NOOP,
        "heuristics": HEURISTICS,
        "dedup": DEDUP,
        "quality": cls + THRESHOLD,
        "softdedup": SOFTDEDUP,
        "curriculum": cls,  # annotate only; the curriculum build orders by it
        "full": HEURISTICS + DEDUP + cls + THRESHOLD + SOFTDEDUP,
    }[arm]


def run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with log.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, env=env)


def snapshot_stats(snap: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    m = json.loads((snap / "manifest.json").read_text())
    rows = chars = 0
    wsum = 0.0
    for s in m["shards"]:
        t = pq.read_table(snap / s["path"], columns=None)
        rows += t.num_rows
        chars += sum(len(x) for x in t.column("text").to_pylist())
        if "weight" in t.column_names:
            wsum += float(sum(w for w in t.column("weight").to_pylist() if w is not None))
    return {"docs": rows, "chars": chars, "mean_weight": (wsum / rows) if wsum else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/abl")
    ap.add_argument("--raw", default=str(DATA / "pretrain_raw.jsonl.zst"))
    ap.add_argument("--quality", default=str(DATA / "quality_train.jsonl.zst"))
    ap.add_argument("--debs", default=None, help="folder with the neutral .debs (default OUT/debs)")
    ap.add_argument("--neutral-packages", default=",".join(NEUTRAL_DEBS),
                    help=f"comma-separated subset of {','.join(NEUTRAL_DEBS)}")
    ap.add_argument("--fraction", type=float, default=0.25, help="share of pretrain_raw kept")
    ap.add_argument("--neutral-chars", type=int, default=300_000, help="per package")
    ap.add_argument("--raw-heldout", type=float, default=0.02,
                    help="share of pretrain_raw (after the training fraction) held out")
    ap.add_argument("--task-items", type=int, default=300, help="items per task")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--build", action="store_true", help="also build the arm snapshots")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--budget-tokens", type=int, default=None,
                    help="phase the curriculum snapshots themselves to N tokens (the older, "
                    "confounded form; default: whole-snapshot shares, phased by the loader)")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    from classifiers.data import holdout_mask, read_labelled

    out = Path(a.out)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    (out / "raw_in").mkdir(parents=True, exist_ok=True)
    prep: dict[str, Any] = {"options": vars(a)}

    # 1. prose: held-out label-1 items of quality_train (same split as the classifier's)
    data = read_labelled(a.quality)
    mask = holdout_mask(data.texts, a.holdout, a.seed)
    prose = sorted(
        {t for t, lab, m in zip(data.texts, data.labels, mask) if m and lab == "1"}, key=hkey
    )
    q_sh: set[int] = set()
    for t in data.texts:
        q_sh |= shingles(t, a.ngram)

    # 2. neutral: chunks of the four packages, balanced by characters, not in quality_train
    pkgs = tuple(p for p in a.neutral_packages.split(",") if p)
    if not pkgs or set(pkgs) - set(NEUTRAL_DEBS):
        ap.error(f"--neutral-packages {a.neutral_packages!r}: choose from {NEUTRAL_DEBS}")
    x = fetch_debs(Path(a.debs) if a.debs else out / "debs", pkgs)
    neutral: list[tuple[str, str]] = []
    prep["neutral_sources"] = {}
    for pkg, texts in neutral_sources(x, pkgs).items():
        chunks = sorted({c for t in texts for c in chunk(t)}, key=hkey)
        got, n_q = 0, 0
        for c in chunks:
            if got >= a.neutral_chars:
                break
            if shingles(c, a.ngram) & q_sh:
                n_q += 1
                continue
            neutral.append((pkg, c))
            got += len(c)
        prep["neutral_sources"][pkg] = {"files": len(texts), "chunks": len(chunks),
                                        "dropped_quality_overlap": n_q, "chars": got}
    neutral.sort(key=lambda pc: hkey(pc[1]))

    # 3. one pass over pretrain_raw: keep the fraction, drop docs that share a shingle with
    #    prose (the pool is decontaminated against it), note neutral shingles the pool contains
    ev_sh: set[int] = set()
    for t in prose:
        ev_sh |= shingles(t, a.ngram)
    neu_sh: dict[int, list[int]] = {}
    for i, (_, c) in enumerate(neutral):
        for s in shingles(c, a.ngram):
            neu_sh.setdefault(s, []).append(i)
    neutral_hit: set[int] = set()
    lo, hi = a.fraction, a.fraction + a.raw_heldout
    rawh: list[str] = []
    rawh_sh: dict[int, list[int]] = {}
    with _zst_lines(Path(a.raw)) as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if lo <= xxhash.xxh64_intdigest(rec["id"], seed=a.seed) / 2**64 < hi:
                    for sh in shingles(rec["text"], a.ngram):
                        rawh_sh.setdefault(sh, []).append(len(rawh))
                    rawh.append(rec["text"])
    rawh_hit: set[int] = set()
    outs = [(out / "raw_in" / f"part-{k:05d}.jsonl").open("w") for k in range(a.shards)]
    kept = removed = skipped = 0
    with _zst_lines(Path(a.raw)) as fh, (out / "contaminated.jsonl").open("w") as bad:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            if xxhash.xxh64_intdigest(rec["id"], seed=a.seed) / 2**64 >= a.fraction:
                skipped += 1
                continue
            sh = shingles(rec["text"], a.ngram)
            for s in sh:
                if s in neu_sh:
                    neutral_hit.update(neu_sh[s])
                if s in rawh_sh:
                    rawh_hit.update(rawh_sh[s])
            hit = len(sh & ev_sh)
            if hit:
                removed += 1
                bad.write(json.dumps({"id": rec["id"], "source": rec.get("source"),
                                      "kind": rec.get("kind"), "shared_shingles": hit}) + "\n")
                continue
            outs[kept % a.shards].write(json.dumps(rec) + "\n")
            kept += 1
    for f in outs:
        f.close()
    neutral = [pc for i, pc in enumerate(neutral) if i not in neutral_hit]
    raw_heldout = sorted({t for i, t in enumerate(rawh) if i not in rawh_hit}, key=hkey)
    prep["raw_heldout"] = {"candidates": len(rawh), "dropped_pool_overlap": len(rawh_hit),
                           "docs": len(raw_heldout)}
    with (out / "eval" / "raw_heldout.jsonl").open("w") as f:
        for t in raw_heldout:
            f.write(json.dumps({"text": t, "set": "raw_heldout"}) + "\n")
    prep["pool"] = {"kept": kept, "removed_prose_overlap": removed, "outside_fraction": skipped,
                    "neutral_chunks_dropped_pool_overlap": len(neutral_hit)}

    with (out / "eval" / "prose.jsonl").open("w") as f:
        for t in prose:
            f.write(json.dumps({"text": t, "label": 1, "set": "prose"}) + "\n")
    with (out / "eval" / "neutral.jsonl").open("w") as f:
        for pkg, c in neutral:
            f.write(json.dumps({"text": c, "source": pkg, "set": "neutral"}) + "\n")
    tasks = (
        cloze_items(prose, a.task_items, "cloze_prose")
        + next_sentence_items(prose, a.task_items, "next_sentence_prose")
        + next_sentence_items([c for _, c in neutral], a.task_items, "next_sentence_neutral")
    )
    with (out / "eval" / "tasks.jsonl").open("w") as f:
        for it in tasks:
            f.write(json.dumps(it) + "\n")
    prep["eval"] = {
        "prose_docs": len(prose),
        "prose_chars": sum(map(len, prose)),
        "neutral_docs": len(neutral),
        "neutral_chars": sum(len(c) for _, c in neutral),
        "tasks": {n: sum(1 for it in tasks if it["task"] == n) for n in
                  ("cloze_prose", "next_sentence_prose", "next_sentence_neutral")},
    }
    print(json.dumps(prep, indent=1), flush=True)
    (out / "prep.json").write_text(json.dumps(prep, indent=1) + "\n")
    if a.build:
        build_arms(a, out, prep, [p for _, p in neutral], prose)


def build_arms(a: Any, out: Path, prep: dict[str, Any], neutral: list[str],
               prose: list[str]) -> None:
    py = sys.executable
    log = out / "build.log"
    model = out / "quality_ft.bin"
    if not model.exists():
        run([py, "-m", "pipeline.cli", "classifier", "train", "fasttext", "--train", a.quality,
             "--output", str(model), "--holdout", str(a.holdout), "--seed", str(a.seed)], log)
    from classifiers.fasttext_model import FastTextModel

    clf = FastTextModel(model)
    prep["classifier_on_eval"] = {}
    rawh = [json.loads(x)["text"] for x in (out / "eval" / "raw_heldout.jsonl").open()]
    for name, texts in (("prose", prose), ("neutral", neutral), ("raw_heldout", rawh)):
        p = clf.predict_positive(texts)
        prep["classifier_on_eval"][name] = {
            "mean_p_prose": round(float(p.mean()), 4),
            "share_ge_0.5": round(float((p >= 0.5).mean()), 4),
        }
    (out / "specs").mkdir(exist_ok=True)
    arms = [s for s in a.arms.split(",") if s]
    prep["arms"] = {}
    for arm in arms:
        base = out / ("pre_" + arm if arm in ("curriculum", "full") else "snap_" + arm)
        spec = out / "specs" / f"{arm}.toml"
        spec.write_text(
            f'name = "ablation-{arm}"\n[input]\npaths = ["{out}/raw_in/*.jsonl"]\n'
            f'[output]\ndir = "{base}"\nwrite_dropped = false\n'
            f"[execution]\nbatch_size = 500\n" + arm_stages(arm, str(model))
        )
        t = time.time()
        if not (base / "manifest.json").exists():
            run([py, "-m", "pipeline.cli", "run", str(spec), "--output", str(base),
                 "--workers", str(a.workers)], log)
        prep["arms"][arm] = {"seconds": round(time.time() - t, 1)}
        if arm == "raw" and not (out / "tokenizer" / "tokenizer.json").exists():
            from trainer_bridge.tokenizer import train_tokenizer

            train_tokenizer(base, out / "tokenizer", vocab_size=a.vocab_size)
        if arm in ("curriculum", "full"):
            from curriculum.build import build_curriculum

            snap = out / f"snap_{arm}"
            if not (snap / "manifest.json").exists():
                build_curriculum(base, snap, "stable:0.9,anneal:0.1", seed=a.seed,
                                 budget_tokens=a.budget_tokens, tokenizer=str(out / "tokenizer"))
        prep["arms"][arm].update(snapshot_stats(out / f"snap_{arm}"))
        (out / "prep.json").write_text(json.dumps(prep, indent=1) + "\n")
        print(arm, prep["arms"][arm], flush=True)


if __name__ == "__main__":
    main()
