"""``assay bench classifiers``: quality of each scorer on held-out labels, and throughput.

Data: ``quality_train.jsonl.zst`` (4,398 labelled docs) split 80/20 by text hash (the same
split as ``assay classifier train``); throughput on the first ``--docs`` documents of
``pretrain_raw.jsonl.zst`` (real, long, mixed-quality text). Single process, one thread per
scorer (figures are docs/s per core).

Peer: datatrove's ``FastTextClassifierFilter`` on the same fastText model and the same
documents in the same run (datatrove gets the already-normalised text, so the two must give
the same probabilities; the table reports the largest difference).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


RAW_KINDS: list[str] = []
LEAVE_KIND_OUT = False


def _rates(fn, n: int) -> dict[str, float]:
    """docs/s by wall clock and per CPU-second of this process (fair on a shared machine)."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return {"assay_docs_per_s": n / (time.perf_counter() - w),
            "assay_docs_per_cpu_s": n / max(time.process_time() - c, 1e-9)}


def _load_raw(n: int) -> list[str]:
    """About ``n`` docs spread over all of pretrain_raw (27,842 docs): xxh64(id) sampling.

    Their ``kind`` values land in ``RAW_KINDS`` (same order) for the per-kind tables.
    """
    import xxhash

    from classifiers.data import iter_records

    limit = int(min(1.0, n / 27_842) * 2**64)
    texts = []
    RAW_KINDS.clear()
    for rec in iter_records(DATA / "pretrain_raw.jsonl.zst"):
        if xxhash.xxh64_intdigest(str(rec["id"])) < limit:
            texts.append(rec["text"])
            RAW_KINDS.append(rec.get("kind", "?"))
    return texts


def bench_fasttext(train, heldout, raw: list[str], workdir: Path, repeats: int) -> dict[str, Any]:
    from classifiers.fasttext_model import FastTextModel, normalize_text, train_fasttext
    from classifiers.metrics import evaluate

    # a fresh folder per run: datatrove caches a "download" of model_path by its name, and a
    # stale cached copy would silently be compared against a newly trained model
    model_path = Path(tempfile.mkdtemp(prefix="ft-", dir=workdir)) / "quality_fasttext.bin"
    t = time.perf_counter()
    train_fasttext(train, model_path)
    train_s = time.perf_counter() - t
    model = FastTextModel(model_path)
    prob = model.predict_positive(heldout.texts)
    res = evaluate(heldout.binary("1"), prob, prob)
    res["train_s"] = train_s

    ours_s = _best_of(lambda: model.predict_positive(raw), repeats)
    ours = model.predict_positive(raw)
    norm = [normalize_text(x, model.lowercase, model.max_chars) for x in raw]
    pos = model.labels.index(model.positive_label)
    ours_pred_s = _best_of(lambda: model._probs_normalized(norm)[:, pos], repeats)

    # datatrove on the same model; normalised text so both see the same input line
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    dt = FastTextClassifierFilter(str(model_path), keep_labels=("1", 0.5))

    def run_dt() -> list[Document]:
        docs = [Document(text=x, id=str(i)) for i, x in enumerate(norm)]
        kept = list(dt.run(iter(docs)))
        return docs if kept is not None else docs

    dt_s = _best_of(run_dt, repeats)
    docs = run_dt()
    from datatrove.io import cached_asset_path_or_download

    cached = Path(cached_asset_path_or_download(str(model_path), namespace="filters",
                                                subfolder="fasttext", desc="fast-text model"))
    for extra in ("", ".completed", ".lock"):
        Path(str(cached) + extra).unlink(missing_ok=True)  # don't grow datatrove's cache
    dt_scores = np.array([d.metadata.get("__label__1", np.nan) for d in docs])
    if LEAVE_KIND_OUT:
        res["leave_kind_out"] = leave_kind_out(workdir, 0.2)
    res["throughput"] = {
        "docs": len(raw),
        "mean_chars": float(np.mean([len(x) for x in raw])),
        "assay_docs_per_s": len(raw) / ours_s,
        "datatrove_docs_per_s": len(raw) / dt_s,
        "assay_predict_only_docs_per_s": len(raw) / ours_pred_s,
        "ratio": dt_s / ours_s,
        "ratio_predict_only": dt_s / ours_pred_s,
        "max_abs_score_diff": float(np.nanmax(np.abs(dt_scores - ours))),
    }
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="assay bench classifiers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scorers", default="fasttext",
                   help="comma list of fasttext,perplexity,embedding,toxicity")
    p.add_argument("--docs", type=int, default=2000, help="pretrain_raw docs for throughput")
    p.add_argument("--repeats", type=int, default=2, help="timing repeats (best is kept)")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--workdir", default=None, help="where models go [default: a temp dir]")
    p.add_argument("--leave-kind-out", action="store_true",
                   help="fastText: also train without each source kind and test on it")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    global LEAVE_KIND_OUT
    LEAVE_KIND_OUT = args.leave_kind_out

    from classifiers.data import read_labelled, split_holdout
    from classifiers.metrics import format_calibration

    data = read_labelled(DATA / "quality_train.jsonl.zst")
    train, heldout = split_holdout(data, args.holdout)
    raw = _load_raw(args.docs)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="assay-bench-clf-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scorers = [s.strip() for s in args.scorers.split(",") if s.strip()]
    results: dict[str, Any] = {"train_docs": len(train), "heldout_docs": len(heldout),
                               "heldout_positives": int(heldout.binary("1").sum())}
    for name in scorers:
        fn = BENCHES.get(name)
        if fn is None:
            p.error(f"unknown scorer {name!r}; choose from {sorted(BENCHES)}")
        print(f"== {name}", flush=True)
        results[name] = fn(train, heldout, raw, workdir, args.repeats)

    print(f"\nheld-out: {len(heldout)} docs ({results['heldout_positives']} positive), "
          f"trained on {len(train)}")
    print("| scorer | AUC | F1@0.5 | best F1 | ECE | docs/s | docs/CPU-s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in scorers:
        r = results[name]
        tp = r.get("throughput", {})
        if "auc" not in r:
            print(f"| {name} | – | – | – | – | {tp.get('assay_docs_per_s', float('nan')):.0f} | "
                  f"{tp.get('assay_docs_per_cpu_s', float('nan')):.1f} |")
            continue
        print(f"| {name} | {r['auc']:.4f} | {r.get('f1@0.5', float('nan')):.4f} | "
              f"{r['best_f1']:.4f} | {r.get('ece', float('nan')):.4f} | "
              f"{tp.get('assay_docs_per_s', float('nan')):.0f} | "
              f"{tp.get('assay_docs_per_cpu_s', float('nan')):.1f} |")
    if "fasttext" in results:
        tp = results["fasttext"]["throughput"]
        print(f"\nfastText throughput on {tp['docs']} pretrain_raw docs "
              f"(mean {tp['mean_chars']:.0f} chars): assay {tp['assay_docs_per_s']:.0f} docs/s, "
              f"datatrove FastTextClassifierFilter {tp['datatrove_docs_per_s']:.0f} docs/s "
              f"-> {tp['ratio']:.2f}x end-to-end (assay also normalises; datatrove gets normalised "
              f"text); prediction only {tp['assay_predict_only_docs_per_s']:.0f} docs/s -> "
              f"{tp['ratio_predict_only']:.2f}x; max |score diff| {tp['max_abs_score_diff']:.2e}")
    for name in scorers:
        if "calibration" in results[name]:
            print(f"\ncalibration ({name}):\n{format_calibration(results[name]['calibration'])}")
    for name in scorers:
        for key in ("l2_sweep", "l2_cv_logloss", "leave_kind_out", "lm", "percentiles", "median_by_kind", "examples", "drop_rate_by_kind"):
            if key in results[name]:
                shown = json.dumps(results[name][key], indent=1, ensure_ascii=False)[:4000]
                print(f"\n{name} {key}:\n{shown}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return results


def leave_kind_out(workdir: Path, holdout: float) -> dict[str, Any]:
    """fastText trained without one source kind, tested on that kind's held-out docs against
    the held-out docs of the other label: does the classifier generalise to unseen kinds?"""
    from classifiers.data import LabelledTexts, holdout_mask, iter_records
    from classifiers.fasttext_model import FastTextModel, FastTextParams, train_fasttext
    from classifiers.metrics import roc_auc

    recs = list(iter_records(DATA / "quality_train.jsonl.zst"))
    texts = [r["text"] for r in recs]
    labels = np.array([str(r["label"]) for r in recs])
    kinds = np.array([r["kind"] for r in recs])
    held = holdout_mask(texts, holdout)
    out: dict[str, Any] = {}
    for kind in sorted(set(kinds.tolist())):
        tr = np.flatnonzero(~held & (kinds != kind))
        path = workdir / f"lko_{kind}.bin"
        train_fasttext(LabelledTexts([texts[i] for i in tr], [labels[i] for i in tr]), path,
                       FastTextParams())
        lab = labels[kinds == kind][0]
        test = np.flatnonzero(held & ((kinds == kind) | (labels != lab)))
        prob = FastTextModel(path).predict_positive([texts[i] for i in test])
        y = (labels[test] == "1").astype(int)
        in_kind = kinds[test] == kind
        out[kind] = {"label": lab, "heldout_docs": int(in_kind.sum()),
                     "auc": roc_auc(y, prob),
                     "mean_p_good": float(prob[in_kind].mean()),
                     "accuracy@0.5": float(((prob[in_kind] >= 0.5) == (lab == "1")).mean())}
        path.unlink()
    return out


def bench_perplexity(train, heldout, raw: list[str], workdir: Path, repeats: int,
                     steps: int = 400) -> dict[str, Any]:
    """Tiny GPT trained on the label-1 rows of the training split; AUC of -log(perplexity)."""
    from classifiers.metrics import evaluate
    from classifiers.perplexity import PerplexityLM, TrainSettings, train_lm

    model_dir = workdir / f"lm_{steps}"
    if not (model_dir / "assay_lm.json").exists():
        good = [t for t, lab in zip(train.texts, train.labels, strict=True) if lab == "1"]
        train_lm(good, model_dir, settings=TrainSettings(steps=steps, max_seconds=3600))
    meta = json.loads((model_dir / "assay_lm.json").read_text())
    lm = PerplexityLM(model_dir)
    ppl = lm.perplexity(heldout.texts)
    res = evaluate(heldout.binary("1"), -np.log(ppl))
    res["lm"] = {k: meta[k] for k in ("steps_done", "train_seconds", "train_tokens",
                                      "val_perplexity", "parameters")}
    sub = raw[: min(len(raw), 400)]
    res["throughput"] = {"docs": len(sub), **_rates(lambda: lm.perplexity(sub), len(sub)),
                         "max_tokens_256": _rates(lambda: lm.perplexity(sub, 256), len(sub))}
    # what the percentiles look like on pretrain_raw
    raw_ppl = lm.perplexity(raw)
    qs = [1, 5, 10, 25, 50, 75, 90, 95, 99]
    res["percentiles"] = {f"p{q}": float(np.nanpercentile(raw_ppl, q)) for q in qs}
    kinds = np.array(RAW_KINDS[: len(raw)])
    res["median_by_kind"] = {
        k: {"docs": int((kinds == k).sum()), "median_ppl": float(np.nanmedian(raw_ppl[kinds == k]))}
        for k in sorted(set(kinds.tolist()))
    }
    order = np.argsort(raw_ppl)
    finite = [i for i in order if np.isfinite(raw_ppl[i])]

    def ex(i: int) -> dict:
        return {"ppl": round(float(raw_ppl[i]), 1), "kind": str(kinds[i]),
                "text": " ".join(raw[i][:240].split())}

    res["examples"] = {"lowest": [ex(i) for i in finite[:5]],
                       "highest": [ex(i) for i in finite[-5:][::-1]]}
    return res


def bench_embedding(train, heldout, raw: list[str], workdir: Path, repeats: int,
                    n_train: int = 600, max_tokens: int = 128) -> dict[str, Any]:
    """Logistic head on MiniLM, ``n_train`` training docs, full held-out split.

    L2 is picked by 5-fold cross-validation on the training docs (``select_l2_cv``); the
    held-out sweep is reported for information and picks nothing.
    """
    from classifiers.embedding import SentenceEncoder, fit_logistic, predict_logistic, select_l2_cv
    from classifiers.metrics import evaluate

    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(train), size=min(n_train, len(train)), replace=False))
    tr = train.subset(idx)
    enc = SentenceEncoder(max_tokens=max_tokens)
    t = time.perf_counter()
    xt = enc.encode(tr.texts, progress=True)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    xh = enc.encode(heldout.texts, progress=True)
    held_s = time.perf_counter() - t
    sweep = {}
    for l2 in (1.0, 0.3, 0.1, 0.03, 0.01):
        w, b = fit_logistic(xt, tr.binary("1"), l2)
        prob = predict_logistic(xh, w, b)
        sweep[str(l2)] = evaluate(heldout.binary("1"), prob, prob)
    best, cv = select_l2_cv(xt, tr.binary("1"))
    res = dict(sweep[str(best)])  # held-out metrics at the L2 chosen on training data only
    res["l2_chosen_by_cv"] = best
    res["l2_cv_logloss"] = cv
    res["l2_sweep"] = {k: {m: v[m] for m in ("auc", "f1@0.5", "best_f1", "ece")}
                       for k, v in sweep.items()}
    res["train_docs"] = len(tr)
    res["max_tokens"] = max_tokens
    res["embed_train_s"] = train_s
    sub = raw[: min(len(raw), 100)]
    res["throughput"] = {"docs": len(sub), **_rates(lambda: enc.encode(sub), len(sub)),
                         "heldout_docs_per_s": len(heldout) / held_s}
    return res


def bench_toxicity(train, heldout, raw: list[str], workdir: Path, repeats: int
                   ) -> dict[str, Any]:
    """No toxicity labels exist in our data: report drop rates per kind and throughput."""
    from classifiers.toxicity import ProfanityClassifier, badword_fraction

    clf = ProfanityClassifier()
    t_w = _best_of(lambda: badword_fraction(raw), repeats)
    t_c = _best_of(lambda: clf.predict(raw), repeats)
    frac, prob = badword_fraction(raw), clf.predict(raw)
    kinds = np.array(RAW_KINDS[: len(raw)])
    drop = (frac > 0.01) | (prob > 0.99)
    res: dict[str, Any] = {
        "throughput": {"docs": len(raw), "wordlist_docs_per_s": len(raw) / t_w,
                       "classifier_docs_per_s": len(raw) / t_c,
                       "assay_docs_per_s": len(raw) / (t_w + t_c)},
        "dropped_by_default_filter": float(drop.mean()),
        "drop_rate_by_kind": {k: {"docs": int((kinds == k).sum()),
                                  "wordlist": float((frac[kinds == k] > 0.01).mean()),
                                  "classifier": float((prob[kinds == k] > 0.99).mean())}
                              for k in sorted(set(kinds.tolist()))},
    }
    return res


BENCHES = {"fasttext": bench_fasttext, "perplexity": bench_perplexity,
           "embedding": bench_embedding, "toxicity": bench_toxicity}


if __name__ == "__main__":
    main()
