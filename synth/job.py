"""Synth jobs: several generation tasks sharing one model, each run as an ordinary pipeline.

A job file (``examples/synth.toml``) has a ``[generation]`` table (backend, model, sampling,
cache: the defaults of every task) and ``[[tasks]]``, each with its own ``input`` paths, a
``task`` kind and any other ``synth.generate`` field, plus optional ``after = [{kind = ...}]``
stages (dedup, filters, ``filter.decontaminate``) that the generated rows flow through.

Each task becomes a :class:`pipeline.spec.PipelineSpec` run by the LocalExecutor into
``OUTPUT/<task name>/`` (a normal snapshot with manifest; dropped rows written aside), so
resume, stats and manifests work as for every other job. Tasks run in one process, so they
share the loaded engine.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pipeline.spec import PipelineSpec, SpecError

GEN_KEYS_NOT_FOR_TASKS = {"name", "input", "after", "format", "text_field", "id_field"}


def load_job(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"job file {str(p)!r} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"job {str(p)!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"job {str(p)!r} is not UTF-8 text (byte {e.start}); a job is a TOML file") from None
    if not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise SpecError("job error: tasks: add at least one [[tasks]] table")
    unknown = set(data) - {"name", "generation", "tasks", "output"}
    if unknown:
        raise SpecError(f"job error: unknown top-level field(s) {sorted(unknown)}; use name, generation, tasks, output")
    return data


def task_specs(job: dict[str, Any], output: str | Path) -> list[tuple[str, PipelineSpec]]:
    """(task name, PipelineSpec) for every ``[[tasks]]`` entry, validated up front."""
    gen = dict(job.get("generation", {}))
    out = []
    seen: set[str] = set()
    for i, t in enumerate(job["tasks"]):
        if not isinstance(t, dict) or "task" not in t:
            raise SpecError(f"job error: tasks[{i}]: needs `task` (rewrite, qa, reasoning or critique)")
        name = str(t.get("name") or t["task"])
        if name in seen or not name.replace("-", "").replace("_", "").isalnum():
            raise SpecError(f"job error: tasks[{i}].name: {name!r} must be unique and alphanumeric (- and _ allowed)")
        seen.add(name)
        if "input" not in t:
            raise SpecError(f"job error: tasks[{i}] ({name}).input: missing (a list of JSONL/Parquet paths)")
        inputs = t["input"] if isinstance(t["input"], list) else [t["input"]]
        stage = {"kind": "synth.generate", **gen, **{k: v for k, v in t.items() if k not in GEN_KEYS_NOT_FOR_TASKS}}
        after = t.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, dict) and "kind" in a for a in after):
            raise SpecError(f"job error: tasks[{i}] ({name}).after: a list of stage tables with `kind`")
        data = {
            "name": f"{job.get('name', 'synth')}-{name}",
            "input": {"paths": [str(p) for p in inputs], "format": t.get("format", "auto"),
                      "text_field": t.get("text_field", "text"), "id_field": t.get("id_field", "id")},
            "output": {"dir": str(Path(output) / name), "write_dropped": True},
            "stages": [stage, *after],
        }
        try:
            out.append((name, PipelineSpec.from_dict(data)))
        except SpecError as e:
            raise SpecError(f"job error: tasks[{i}] ({name}): {e}") from None
    return out


def summarize(name: str, root: Path) -> dict[str, Any]:
    """What a task made: seeds, generated, kept, dropped by reason, verdict counts."""
    import pyarrow.parquet as pq

    stats = json.loads((root / "stats.json").read_text())
    st = next(s for s in stats["stages"] if s["kind"] == "synth.generate")
    c = st["counters"]
    verdicts: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    for f in sorted((root / "shards").glob("*.parquet")):
        t = pq.read_table(f)
        for r in t.to_pylist():
            v = r.get("synth.verdict")
            if v:
                verdicts[v] = verdicts.get(v, 0) + 1
            if len(examples) < 2:
                examples.append({k: r.get(k) for k in ("synth.seed_doc_id", "synth.sample", "synth.answer", "synth.result",
                                                       "synth.verdict", "synth.votes", "text")})
    for f in sorted((root / "dropped").glob("*.parquet")) if (root / "dropped").exists() else []:
        t = pq.read_table(f, columns=None)
        if "synth.verdict" in t.column_names:
            for v, reason in zip(t.column("synth.verdict").to_pylist(), t.column("drop_reason").to_pylist(), strict=True):
                if v and reason != "synth.seed":
                    verdicts[v] = verdicts.get(v, 0) + 1
    generated = int(c.get("generated", 0))
    return {
        "task": name,
        "seeds": int(c.get("synth.seeds", 0)),
        "generated": generated,
        "kept": stats["kept"],
        "dropped": {k: v for k, v in st["dropped"].items() if k not in ("synth.seed", "synth.not_selected")},
        "not_selected": st["dropped"].get("synth.not_selected", 0),
        "verdicts": verdicts,
        "verified_fraction": round(verdicts.get("verified", 0) / generated, 4) if verdicts and generated else None,
        "cache_hits": int(c.get("synth.cache_hits", 0)),
        "requests_generated": int(c.get("synth.requests_generated", 0)),
        "tokens_generated": int(c.get("synth.completion_tokens_generated", 0)),
        "wall_s": st["wall_s"],
        "examples": examples,
        "snapshot": str(root),
    }


def run_job(path: str | Path, output: str | Path, progress: bool = False) -> list[dict[str, Any]]:
    from pipeline.run import run_spec

    job = load_job(path)
    specs = task_specs(job, output)
    results = []
    for name, spec in specs:
        run_spec(spec, progress=progress)
        results.append(summarize(name, Path(spec.output.dir)))
    Path(output).mkdir(parents=True, exist_ok=True)
    (Path(output) / "summary.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def format_summary(results: list[dict[str, Any]]) -> str:
    head = f"{'task':<12}{'seeds':>6}{'made':>6}{'kept':>6}{'verified':>10}{'cached':>8}{'tokens':>8}{'s':>7}  dropped"
    lines = [head, "-" * len(head)]
    for r in results:
        ver = f"{r['verdicts'].get('verified', 0)}/{r['generated']}" if r["verdicts"] else "-"
        drops = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items(), key=lambda kv: -kv[1])) or "-"
        lines.append(f"{r['task'][:11]:<12}{r['seeds']:>6}{r['generated']:>6}{r['kept']:>6}{ver:>10}{r['cache_hits']:>8}"
                     f"{r['tokens_generated']:>8}{r['wall_s']:>7.1f}  {drops}")
    for r in results:
        for ex in r["examples"][:1]:
            text = (ex.get("text") or "").replace("\n", " ")[:160]
            extra = f" [answer {ex['synth.answer']!r}, executed {ex['synth.result']!r}, {ex['synth.verdict']}, votes {ex['synth.votes']}]" if ex.get("synth.verdict") else ""
            lines.append(f"  e.g. {r['task']}: {text}{extra}")
    return "\n".join(lines)
