"""`assay bench synth`: the vllm backend vs the hf baseline, prefix caching, verified fractions.

Same model, same prompts (the ``rewrite`` task over real documentation paragraphs), same
sampling (greedy, ``--max-tokens`` new tokens), same process, same warm-up (one request each):

1. **throughput** — generated tokens per second of ``vllm.LLM`` (one batched call, prefix
   caching on) and of transformers ``generate`` (left-padded batches of ``--hf-batch``);
2. **prefix caching** — ``--prefix-prompts`` reasoning requests that share the task's system
   prompt and worked example (~300 tokens) with 4 new tokens each (prefill-bound), on an engine
   with prefix caching on vs one with it off; a first batch warms the cache, the second is timed;
3. **verified fraction per task** — the four tasks through ``synth.generate`` (the vllm
   backend, a fresh request cache): reasoning traces kept after sandbox verification out of
   all generated, Q&A pairs parsed and grounded, rewrites and critiques parsed.

Needs vLLM: on CPU that is ``.venv-vllm`` (``make venv-vllm``); run from the main venv, this
re-runs itself there. Prints a JSON report (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ensure_vllm(argv: list[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return
    vpy = REPO / ".venv-vllm" / "bin" / "python"
    if not vpy.exists():
        sys.exit("error: `assay bench synth` needs vLLM; on CPU it lives in its own venv: run `make venv-vllm` first")
    os.execv(str(vpy), [str(vpy), "-m", "pipeline.cli", "bench", "synth", *argv])


def _seed_texts(n: int) -> list[str]:
    import io

    import zstandard

    texts: list[str] = []
    src = REPO.parent / "shared" / "data" / "quality_train.jsonl.zst"
    if src.exists():
        with open(src, "rb") as fh:
            for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8"):
                r = json.loads(line)
                if r["label"] == 1 and r["kind"] == "doc_prose" and 400 <= len(r["text"]) <= 1200:
                    texts.append(r["text"])
                if len(texts) >= n:
                    break
    for line in (REPO / "examples" / "data" / "synth" / "seeds.jsonl").read_text().splitlines():
        if len(texts) >= n:
            break
        texts.append(json.loads(line)["text"])
    return texts[:n]


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def throughput(model: str, prompts: int, max_tokens: int, hf_batch: int) -> dict:
    from synth.backends import GenParams, HFBackend, VLLMBackend
    from synth.tasks import make_task

    task = make_task("rewrite", max_chars=600)
    convs = [task.conversation(t) for t in _seed_texts(prompts)]
    p = GenParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0)
    seeds = list(range(len(convs)))
    res = {}
    v = VLLMBackend(model, prefix_caching=True)
    v.generate(convs[:1], GenParams(max_tokens=4, temperature=0.0), [0])
    outs, wall = _timed(lambda v=v: v.generate(convs, p, seeds))
    toks = sum(o.completion_tokens for o in outs)
    res["vllm"] = {"wall_s": round(wall, 2), "completion_tokens": toks, "tokens_per_s": round(toks / wall, 2),
                   "prompt_tokens": sum(o.prompt_tokens for o in outs)}
    v.close()
    del v
    h = HFBackend(model, batch_size=hf_batch)
    h.generate(convs[:1], GenParams(max_tokens=4, temperature=0.0), [0])
    outs_h, wall = _timed(lambda h=h: h.generate(convs, p, seeds))
    toks = sum(o.completion_tokens for o in outs_h)
    res["hf"] = {"wall_s": round(wall, 2), "completion_tokens": toks, "tokens_per_s": round(toks / wall, 2),
                 "prompt_tokens": sum(o.prompt_tokens for o in outs_h), "batch_size": hf_batch}
    res["vllm_over_hf"] = round(res["vllm"]["tokens_per_s"] / res["hf"]["tokens_per_s"], 2)
    res["same_greedy_text"] = sum(a.text == b.text for a, b in zip(outs, outs_h, strict=True))
    res["prompts"] = len(convs)
    return res


def prefix_caching(model: str, prompts: int) -> dict:
    import gc

    from synth.backends import GenParams, VLLMBackend
    from synth.tasks import make_task

    task = make_task("reasoning")
    problems = [json.loads(x)["text"] for x in (REPO / "examples" / "data" / "synth" / "problems.jsonl").read_text().splitlines()]
    convs = [task.conversation(f"{problems[i % len(problems)]} (case {i})") for i in range(2 * prompts)]
    p = GenParams(max_tokens=4, temperature=0.0)
    out = {}
    for on in (False, True):
        b = VLLMBackend(model, prefix_caching=on)
        b.generate(convs[:prompts], p, list(range(prompts)))  # warm-up (and, when on, fills the cache)
        res, wall = _timed(lambda b=b: b.generate(convs[prompts:], p, list(range(prompts))))
        out["on" if on else "off"] = {"wall_s": round(wall, 3), "prompt_tokens": sum(r.prompt_tokens for r in res)}
        b.close()
        del b
        gc.collect()
    out["speedup"] = round(out["off"]["wall_s"] / out["on"]["wall_s"], 2)
    out["prompts"] = prompts
    return out


def verified_fractions(model: str, samples: int, max_tokens: int) -> dict:
    from pipeline.run import run_spec
    from synth.job import summarize, task_specs

    data = REPO / "examples" / "data" / "synth"
    tmp = Path(tempfile.mkdtemp(prefix="assay-bench-synth-"))
    try:
        job = {
            "name": "bench",
            "generation": {"backend": "vllm", "model": model, "max_tokens": max_tokens, "cache": str(tmp / "cache.sqlite")},
            "tasks": [
                {"task": "rewrite", "input": [str(data / "seeds.jsonl")], "quality_column": "quality.label", "min_quality": 1},
                {"task": "qa", "input": [str(data / "seeds.jsonl")], "samples": 2},
                {"task": "reasoning", "input": [str(data / "problems.jsonl")], "samples": samples},
                {"task": "critique", "input": [str(data / "seeds.jsonl")], "constitution": str(data / "constitution.toml")},
            ],
        }
        out = {}
        for name, spec in task_specs(job, tmp / "out"):
            run_spec(spec, progress=False)
            s = summarize(name, Path(spec.output.dir))
            out[name] = {"generated": s["generated"], "kept": s["kept"],
                         "kept_fraction": round(s["kept"] / s["generated"], 3) if s["generated"] else None,
                         "verdicts": s["verdicts"], "dropped": s["dropped"], "tokens": s["tokens_generated"],
                         "wall_s": s["wall_s"]}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="assay bench synth", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="folder, hub id or built-in name")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--hf-batch", type=int, default=8)
    ap.add_argument("--prefix-prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4, help="reasoning samples per problem")
    ap.add_argument("--task-max-tokens", type=int, default=96)
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "prefix", "tasks"])
    ap.add_argument("--out", help="also write the JSON report here")
    args = ap.parse_args(argv)
    _ensure_vllm(argv)
    from synth.backends import VLLM_CPU_ENV
    from synth.models import resolve_model

    for k, v in VLLM_CPU_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    model = resolve_model(args.model)
    report: dict = {"model": args.model, "device": "cpu", "cpus": os.cpu_count(),
                    "load_avg_at_start": [round(x, 1) for x in os.getloadavg()]}
    if "throughput" not in args.skip:
        report["throughput"] = throughput(model, args.prompts, args.max_tokens, args.hf_batch)
    if "prefix" not in args.skip:
        report["prefix_caching"] = prefix_caching(model, args.prefix_prompts)
    if "tasks" not in args.skip:
        report["tasks"] = verified_fractions(args.model, args.samples, args.task_max_tokens)
    report["load_avg_at_end"] = [round(x, 1) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
