"""``assay bench filters``: our heuristic filters (``impl="fast"``) vs datatrove's, same docs.

For each of Gopher quality, Gopher repetition, C4 and FineWeb it reports, on real documents:

- agreement of keep/drop decisions with datatrove's own filter, the share with the same drop
  reason, and for C4 the share of kept texts that are identical, plus the reason pairs of
  every disagreement;
- docs per CPU-second of this process (``time.process_time``: on a shared, loaded machine
  wall time measures the neighbours): each filter alone from a cold start (our word-splitter
  cache emptied, datatrove's spaCy cache as it comes), and all four in a row per document,
  which is how a pipeline runs them (datatrove then reuses its cached spaCy words; we reuse
  our chunk cache).

Documents: a seeded random sample of ``pretrain_raw.jsonl.zst`` (doc pages with boilerplate,
dictionaries, licences, changelogs, literature, Perl manuals) plus the pages of the WARC files
run through ``extract.html`` (what the filters see in a pipeline).

    python -m bench.filters [--raw 2000] [--pages 1500] [--out docs/benchmarks/filters.json]
    python -m bench.filters --pair-mb 40   # Gopher repetition -> quality, words shared or not
    python -m bench.filters --words-mb 40 --before CHECKOUT --reps 5   # the word split alone
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._common import DEFAULT_DATA, add_out, bench_parser, jsonl_zst_lines, write_json

FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


def load_docs(data_dir: Path, n_raw: int, n_pages: int, seed: int = 0) -> list[tuple[str, str]]:
    """(origin, text) pairs: a random sample of the raw corpus plus extracted WARC pages."""
    docs: list[tuple[str, str]] = []
    if n_raw:
        lines = jsonl_zst_lines(data_dir / "pretrain_raw.jsonl.zst")
        texts = [json.loads(line)["text"] for line in lines]
        rng = random.Random(seed)
        docs += [("pretrain_raw", t) for t in rng.sample(texts, min(n_raw, len(texts)))]
    if n_pages:
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        from pipeline.extract import HtmlExtractStage

        stage = HtmlExtractStage()
        pages: list[tuple[str, str]] = []
        for warc in sorted((data_dir / "warc").glob("*.warc.gz")):
            with open(warc, "rb") as f:
                for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                    text, _ = stage.extract_one(rec.reader.read())
                    if text:
                        pages.append(("warc_page", text))
                    if len(pages) >= n_pages:
                        break
            if len(pages) >= n_pages:
                break
        docs += pages
    return docs


BATCH = 1000  # documents per Arrow batch, the executor's default


def _ours_batch(name: str) -> Callable[[list[str]], list[tuple[str | None, str | None]]]:
    """Our filter over Arrow batches, as the executor runs it."""
    import pyarrow as pa

    from pipeline.filters import heuristics as h

    if name == "c4":
        stage_c4 = h.C4QualityStage()
        return lambda texts: [stage_c4.judge(t) for t in texts]
    stage = {
        "gopher_quality": h.GopherQualityStage,
        "gopher_repetition": h.GopherRepetitionStage,
        "fineweb": h.FineWebQualityStage,
    }[name]()

    def judge(texts: list[str]) -> list[tuple[str | None, str | None]]:
        out: list[tuple[str | None, str | None]] = []
        for i in range(0, len(texts), BATCH):
            table = pa.table({"text": pa.array(texts[i : i + BATCH], pa.large_string())})
            mask, reasons = stage.keep(table)
            out += [(None if k else r, None) for k, r in zip(mask.tolist(), reasons, strict=True)]
        return out

    return judge


def _datatrove(name: str) -> Callable[[str], tuple[str | None, str | None]]:
    from datatrove.data import Document
    from datatrove.pipeline import filters as f

    flt = {
        "gopher_quality": f.GopherQualityFilter,
        "gopher_repetition": f.GopherRepetitionFilter,
        "c4": f.C4QualityFilter,
        "fineweb": f.FineWebQualityFilter,
    }[name]()

    def judge(text: str) -> tuple[str | None, str | None]:
        doc = Document(text=text, id="")
        res = flt.filter(doc)
        if res is True:
            return None, doc.text if name == "c4" else None
        return (res[1] if isinstance(res, tuple) else "filtered"), None

    return judge


def _reset_caches() -> None:
    """Empty every cache of ours (a fresh worker): the Python splitter's, the kernel's."""
    from pipeline.filters import heuristics, words

    words.english_splitter().cache.clear()
    heuristics._chunk_stats.cache.clear()
    heuristics._chunk_stats.tokens.clear()
    kn = words._kernels()
    kn.fallback.clear()
    kn.ctab[:] = 0
    kn.cfill[:] = 0


def _reset_datatrove_cache() -> None:
    from datatrove.utils.text import split_into_parts

    split_into_parts.cache_clear()


def run(
    data_dir: Path = DEFAULT_DATA, n_raw: int = 2000, n_pages: int = 1500, seed: int = 0
) -> dict[str, Any]:
    docs = load_docs(data_dir, n_raw, n_pages, seed)
    texts = [t for _, t in docs]
    origins = [o for o, _ in docs]
    chars = sum(map(len, texts))
    utf8_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    results: dict[str, Any] = {
        "docs": len(texts),
        "chars": chars,
        "utf8_mb": utf8_mb,
        "origins": dict(Counter(origins)),
        "filters": {},
    }
    # the same warm-up for both sides, outside the timings: imports, spaCy's tokenizer build,
    # our kernels loaded from numba's cache; one document through every filter
    for name in FILTERS:
        _datatrove(name)("Warm up the tokenizer. It runs once.")
        _ours_batch(name)(["Warm up the tokenizer. It runs once."])

    for name in FILTERS:
        dt, ours = _datatrove(name), _ours_batch(name)
        _reset_datatrove_cache()
        t0 = time.process_time()
        ref = [dt(t) for t in texts]
        t_dt = time.process_time() - t0
        _reset_caches()
        t0 = time.process_time()
        got = ours(texts)
        t_ours = time.process_time() - t0
        n = len(texts)
        agree = sum((a[0] is None) == (b[0] is None) for a, b in zip(ref, got, strict=True))
        same_reason = sum(a[0] == b[0] for a, b in zip(ref, got, strict=True))
        same_text = sum(a[1] == b[1] for a, b in zip(ref, got, strict=True))
        disagreements = Counter(
            f"{a[0] or 'keep'} -> {b[0] or 'keep'}"
            for a, b in zip(ref, got, strict=True)
            if (a[0] is None) != (b[0] is None)
        )
        reason_mix = Counter(a[0] or "keep" for a in ref)
        results["filters"][name] = {
            "decision_agreement": agree / n,
            "reason_agreement": same_reason / n,
            "output_text_identical": same_text / n,
            "disagreements": dict(disagreements),
            "datatrove_reasons": dict(reason_mix.most_common()),
            "datatrove_docs_per_s": n / t_dt,
            "fast_docs_per_s": n / t_ours,
            "datatrove_mb_per_cpu_s": utf8_mb / t_dt,
            "fast_mb_per_cpu_s": utf8_mb / t_ours,
            "speedup": t_dt / t_ours,
        }

    # the word splitter alone: datatrove's split_into_words (spaCy) vs our batch kernels
    import pyarrow as pa
    from datatrove.utils.text import split_into_words

    from pipeline.filters.words import batch_tokens

    _reset_datatrove_cache()
    t0 = time.process_time()
    n_dt = sum(len(split_into_words(t)) for t in texts)
    t_dt = time.process_time() - t0
    _reset_caches()
    t0 = time.process_time()
    n_ours = 0
    for i in range(0, len(texts), BATCH):
        n_ours += len(batch_tokens(pa.array(texts[i : i + BATCH], pa.large_string())).tok_s)
    t_ours = time.process_time() - t0
    results["words"] = {
        "datatrove_words": n_dt,
        "fast_words": n_ours,
        "datatrove_mb_per_cpu_s": utf8_mb / t_dt,
        "fast_mb_per_cpu_s": utf8_mb / t_ours,
        "speedup": t_dt / t_ours,
    }

    # all four per document, as a pipeline runs them
    dts = [_datatrove(n) for n in FILTERS]
    ours_all = [_ours_batch(n) for n in FILTERS]
    _reset_datatrove_cache()
    t0 = time.process_time()
    for t in texts:
        for f in dts:
            f(t)
    t_dt = time.process_time() - t0
    _reset_caches()
    t0 = time.process_time()
    for i in range(0, len(texts), BATCH):  # batch by batch, each filter in turn
        for f in ours_all:
            f(texts[i : i + BATCH])
    t_ours = time.process_time() - t0
    results["chained"] = {
        "datatrove_docs_per_s": len(texts) / t_dt,
        "fast_docs_per_s": len(texts) / t_ours,
        "speedup": t_dt / t_ours,
    }
    return results


STAGE_KINDS = (
    "filter.length",
    "filter.gopher_repetition",
    "filter.gopher_quality",
    "filter.c4",
    "filter.fineweb",
)


def stage_sample(data_dir: Path, mb: float, seed: int, path: Path) -> float:
    """Whole documents of ``pretrain_raw`` in a seeded random order, up to ``mb`` MB of JSONL."""
    lines = list(jsonl_zst_lines(data_dir / "pretrain_raw.jsonl.zst"))
    random.Random(seed).shuffle(lines)
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line)
            n += len(line.encode("utf-8"))
            if n > mb * 1e6:
                break
    return n / 1e6


def stage_cpu(
    kind: str, sample: Path, code_root: Path, sets: Sequence[str] = (), out: Path | None = None
) -> float:
    """CPU-seconds (user + system) of one ``assay stage KIND sample out [--set K=V ...]`` command
    run from ``code_root``; with ``out`` the stage's output (its ``stats.json``) is left there."""
    import resource
    import shutil
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        dest = out if out is not None else Path(tmp) / "out"
        shutil.rmtree(dest, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "stage",
            kind,
            str(sample),
            str(dest),
            "--no-progress",
        ]
        for kv in sets:
            cmd += ["--set", kv]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=code_root,
            env={**__import__("os").environ, "PYTHONPATH": str(code_root)},
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_stages(
    data_dir: Path, mb: float, seed: int, roots: dict[str, Path], reps: int
) -> dict[str, Any]:
    """``assay stage`` per heuristic filter over a ``filter.length`` baseline, as the issue
    measures it: MB of JSONL / (CPU-s of the filter's command - CPU-s of the baseline's). Each
    checkout (label -> code root) runs every kind ``reps`` times, interleaved; the least CPU
    counts (neighbours on a loaded machine only ever add)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.jsonl"
        size = stage_sample(data_dir, mb, seed, sample)
        for root in roots.values():  # compile / load numba caches once, outside the timings
            stage_cpu("filter.gopher_quality", sample, root)
            stage_cpu("filter.gopher_repetition", sample, root)
        cpu: dict[str, dict[str, float]] = {label: {} for label in roots}
        for _ in range(reps):
            for label, root in roots.items():
                for kind in STAGE_KINDS:
                    t = stage_cpu(kind, sample, root)
                    cpu[label][kind] = min(cpu[label].get(kind, t), t)
    out: dict[str, Any] = {"sample_mb": size, "cpu_s": cpu, "mb_per_cpu_s": {}}
    for label in roots:
        base = cpu[label]["filter.length"]
        out["mb_per_cpu_s"][label] = {
            k: size / max(cpu[label][k] - base, 1e-9) for k in STAGE_KINDS[1:]
        }
    return out


_WORDS_PROBE = """
import json, sys, time
import pyarrow as pa
from pipeline import _aot
from pipeline.filters import words as w
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
col = pa.array(texts, pa.large_string())
kn = w._kernels()
for name in ("chunk_bounds", "split_chunks", "hash_spans", "cache_put", "expand"):
    getattr(w.KERNELS, name)
t0 = time.process_time()
fb = sum(w._split(col.slice(i, 1000)).fallback_chunks for i in range(0, len(texts), 1000))
print(json.dumps({"cpu_s": time.process_time() - t0, "fallback_chunks": fb,
                  "aot": _aot.kernels("words") is not None}))
"""


def run_words(data_dir: Path, mb: float, seed: int, roots: dict[str, Path], reps: int) -> dict[str, Any]:
    """The words of ``mb`` MB of ``pretrain_raw`` split in-process (``words._split`` over Arrow
    batches of 1,000 documents, caches empty, kernels loaded outside the timer), a fresh process
    per run and checkout, interleaved: CPU-s of each run and the fallback chunk count."""
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.jsonl"
        size = stage_sample(data_dir, mb, seed, sample)
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in roots}
        for _ in range(reps):
            for label, root in roots.items():
                out = subprocess.run(
                    [sys.executable, "-c", _WORDS_PROBE, str(sample)], check=True, text=True,
                    capture_output=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                ).stdout  # fmt: skip
                runs[label].append(json.loads(out.strip().splitlines()[-1]))
    return {"sample_mb": size, "runs": runs}


PAIR = ("filter.gopher_repetition", "filter.gopher_quality")


def pair_cpu(
    sample: Path | list[Path], share: bool, workers: int = 1, extract: bool = False
) -> dict[str, float]:
    """One ``assay run`` of Gopher repetition -> quality on ``sample`` (after ``extract.html``
    with ``extract``: WARC input) with the word sharing on or off (``ASSAY_SHARE_WORDS``): the
    two stages' CPU-s from ``stats.json`` (the executor's per-stage ``process_time``), their
    sum, and the whole command's CPU-s."""
    import os
    import resource
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    paths = sample if isinstance(sample, list) else [sample]
    kinds = (("extract.html",) if extract else ()) + PAIR
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.toml"
        spec.write_text(
            f'name = "bench-gopher-pair"\n[input]\npaths = {json.dumps([str(p) for p in paths])}\n'
            f"[output]\ndir = {json.dumps(str(Path(tmp) / 'out'))}\n"
            f"[execution]\nworkers = {workers}\n"
            + "".join(f'[[stages]]\nkind = "{k}"\n' for k in kinds)
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", str(spec), "--no-progress"],
            check=True, stdout=subprocess.DEVNULL, cwd=root,
            env={**os.environ, "PYTHONPATH": str(root), "ASSAY_SHARE_WORDS": "1" if share else "0"},
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stats = json.loads((Path(tmp) / "out" / "stats.json").read_text())
    per = {st["kind"]: st["cpu_s"] for st in stats["stages"] if st["kind"] in PAIR}
    return {**per, "both": sum(per.values()),
            "command": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "kept": stats["stages"][-1]["docs_out"]}


def run_pair(
    data_dir: Path, mb: float, seed: int, reps: int, warc_files: list[Path] | None = None
) -> dict[str, Any]:
    """Gopher repetition -> quality in one pipeline, words shared vs split by each stage:
    interleaved, ``reps`` runs each after one warm-up run each, the least CPU counts. With
    ``warc_files``: WARC -> ``extract.html`` -> the pair instead of ``mb`` MB of JSONL."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        if warc_files:
            sample: Path | list[Path] = warc_files
            size = sum(f.stat().st_size for f in warc_files) / 1e6
        else:
            sample = Path(tmp) / "sample.jsonl"
            size = stage_sample(data_dir, mb, seed, sample)
        ex = bool(warc_files)
        for share in (False, True):  # numba caches loaded once, outside the timings
            pair_cpu(sample, share, extract=ex)
        best: dict[str, dict[str, float]] = {"split twice": {}, "shared": {}}
        for _ in range(reps):
            for label, share in (("split twice", False), ("shared", True)):
                r = pair_cpu(sample, share, extract=ex)
                for k, v in r.items():
                    best[label][k] = v if k == "kept" else min(best[label].get(k, v), v)
    return {"sample_mb": size, "reps": reps, "cpu_s": best,
            "input": [str(f) for f in warc_files] if warc_files else "pretrain_raw JSONL"}


def format_table(results: dict[str, Any]) -> str:
    lines = [
        "| filter | decisions agree | same reason | datatrove docs/CPU-s | fast docs/CPU-s "
        "| datatrove MB/CPU-s | fast MB/CPU-s | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["filters"].items():
        lines.append(
            f"| {name} | {100 * r['decision_agreement']:.2f}% | {100 * r['reason_agreement']:.2f}% "
            f"| {r['datatrove_docs_per_s']:.0f} | {r['fast_docs_per_s']:.0f} "
            f"| {r['datatrove_mb_per_cpu_s']:.2f} | {r['fast_mb_per_cpu_s']:.1f} "
            f"| {r['speedup']:.1f}× |"
        )
    c = results["chained"]
    lines.append(
        f"| all four | | | {c['datatrove_docs_per_s']:.0f} | {c['fast_docs_per_s']:.0f} "
        f"| | | {c['speedup']:.1f}× |"
    )
    if "words" in results:
        w = results["words"]
        lines.append(
            f"| word splitting alone | | | | | {w['datatrove_mb_per_cpu_s']:.2f} "
            f"| {w['fast_mb_per_cpu_s']:.1f} | {w['speedup']:.1f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("assay bench filters", __doc__)
    ap.add_argument("--raw", type=int, default=2000, help="documents sampled from pretrain_raw")
    ap.add_argument("--pages", type=int, default=1500, help="WARC pages, extracted")
    ap.add_argument("--seed", type=int, default=0)
    add_out(ap)
    ap.add_argument(
        "--stage-mb",
        type=float,
        default=0,
        help="instead: time `assay stage` per filter on this many MB of pretrain_raw",
    )
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="with --stage-mb: also time this other checkout (e.g. a git worktree of an older commit)",
    )
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--words-mb",
        type=float,
        default=0,
        help="instead: the Gopher filters' word split alone, in-process, on this many MB of "
        "pretrain_raw (with --before: both checkouts interleaved)",
    )
    ap.add_argument(
        "--pair-mb",
        type=float,
        default=0,
        help="instead: Gopher repetition -> quality in one `assay run` on this many MB, words "
        "shared vs split twice (ASSAY_SHARE_WORDS=0)",
    )
    ap.add_argument(
        "--pair-warc",
        type=int,
        default=0,
        help="instead: the same pair after extract.html on the first N WARC files of --warc-dir",
    )
    ap.add_argument(
        "--warc-dir", type=Path, default=Path.home() / ".cache/assay/warc-corpus/warc",
        help="WARC files for --pair-warc (assay bench warc_corpus builds them)",
    )
    args = ap.parse_args(argv)
    if args.pair_mb or args.pair_warc:
        files = sorted(args.warc_dir.glob("*.warc*"))[: args.pair_warc] if args.pair_warc else None
        if args.pair_warc and not files:
            raise SystemExit(f"--pair-warc: no WARC files in {args.warc_dir}")
        res = run_pair(args.data, args.pair_mb, args.seed, args.reps, files)
        what = f"{len(files)} WARC files (compressed)" if files else "of pretrain_raw (JSONL)"
        print(f"{res['sample_mb']:.1f} MB {what}, one worker, CPU-s (least of {args.reps}):")
        for label, c in res["cpu_s"].items():
            print(f"  {label:12s} " + ", ".join(
                f"{k} {v:.2f}" if k != "kept" else f"kept {v}" for k, v in c.items()))
        a, b = res["cpu_s"]["split twice"], res["cpu_s"]["shared"]
        print(f"  saving: {a['both'] - b['both']:.2f} CPU-s of the two stages "
              f"({100 * (1 - b['both'] / a['both']):.0f}%), "
              f"{a['command'] - b['command']:.2f} CPU-s of the command")
        write_json(args.out, res)
        return 0
    if args.words_mb:
        roots = {"now": Path(__file__).resolve().parents[1]}
        if args.before:
            roots = {"before": args.before.resolve(), **roots}
        res = run_words(args.data, args.words_mb, args.seed, roots, args.reps)
        print(f"{res['sample_mb']:.1f} MB of pretrain_raw, words split in-process, CPU-s:")
        for label, runs in res["runs"].items():
            cpu = [r["cpu_s"] for r in runs]
            print(f"  {label}: least {min(cpu):.2f} (runs {' / '.join(f'{c:.2f}' for c in cpu)}), "
                  f"fallback chunks {runs[0]['fallback_chunks']:,}, AOT {runs[0]['aot']}")
        write_json(args.out, res)
        return 0
    if args.stage_mb:
        roots = {"now": Path(__file__).resolve().parents[1]}
        if args.before:
            roots = {"before": args.before.resolve(), **roots}
        res = run_stages(args.data, args.stage_mb, args.seed, roots, args.reps)
        print(
            f"{res['sample_mb']:.1f} MB of pretrain_raw (JSONL), CPU-s per command (least of {args.reps}):"
        )
        for label, cpu in res["cpu_s"].items():
            print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
        print("| filter | " + " | ".join(f"{lb} MB/CPU-s" for lb in roots) + " |")
        print("|---|" + "---:|" * len(roots))
        for kind in STAGE_KINDS[1:]:
            print(
                f"| `{kind}` | "
                + " | ".join(f"{res['mb_per_cpu_s'][lb][kind]:.1f}" for lb in roots)
                + " |"
            )
        write_json(args.out, res)
        return 0
    results = run(args.data, args.raw, args.pages, args.seed)
    print(f"{results['docs']} docs ({results['origins']}), {results['chars'] / 1e6:.1f} M chars")
    print(format_table(results))
    for name, r in results["filters"].items():
        line = f"{name}: disagreements {r['disagreements'] or 'none'}"
        if name == "c4":
            line += f"; kept texts identical {100 * r['output_text_identical']:.2f}%"
        print(line)
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
