"""Trainer benchmarks on real text: speed vs a plain nanoGPT loop, quantization, distillation.

``assay bench trainer [--what speed,quant,distill]`` builds a snapshot from the first ``--docs``
documents of ``pretrain_raw.jsonl.zst``, trains a BPE on it, then:

- **speed**: tokens/s of ``assay train pretrain``'s loop (ShardLoader, per-token weights,
  schedule, logging) vs a plain nanoGPT-style loop (random windows of one token array, no
  weights) on the same model, same batch shape, same process, CPU fp32.
- **quant**: trains a model, then fp32 vs int8 vs int4 — file size, held-out perplexity
  (``quality_train`` label=1 prose), forward tokens/s at batch 1 and 16.
- **distill**: a student trained with logit distillation from that model vs the same student
  from scratch, same tokens: held-out LM loss.

Run it with ``nice``: it takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_bench_snapshot(work: Path, docs: int, vocab: int) -> tuple[Path, Path]:
    from curriculum.snapshot_io import read_jsonl_texts, table_from_records, write_snapshot
    from trainer_bridge.tokenizer import train_tokenizer

    snap = work / "snapshot"
    if not (snap / "manifest.json").exists():
        recs = read_jsonl_texts(DATA / "pretrain_raw.jsonl.zst", limit=docs * 4)[::4]
        table = table_from_records(recs, source_default="pretrain_raw")
        step = -(-table.num_rows // 4)
        write_snapshot(
            snap,
            [(f"p{i}", table.slice(i * step, step)) for i in range(4)],
            name="bench-pretrain-raw",
        )
    tok = snap / "tokenizer"
    if not (tok / "tokenizer.json").exists():
        train_tokenizer(snap, tok, vocab_size=vocab)
    return snap, tok


def bench_speed(
    snap: Path,
    tok: Path,
    work: Path,
    steps: int,
    model: dict[str, int],
    seq_len: int,
    batch_size: int,
) -> dict[str, Any]:
    import shutil

    import numpy as np
    import torch
    import torch.nn.functional as F

    from trainer_bridge.model import GPT, GPTConfig
    from trainer_bridge.trainer import TrainConfig, Trainer

    warm = 3
    shutil.rmtree(work / "speed-ours", ignore_errors=True)  # a fresh run, not a resume
    cfg = TrainConfig(
        snapshot=str(snap),
        out_dir=str(work / "speed-ours"),
        tokenizer=str(tok),
        model=model,
        seq_len=seq_len,
        batch_size=batch_size,
        max_steps=warm + steps,
        warmup_steps=2,
        log_every=0,
        quiet=True,
    )
    tr = Trainer(cfg)
    tr.run(stop_at=warm)
    t0 = time.perf_counter()
    tr.run(stop_at=warm + steps)
    ours = steps * tr.tokens_per_step / (time.perf_counter() - t0)

    # plain nanoGPT-style loop: random windows of one token array, mean cross-entropy
    tokens = np.asarray(tr.data.cache.tokens, dtype=np.int64)
    torch.manual_seed(0)
    m = GPT(GPTConfig(**{**model, "vocab_size": tr.tokenizer.vocab_size, "max_seq_len": seq_len}))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)

    def step() -> None:
        ix = rng.integers(0, len(tokens) - seq_len - 1, batch_size)
        x = torch.from_numpy(np.stack([tokens[i : i + seq_len] for i in ix]))
        y = torch.from_numpy(np.stack([tokens[i + 1 : i + 1 + seq_len] for i in ix]))
        loss = F.cross_entropy(m(x).view(-1, m.cfg.vocab_size), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warm):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    plain = steps * batch_size * seq_len / (time.perf_counter() - t0)
    return {
        "ours_tokens_per_s": ours,
        "plain_tokens_per_s": plain,
        "ratio": ours / plain,
        "steps": steps,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "model": model,
        "threads": torch.get_num_threads(),
    }


def train_model(
    snap: Path,
    tok: Path,
    out: Path,
    model: dict[str, int],
    tokens: int,
    seq_len: int,
    batch_size: int,
    **kw: Any,
) -> dict[str, Any]:
    from trainer_bridge.trainer import TrainConfig, train

    cfg = TrainConfig(
        snapshot=str(snap),
        out_dir=str(out),
        tokenizer=str(tok),
        model=model,
        seq_len=seq_len,
        batch_size=batch_size,
        max_tokens=tokens,
        warmup_steps=20,
        log_every=50,
        schedule="cosine",
        eval_path=str(DATA / "quality_train.jsonl.zst"),
        eval_where=["label=1"],
        eval_seqs=64,
        **kw,
    )
    return train(cfg)


def bench_quant(run: Path) -> dict[str, Any]:
    from trainer_bridge.quantize import quantize_checkpoint

    rows = {}
    for method in ("int8", "int4"):
        r = quantize_checkpoint(
            run,
            run.parent / f"{run.name}-{method}",
            method,
            32,
            str(DATA / "quality_train.jsonl.zst"),
            ["label=1"],
            64,
        )
        rows[method] = r
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="assay bench trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--what", default="speed,quant,distill")
    ap.add_argument("--docs", type=int, default=3000, help="pretrain_raw docs in the snapshot")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--work", default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--speed-steps", type=int, default=20)
    ap.add_argument("--teacher-tokens", type=int, default=600_000)
    ap.add_argument("--student-tokens", type=int, default=300_000)
    ap.add_argument("--out-json", default=None)
    ap.add_argument(
        "--hf-model",
        default=None,
        help="local HF Llama folder: only print its int8/int4 quantization table",
    )
    ap.add_argument("--hf-eval-seqs", type=int, default=32)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 on a shared 2-core machine: spinning OpenMP "
        "threads under contention cost more than they give)",
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    what = set(args.what.split(","))
    if args.hf_model:  # quantization table of a real pretrained model (local HF Llama folder)
        from trainer_bridge.quantize import quantize_checkpoint

        rows = {}
        for method in ("int8", "int4"):
            rows[method] = quantize_checkpoint(
                args.hf_model,
                Path(args.work or tempfile.mkdtemp()) / f"hf-{method}",
                method,
                32,
                str(DATA / "quality_train.jsonl.zst"),
                ["label=1"],
                args.hf_eval_seqs,
                eval_seq_len=256,
            )
        base = rows["int8"]
        print(
            f"\nquantization of {args.hf_model} (held-out quality_train label=1, "
            f"{args.hf_eval_seqs} x 256 tokens):"
        )
        print(f"  {'':6} {'bytes':>12} {'ppl':>8} {'Δppl':>7} {'tok/s b=1':>10}")
        print(
            f"  {'fp32':6} {base['fp32_bytes']:>12,} {base['fp32_ppl']:>8.3f} {'':>7} "
            f"{base['fp32_tokens_per_s']:>10,.0f}"
        )
        for m, r in rows.items():
            print(
                f"  {m:6} {r['bytes']:>12,} {r['ppl']:>8.3f} {100 * r['ppl_increase']:>6.2f}% "
                f"{r['tokens_per_s']:>10,.0f}"
            )
        if args.out_json:
            Path(args.out_json).write_text(json.dumps(rows, indent=1, default=str) + "\n")
        return {"hf_quant": rows}
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    else:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    snap, tok = build_bench_snapshot(work, args.docs, args.vocab)
    result: dict[str, Any] = {"docs": args.docs, "vocab": args.vocab}
    small = dict(n_layer=4, n_head=4, n_kv_head=2, d_model=128)
    big = dict(n_layer=4, n_head=4, n_kv_head=2, d_model=128)  # also the quantized model
    student = dict(n_layer=2, n_head=4, n_kv_head=2, d_model=64)
    if "speed" in what:
        s = bench_speed(snap, tok, work, args.speed_steps, small, 128, 16)
        result["speed"] = s
        print(f"\nspeed (CPU fp32, {s['threads']} threads, d=128 L=4, B=16 T=128):")
        print(f"  assay trainer  {s['ours_tokens_per_s']:>9,.0f} tok/s")
        print(f"  plain loop     {s['plain_tokens_per_s']:>9,.0f} tok/s   ratio {s['ratio']:.2f}")
    if what & {"quant", "distill"}:
        teacher = work / "teacher"
        h = train_model(snap, tok, teacher, big, args.teacher_tokens, 128, 16, lr=2e-3)
        result["teacher"] = {
            "eval_loss": h["eval_loss"][-1],
            "params": h["params"],
            "tokens_per_s": h["tokens_per_s"],
        }
    if "quant" in what:
        q = bench_quant(work / "teacher")
        result["quant"] = q
        base = q["int8"]
        print("\nquantization (teacher model, held-out quality_train label=1):")
        print(f"  {'':6} {'bytes':>10} {'ppl':>8} {'Δppl':>7} {'tok/s b=1':>10}")
        print(
            f"  {'fp32':6} {base['fp32_bytes']:>10,} {base['fp32_ppl']:>8.2f} {'':>7} "
            f"{base['fp32_tokens_per_s']:>10,.0f}"
        )
        for m, r in q.items():
            print(
                f"  {m:6} {r['bytes']:>10,} {r['ppl']:>8.2f} {100 * r['ppl_increase']:>6.2f}% "
                f"{r['tokens_per_s']:>10,.0f}"
            )
    if "distill" in what:
        kd = train_model(
            snap,
            tok,
            work / "student-kd",
            student,
            args.student_tokens,
            128,
            16,
            teacher=str(work / "teacher"),
            kd_alpha=0.5,
            kd_kind="forward",
        )
        scratch = train_model(
            snap, tok, work / "student-scratch", student, args.student_tokens, 128, 16
        )
        d = {"kd_eval_loss": kd["eval_loss"][-1], "scratch_eval_loss": scratch["eval_loss"][-1]}
        d["kd_gain"] = 1 - d["kd_eval_loss"] / d["scratch_eval_loss"]
        d["kd_ppl"], d["scratch_ppl"] = (
            math.exp(d["kd_eval_loss"]),
            math.exp(d["scratch_eval_loss"]),
        )
        result["distill"] = d
        print("\ndistillation (student d=64 L=2 from teacher d=128 L=4, same tokens):")
        print(f"  from scratch  eval loss {d['scratch_eval_loss']:.4f}")
        print(
            f"  with KD       eval loss {d['kd_eval_loss']:.4f}   ({100 * d['kd_gain']:.1f}% lower)"
        )
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
