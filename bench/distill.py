"""Real distillation: SmolLM2-135M-Instruct teaches a tiny student on assay-curated data.

    nice assay bench distill --snapshot /tmp/model_kd/snap_curated \\
        --eval prose=/tmp/model_kd/eval.jsonl --tokens 65536 --seeds 0,1,2

Both arms train the same student (same tokenizer as the teacher: SmolLM2's 49,152-token BPE)
on the same batches (``data_seed`` fixed, so the token stream is identical), for the same
number of tokens; the only difference is the loss:

- ``lm``: next-token cross-entropy;
- ``kd``: ``alpha * T² * KL(teacher_top_k || student) + (1 - alpha) * LM``, from the teacher's
  top-k logits, computed once and cached by batch content (``TeacherCache``), so every seed
  of the KD arm reuses them.

Reported per eval set: final held-out loss (nats/token) of each arm, mean and 95% t-interval
over seeds, the paired gap ``kd - lm`` (negative = KD helps) with its interval, and the
teacher's own loss on the same tokens (the floor the student distils from). The eval sets are
``NAME=PATH[:FIELD=VALUE]`` (JSONL/zst/Parquet/snapshot), read in content-hash order and packed
into ``--eval-seqs`` rows by :func:`trainer_bridge.evaluation.build_eval_tensor`; with
``--per-doc`` each row is the first ``seq_len + 1`` tokens of one document (the lever
ablation's construction). ``--decontaminate`` drops every eval document that shares a 13-word
shingle with the training snapshot (the ablation's check) and records how many.

The three eval sets of the lever ablation, at equal tokens:

    nice assay bench distill --snapshot /tmp/model_kd/snap_curated --work /tmp/model_kd/kd3 \
        --eval prose=/tmp/abl/eval/prose.jsonl --eval neutral=/tmp/abl/eval/neutral.jsonl \
        --eval raw_heldout=/tmp/abl/eval/raw_heldout.jsonl --per-doc --decontaminate \
        --tokens 32768 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(xs: list[float]) -> dict[str, Any]:
    """Mean and a 95% Student-t interval (None for one value)."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return {"mean": m, "ci95": None, "n": len(xs)}
    half = T_975.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
    return {"mean": m, "ci95": [m - half, m + half], "n": len(xs)}


def parse_eval(spec: str) -> tuple[str, str, list[str]]:
    if "=" not in spec:
        raise SystemExit(f"--eval {spec!r}: use NAME=PATH or NAME=PATH:FIELD=VALUE")
    name, rest = spec.split("=", 1)
    where: list[str] = []
    if ":" in rest and "=" in rest.split(":", 1)[1]:
        rest, w = rest.split(":", 1)
        where = [w]
    return name, rest, where


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshot", required=True, help="assay-curated snapshot to train on")
    ap.add_argument("--eval", action="append", required=True, help="NAME=PATH[:FIELD=VALUE]")
    ap.add_argument("--work", default="/tmp/model_kd/kd")
    ap.add_argument("--teacher", default=None, help="HF folder (default: SmolLM2 from the wheel)")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--eval-seqs", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-doc", action="store_true",
                    help="one eval row per document (its first seq_len + 1 tokens)")
    ap.add_argument("--decontaminate", action="store_true",
                    help="drop eval docs sharing a 13-word shingle with --snapshot")
    a = ap.parse_args(argv)

    import torch

    from trainer_bridge.evaluation import build_eval_tensor, evaluate, parse_where, read_texts
    from trainer_bridge.export import import_hf
    from trainer_bridge.pretrained import smollm2_folder
    from trainer_bridge.tokenizer import TextTokenizer
    from trainer_bridge.trainer import TrainConfig, Trainer, load_model

    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    teacher_dir = Path(a.teacher) if a.teacher else smollm2_folder()
    tok = TextTokenizer(teacher_dir)
    pool_shingles: set[int] = set()
    if a.decontaminate:
        from bench.ablation_data import shingles

        for t in read_texts(a.snapshot, order="file"):
            pool_shingles |= shingles(t)
    evals = {}
    decontam: dict[str, Any] = {}
    for spec in a.eval:
        name, path, where = parse_eval(spec)
        texts = read_texts(path, parse_where(where),
                           max_chars=None if a.per_doc else a.eval_seqs * a.seq_len * 12)
        if a.decontaminate:
            kept = [t for t in texts if not (shingles(t) & pool_shingles)]
            decontam[name] = {"docs": len(texts), "dropped_pool_overlap": len(texts) - len(kept)}
            texts = kept
        evals[name] = build_eval_tensor(texts, tok, a.seq_len, a.eval_seqs,
                                        per_doc=a.seq_len + 1 if a.per_doc else None)

    result: dict[str, Any] = {
        "snapshot": a.snapshot,
        "teacher": str(teacher_dir),
        "settings": vars(a),
        "eval_tokens": {k: int(v[:, 1:].numel()) for k, v in evals.items()},
        "decontamination": decontam,
    }
    tfile = work / "teacher_eval.json"
    import hashlib

    key = hashlib.sha256(b"".join(k.encode() + v.numpy().tobytes()
                                  for k, v in sorted(evals.items()))).hexdigest()[:16]
    cached = json.loads(tfile.read_text()) if tfile.exists() else {}
    if cached.get("key") == key:  # the teacher's loss on exactly these eval tensors
        result["teacher_eval"] = cached["loss"]
    else:
        t0 = time.perf_counter()
        teacher = import_hf(teacher_dir)
        result["teacher_eval"] = {k: evaluate(teacher, v, batch_size=4) for k, v in evals.items()}
        result["teacher_eval_seconds"] = time.perf_counter() - t0
        tfile.write_text(json.dumps({"key": key, "loss": result["teacher_eval"]}) + "\n")
        del teacher

    runs: dict[str, dict[str, Any]] = {}
    for seed in [int(s) for s in a.seeds.split(",")]:
        for arm in ("lm", "kd"):
            out = work / f"{arm}_s{seed}"
            cfg = TrainConfig(
                snapshot=a.snapshot,
                out_dir=str(out),
                tokenizer=str(teacher_dir),
                model=dict(n_layer=a.layers, n_head=4, n_kv_head=2, d_model=a.d_model),
                seq_len=a.seq_len,
                batch_size=a.batch_size,
                max_tokens=a.tokens,
                lr=a.lr,
                warmup_steps=max(1, a.tokens // (a.seq_len * a.batch_size) // 10),
                log_every=0,
                quiet=True,
                seed=seed,
                data_seed=0,
                device="cpu",
                teacher=str(teacher_dir) if arm == "kd" else None,
                kd_alpha=a.alpha,
                kd_temperature=a.temperature,
                kd_top_k=a.top_k if arm == "kd" else 0,
                teacher_cache=str(work / "teacher_topk") if arm == "kd" else None,
            )
            t0 = time.perf_counter()
            hist_path = out / "history.json"
            if hist_path.exists():  # finished before: reuse (the trainer would resume anyway)
                hist = json.loads(hist_path.read_text())
                cache_stats = None
            else:
                tr = Trainer(cfg)
                hist = tr.run()
                cache_stats = (
                    {"hits": tr.teacher_topk.hits, "misses": tr.teacher_topk.misses}
                    if tr.teacher_topk
                    else None
                )
            model, _ = load_model(out)
            runs[f"{arm}_s{seed}"] = {
                "arm": arm,
                "seed": seed,
                "tokens": hist["tokens"][-1],
                "final_train_loss": hist["loss"][-1],
                "eval": {k: evaluate(model, v) for k, v in evals.items()},
                "seconds": time.perf_counter() - t0,
                "teacher_cache": cache_stats,
                "params": hist["params"],
            }
            print(json.dumps({k: runs[f"{arm}_s{seed}"][k] for k in ("arm", "seed", "eval")}))
    result["runs"] = runs
    seeds = sorted({r["seed"] for r in runs.values()})
    summary = {}
    for name in evals:
        lm = [runs[f"lm_s{s}"]["eval"][name] for s in seeds]
        kd = [runs[f"kd_s{s}"]["eval"][name] for s in seeds]
        summary[name] = {
            "lm": mean_ci(lm),
            "kd": mean_ci(kd),
            "gap_kd_minus_lm": mean_ci([k - m for k, m in zip(kd, lm, strict=True)]),
            "teacher": result["teacher_eval"][name],
        }
    result["summary"] = summary
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        "| eval set | LM only | KD (top-%d, α=%.2g) | gap KD−LM (95%% CI) | teacher |"
        % (a.top_k, a.alpha)
    )
    print("|---|---:|---:|---:|---:|")
    for name, s in summary.items():
        g = s["gap_kd_minus_lm"]
        ci = f" [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]" if g["ci95"] else ""
        print(
            f"| {name} | {s['lm']['mean']:.3f} | {s['kd']['mean']:.3f} | "
            f"{g['mean']:+.3f}{ci} | {s['teacher']:.3f} |"
        )
    return result


if __name__ == "__main__":
    main()
