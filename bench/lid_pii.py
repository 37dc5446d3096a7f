"""Language ID and PII redaction: assay vs datatrove and bare fastText, same documents, same run.

`assay bench lid_pii` reads the first ``--mb`` MB of ``pretrain_raw`` (whole pages: doc pages
with boilerplate, dictionaries, licences, changelogs, literature) and times, in CPU-seconds of
this process (``time.process_time``), each way of doing the same work on the same texts, after
one warm-up call on a few documents (model loads, numba's cached kernels) outside the timer:

LID (labels compared with datatrove's on every document; scores compared bit for bit):
- ``fasttext predict loop``: fastText's own C++ ``predict(text.replace("\\n", " "), k=1)`` per
  page, the floor for anything that calls fastText;
- ``fasttext multilinePredict``: the same on the whole list in one call (no per-row Python);
- ``datatrove FT176LID``: datatrove's ``LanguageFilter`` model (k=-1, whole page);
- ``assay impl=fasttext`` / ``assay impl=kernel``: ``lid.fasttext``'s ``score`` on the Arrow
  table, whole page (``max_chars=0``) and as shipped (first 10,000 characters).

PII (output texts compared with the reference on every document):
- ``datatrove PIIFormatter`` (single placeholders ``<EMAIL>``/``<IP>``);
- ``assay rules=datatrove``: ``pii.redact``'s ``score`` with datatrove's patterns;
- ``assay rules=assay, whole-text passes``: the reference (the patterns over the whole text,
  what ``pii.redact`` did before the pre-scan) and ``assay rules=assay``: the shipped path.

``assay stage`` commands: each stage run alone as a whole command on the same pages, its CPU
beside a ``filter.length`` run (how issue 11 measured LID). A profile of the LID time (where a whole page's CPU goes) is printed too. Figures:
docs/BENCHMARKS.md, docs/benchmarks/filters.md.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench._common import add_out, bench_parser, jsonl_zst_lines, write_json


def load_pages(data_dir: Path, mb: float) -> list[str]:
    """The first ``mb`` MB (UTF-8) of ``pretrain_raw``'s texts, in file order."""
    texts: list[str] = []
    size = 0
    for line in jsonl_zst_lines(data_dir / "pretrain_raw.jsonl.zst"):
        t = json.loads(line)["text"]
        texts.append(t)
        size += len(t.encode())
        if size >= mb * 1e6:
            break
    return texts


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def _table(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            "doc_id": [str(i) for i in range(n)],
            "text": pa.array(texts, pa.large_string()),
            "source": ["bench"] * n,
            "url": pa.array([None] * n, pa.string()),
        }
    )


def bench_lid(texts: list[str]) -> dict[str, Any]:
    import fasttext
    from datatrove.data import Document
    from datatrove.utils.lid import FT176LID
    from fasttext.FastText import _FastText

    from pipeline.filters.lid import FastTextLidStage, default_model_path

    mb = sum(len(t.encode()) for t in texts) / 1e6
    table = _table(texts)
    model = fasttext.load_model(default_model_path())
    dt = FT176LID()
    dt._model = _FastText(default_model_path())
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    stages = {
        "assay impl=fasttext, whole page": FastTextLidStage({"impl": "fasttext", "max_chars": 0}),
        "assay impl=kernel, whole page": FastTextLidStage({"max_chars": 0}),
        "assay impl=fasttext, first 10,000 chars (shipped default)": FastTextLidStage(
            {"impl": "fasttext"}
        ),
        "assay impl=kernel, first 10,000 chars (shipped default)": FastTextLidStage(),
    }
    warm = _table(texts[:3])
    for s in stages.values():
        s.score(warm)
    dt.predict(docs[0])
    rows: dict[str, dict[str, float]] = {}

    def record(name: str, cpu: float) -> None:
        rows[name] = {"cpu_s": round(cpu, 3), "mb_per_cpu_s": round(mb / cpu, 2)}

    cpu, _ = _cpu(lambda: [model.predict(t.replace("\n", " "), k=1) for t in texts])
    record("fasttext predict loop (C++, k=1), whole page", cpu)
    cpu, _ = _cpu(
        lambda: model.f.multilinePredict(
            [t.replace("\n", " ") + "\n" for t in texts], 1, 0.0, "strict"
        )
    )
    record("fasttext multilinePredict (one call), whole page", cpu)
    cpu, dt_out = _cpu(lambda: [dt.predict(d)[0] for d in docs])
    record("datatrove FT176LID (k=-1), whole page", cpu)
    outs = {}
    for name, stage in stages.items():
        cpu, outs[name] = _cpu(lambda stage=stage: stage.score(table))
        record(name, cpu)

    # the profile of a whole page: text normalisation, per-row Python, fastText's own predict
    cpu_replace, prepared = _cpu(lambda: [t.replace("\n", " ") for t in texts])
    cpu_loop, _ = _cpu(lambda: [None for _ in prepared])
    cpu_to_py, _ = _cpu(lambda: table.column("text").to_pylist())
    profile = {
        "newline replacement (str.replace, all pages)": round(cpu_replace, 3),
        "Arrow column -> Python strings (to_pylist)": round(cpu_to_py, 3),
        "fastText predict, C++ (multilinePredict)": rows[
            "fasttext multilinePredict (one call), whole page"
        ]["cpu_s"],
        "assay kernel, whole page": rows["assay impl=kernel, whole page"]["cpu_s"],
    }

    dt_langs = [lang for lang, _ in dt_out]
    dt_scores = np.minimum(np.array([s for _, s in dt_out], np.float64), 1.0).astype(np.float32)
    k = outs["assay impl=kernel, whole page"]
    langs = k["lang"].to_pylist()
    scores = k["lang_score"].to_numpy()
    shipped = outs["assay impl=kernel, first 10,000 chars (shipped default)"]["lang"].to_pylist()
    return {
        "docs": len(texts),
        "mb": round(mb, 2),
        "rows": rows,
        "profile_cpu_s": profile,
        "labels_equal_datatrove": sum(a == b for a, b in zip(langs, dt_langs, strict=True)),
        "scores_bit_identical": int(np.sum(scores == dt_scores)),
        "max_abs_score_diff": float(np.max(np.abs(scores - dt_scores))) if len(texts) else 0.0,
        "shipped_default_labels_differing_from_whole_page": sum(
            a != b for a, b in zip(shipped, langs, strict=True)
        ),
        "speedup_kernel_vs_datatrove_whole_page": round(
            rows["datatrove FT176LID (k=-1), whole page"]["cpu_s"]
            / rows["assay impl=kernel, whole page"]["cpu_s"],
            2,
        ),
        "speedup_kernel_vs_fasttext_loop_whole_page": round(
            rows["fasttext predict loop (C++, k=1), whole page"]["cpu_s"]
            / rows["assay impl=kernel, whole page"]["cpu_s"],
            2,
        ),
    }


def bench_pii(texts: list[str]) -> dict[str, Any]:
    from datatrove.pipeline.formatters.pii import PIIFormatter

    from pipeline.filters.pii import PiiRedactStage

    mb = sum(len(t.encode()) for t in texts) / 1e6
    table = _table(texts)
    dt = PIIFormatter(email_replacement="<EMAIL>", ip_replacement="<IP>")
    dt_rules = PiiRedactStage({"rules": "datatrove"})
    ours = PiiRedactStage()
    reference = PiiRedactStage()
    warm = _table(texts[:3])
    dt_rules.score(warm)
    ours.score(warm)
    rows: dict[str, dict[str, float]] = {}

    def record(name: str, cpu: float) -> None:
        rows[name] = {"cpu_s": round(cpu, 3), "mb_per_cpu_s": round(mb / cpu, 2)}

    cpu, dt_out = _cpu(lambda: [dt.format(t) for t in texts])
    record("datatrove PIIFormatter", cpu)
    cpu, ours_dt = _cpu(lambda: dt_rules.score(table))
    record("assay pii.redact rules=datatrove", cpu)
    cpu, ref_out = _cpu(lambda: [reference.redact_reference(t)[0] for t in texts])
    record("assay rules=assay, whole-text passes (reference; the code before)", cpu)
    cpu, ours_out = _cpu(lambda: ours.score(table))
    record("assay pii.redact rules=assay (shipped)", cpu)
    got_dt = ours_dt["text"].to_pylist()
    got = ours_out["text"].to_pylist()
    return {
        "docs": len(texts),
        "mb": round(mb, 2),
        "rows": rows,
        "docs_changed_by_datatrove": sum(a != b for a, b in zip(texts, dt_out, strict=True)),
        "rules_datatrove_identical_to_piiformatter": sum(
            a == b for a, b in zip(got_dt, dt_out, strict=True)
        ),
        "rules_assay_identical_to_reference": sum(
            a == b for a, b in zip(got, ref_out, strict=True)
        ),
        "speedup_rules_datatrove_vs_piiformatter": round(
            rows["datatrove PIIFormatter"]["cpu_s"]
            / rows["assay pii.redact rules=datatrove"]["cpu_s"],
            2,
        ),
        "speedup_rules_assay_vs_reference": round(
            rows["assay rules=assay, whole-text passes (reference; the code before)"]["cpu_s"]
            / rows["assay pii.redact rules=assay (shipped)"]["cpu_s"],
            2,
        ),
    }


#: ``assay stage`` runs timed as whole commands (issue 11 measured LID this way)
STAGE_RUNS: list[tuple[str, list[str]]] = [
    ("filter.length", []),
    ("lid.fasttext", []),
    ("lid.fasttext", ["max_chars=0"]),
    ("lid.fasttext", ["max_chars=0", 'impl="fasttext"']),
    ("lid.fasttext", ['impl="fasttext"']),
    ("pii.redact", []),
    ("pii.redact", ['rules="datatrove"']),
]


def bench_stage_commands(texts: list[str], workdir: Path, repeat: int = 2) -> dict[str, Any]:
    """Each ``assay stage KIND pages.jsonl OUT`` as a subprocess: the stage's own ``cpu_s``
    from ``stats.json`` and the whole command's CPU (user + sys of the child), beside
    ``filter.length`` (reading, writing and start-up: the baseline); the lowest of ``repeat``
    runs of each command (the machine is shared)."""
    import shutil

    from bench.filters import stage_cpu

    workdir = workdir.resolve()  # the commands run from the code root
    workdir.mkdir(parents=True, exist_ok=True)
    pages = workdir / "pages.jsonl"
    with open(pages, "w") as fh:
        for t in texts:
            fh.write(json.dumps({"text": t}) + "\n")
    root = Path(__file__).resolve().parents[1]
    rows = []
    for kind, sets in STAGE_RUNS:
        out = workdir / "out"
        best: tuple[float, dict[str, Any]] | None = None
        for _ in range(repeat):
            cpu = stage_cpu(kind, pages, root, sets, out)
            stats = json.loads((out / "stats.json").read_text())
            st = next(x for x in stats["stages"] if x["kind"] == kind)
            if best is None or cpu < best[0]:
                best = (cpu, st)
        assert best is not None
        command_cpu, st = best
        rows.append(
            {
                "command": f"assay stage {kind} pages.jsonl out/"
                + "".join(f" --set {kv}" for kv in sets),
                "stage_cpu_s": st["cpu_s"],
                "bytes_in": st["bytes_in"],
                "stage_mb_per_cpu_s": round(st["bytes_in"] / 1e6 / st["cpu_s"], 2)
                if st["cpu_s"]
                else None,
                "command_cpu_s": round(command_cpu, 3),
            }
        )
    base = rows[0]["command_cpu_s"]
    for r in rows[1:]:
        extra = r["command_cpu_s"] - base
        r["mb_per_cpu_s_over_filter_length"] = (
            round(r["bytes_in"] / 1e6 / extra, 2) if extra > 0 else None
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return {"docs": len(texts), "rows": rows}


def format_results(results: dict[str, Any]) -> str:
    lines = []
    for part in ("lid", "pii"):
        r = results.get(part)
        if not r:
            continue
        lines.append(f"\n{part.upper()}: {r['docs']} docs, {r['mb']} MB of pretrain_raw")
        lines.append("| what | CPU s | MB per CPU-s |")
        lines.append("|---|---:|---:|")
        for name, row in r["rows"].items():
            lines.append(f"| {name} | {row['cpu_s']:.2f} | {row['mb_per_cpu_s']:.1f} |")
        for key, val in r.items():
            if key not in ("rows", "docs", "mb"):
                lines.append(f"{key}: {val}")
    if results.get("stage_commands"):
        lines.append(
            "\nassay stage commands (stage cpu_s from stats.json; command CPU incl. start-up)"
        )
        lines.append(
            "| command | stage CPU s | MB per stage CPU-s | command CPU s | MB/CPU-s over filter.length |"
        )
        lines.append("|---|---:|---:|---:|---:|")
        for r in results["stage_commands"]["rows"]:
            lines.append(
                f"| {r['command']} | {r['stage_cpu_s']} | {r['stage_mb_per_cpu_s']} "
                f"| {r['command_cpu_s']} | {r.get('mb_per_cpu_s_over_filter_length', '—')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("assay bench lid_pii", __doc__)
    ap.add_argument("--mb", type=float, default=20.0, help="MB of pretrain_raw pages")
    ap.add_argument("--only", choices=["lid", "pii", "stages"], default=None)
    ap.add_argument(
        "--repeat", type=int, default=2, help="runs of each stage command (lowest CPU kept)"
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/assay-bench-lid-pii"),
        help="scratch folder for the `assay stage` runs (removed afterwards)",
    )
    add_out(ap)
    args = ap.parse_args(argv)
    texts = load_pages(args.data, args.mb)
    results: dict[str, Any] = {"command": "assay bench lid_pii " + " ".join(argv or sys.argv[1:])}
    if args.only in (None, "lid"):
        results["lid"] = bench_lid(texts)
    if args.only in (None, "pii"):
        results["pii"] = bench_pii(texts)
    if args.only in (None, "stages"):
        results["stage_commands"] = bench_stage_commands(texts, args.workdir, args.repeat)
    print(format_results(results))
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
