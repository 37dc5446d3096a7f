"""`assay bench pipeline`: assay vs datatrove on the same WARC shards, in the same run.

Both sides run: read WARC → extract HTML → language ID (lid.176, keep English ≥ 0.65) →
Gopher quality filter → exact dedup → write Parquet, with the same number of worker
processes on the same files. datatrove's exact dedup is its three-step
ExactDedupSignature → ExactFindDedups → ExactDedupFilter, with the first pass writing an
intermediate Parquet (as assay does), so neither side re-extracts.

datatrove ships only trafilatura-style extractors; we time it twice: with its own
``Trafilatura`` (what a datatrove user gets) and with a 10-line resiliparse extractor (the same
extractor assay uses), so the ratio separates "better extractor" from "faster pipeline".
Ratios are what count: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO / ".." / "shared" / "data" / "warc"


def _lid_model_path() -> str:
    from pipeline.filters.lid import default_model_path

    return str(default_model_path())


def run_assay(files: list[str], out: str, workers: int, split: int = 1,
              lid_max_chars: int | None = 10_000, write_dropped: bool = False,
              repetition: bool = False) -> dict[str, Any]:
    """assay's pipeline; ``lid_max_chars=None`` reads the whole page for LID, as datatrove does;
    ``repetition``: Gopher repetition before Gopher quality (the issue's pipeline).
    ``wall_s`` is the pipeline's own wall time, in this process (for CPU see :func:`measured`)."""
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    out = Path(out)
    spec = PipelineSpec.from_dict({
        "name": "bench-pipeline",
        "input": {"paths": [str(f) for f in files], "split": split},
        "output": {"dir": str(out), "write_dropped": write_dropped},
        "execution": {"workers": workers},
        "stages": [
            {"kind": "extract.html", "engine": "resiliparse"},
            {"kind": "lid.fasttext", "max_chars": lid_max_chars},
            {"kind": "filter.lang", "languages": ["en"], "min_score": 0.65},
            *([{"kind": "filter.gopher_repetition"}] if repetition else []),
            {"kind": "filter.gopher_quality"},
            {"kind": "dedup.exact"},
        ],
    })
    t0 = time.perf_counter()
    m = run_spec(spec, progress=False, workers=workers)
    wall = time.perf_counter() - t0
    stats_path = out / "stats.json"
    per_stage = []
    if stats_path.exists():  # the per-stage profile (CPU seconds of the workers, summed)
        st = json.loads(stats_path.read_text())
        per_stage = [{k: s.get(k) for k in ("name", "docs_in", "docs_out", "bytes_in", "wall_s", "cpu_s", "dropped")}
                     for s in st.get("stages", [])]
    return {"wall_s": wall, "docs_in": m["stats"]["docs_in"],
            "docs_out": m["totals"]["rows"], "shards": len(files) * split, "per_stage": per_stage}


# -- datatrove side (module-level callables: its workers pickle them) -------------------------------


def _content(doc: Any) -> str:
    return doc.text


def _resiliparse_extractor() -> Any:
    from bench._dt_resiliparse import ResiliparseExtractor

    return ResiliparseExtractor()


def run_datatrove(files: list[str], work: str, workers: int, extractor: str,
                  explain: bool = False, repetition: bool = False) -> dict[str, Any]:
    """datatrove's pipeline, one task per file. ``explain``: exclusion writers record why each
    dropped page was dropped (an untimed diagnostic run)."""
    work = Path(work)
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter, LanguageFilter
    from datatrove.pipeline.readers import ParquetReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

    inp = work / "in"
    inp.mkdir(parents=True)
    for f in files:
        (inp / Path(f).name).symlink_to(Path(f).resolve())
    cfg = ExactDedupConfig(content_getter=_content)
    excl = (lambda name: JsonlWriter(str(work / "excluded" / name))) if explain else (lambda name: None)
    lang_filter = LanguageFilter(languages=["en"], language_threshold=0.65, exclusion_writer=excl("lang"))
    # offline: the same lid.176.ftz, shipped in a wheel (an instance attribute, so it is
    # pickled to datatrove's worker processes; the class default is a download URL)
    lang_filter.model.MODEL_URL = _lid_model_path()
    ext = Trafilatura(favour_precision=True, timeout=1.0) if extractor == "trafilatura" else _resiliparse_extractor()
    tasks = len(files)
    t0 = time.perf_counter()
    LocalPipelineExecutor(
        pipeline=[
            WarcReader(str(inp), glob_pattern="*.warc*"),
            ext,
            lang_filter,
            *([GopherRepetitionFilter(exclusion_writer=excl("gopher_rep"))] if repetition else []),
            GopherQualityFilter(exclusion_writer=excl("gopher")),
            ParquetWriter(str(work / "mid")),
            ExactDedupSignature(output_folder=str(work / "sigs"), config=cfg),
        ],
        tasks=tasks, workers=workers, logging_dir=str(work / "logs1"),
    ).run()
    LocalPipelineExecutor(
        pipeline=[ExactFindDedups(data_folder=str(work / "sigs"), output_folder=str(work / "dups"), config=cfg)],
        tasks=1, workers=1, logging_dir=str(work / "logs2"),
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(work / "mid")),
            ExactDedupFilter(data_folder=str(work / "dups"), config=cfg),
            ParquetWriter(str(work / "out")),
        ],
        tasks=tasks, workers=workers, logging_dir=str(work / "logs3"),
    ).run()
    wall = time.perf_counter() - t0
    import pyarrow.dataset as ds

    out_rows = ds.dataset(str(work / "out"), format="parquet").count_rows() if (work / "out").exists() else 0
    per_step = []  # datatrove's own per-step timers (wall time inside each step, summed over tasks)
    for logs in ("logs1", "logs2", "logs3"):
        f = work / logs / "stats.json"
        if f.exists():
            for st in json.loads(f.read_text()):
                total = (st.get("time_stats") or {}).get("total")
                if total is not None:
                    per_step.append({"name": f"{logs}: {st.get('name')}", "total_s": round(float(total), 3)})
    return {"wall_s": wall, "docs_out": out_rows, "tasks": tasks, "per_step": per_step}


def _resiliparse_part(files: list[str]) -> dict[str, float]:
    """One worker of :func:`run_resiliparse_only`: process-time sums over its files' pages."""
    import pyarrow as pa
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    from pipeline.extract import decode_html
    from pipeline.readers import ReaderOptions, read_shard

    pt = time.process_time
    t = {"pages": 0, "parse_s": 0.0, "main_content_s": 0.0, "all_text_s": 0.0}
    for f in files:
        for item in read_shard(f, ReaderOptions()):
            if not isinstance(item, pa.Table):
                continue
            for body in item.column("html").to_pylist():
                page = decode_html(body)
                if not page or page.isspace():
                    continue
                t0 = pt()
                tree = HTMLTree.parse(page)
                t1 = pt()
                extract_plain_text(tree, main_content=True)
                t2 = pt()
                extract_plain_text(tree, main_content=False)
                t3 = pt()
                t["pages"] += 1
                t["parse_s"] += t1 - t0
                t["main_content_s"] += t2 - t1
                t["all_text_s"] += t3 - t2
    return t


def run_resiliparse_only(files: list[str], workers: int) -> dict[str, Any]:
    """The ceiling of the held-equal ratio: resiliparse's own ``HTMLTree.parse`` +
    ``extract_plain_text(main_content=True)`` (what both sides run on every page, with the
    options both use) timed alone, around nothing else, in ``workers`` processes like the
    pipelines' (so they share the cores the same way); plus ``main_content=False`` on the same
    tree, untimed by the ceiling, to show what the main-content pass costs. Reading and decoding
    are outside the timers."""
    from concurrent.futures import ProcessPoolExecutor

    parts = [files[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        res = list(ex.map(_resiliparse_part, parts))
    out: dict[str, Any] = {k: sum(r[k] for r in res) for k in res[0]}
    out["ceiling_cpu_s"] = out["parse_s"] + out["main_content_s"]
    out["wall_s"] = time.perf_counter() - t0
    out["docs_out"] = out["pages"]
    return out


def measured(func: str, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """``func`` (``run_assay`` / ``run_datatrove``) in a fresh process; ``cpu_s`` is the CPU of
    that process and every process it started (workers, forkserver, managers), see
    :mod:`bench._tree_cpu`. Start-up and imports are inside on both sides."""
    from bench._tree_cpu import run_measured

    r = run_measured(f"bench.pipeline:{func}", kwargs, env)
    r["cpu_s"] = r.pop("tree_cpu_s")
    return r


def _assay_status(out: Path) -> dict[str, tuple[str, str | None]]:
    """url -> (status, extracted text) from an assay run with ``write_dropped``."""
    import pyarrow.parquet as pq

    st: dict[str, tuple[str, str | None]] = {}
    for f in sorted((out / "shards").glob("*.parquet")):
        t = pq.read_table(f, columns=["url", "text"])
        for u, x in zip(t.column("url").to_pylist(), t.column("text").to_pylist()):
            st[u] = ("kept", x)
    from pipeline import schema

    for f in sorted((out / "dropped").glob("*.parquet")):
        t = pq.read_table(f)
        texts = t.column("text").to_pylist() if "text" in t.column_names else [None] * t.num_rows
        for u, r, x in zip(t.column("url").to_pylist(), t.column(schema.DROP_REASON).to_pylist(), texts):
            st.setdefault(u, (str(r), x))
    return st


def _datatrove_status(work: Path) -> dict[str, tuple[str, str | None]]:
    import glob
    import gzip

    import pyarrow.parquet as pq

    st: dict[str, tuple[str, str | None]] = {}
    for f in sorted(glob.glob(str(work / "out" / "*.parquet"))):
        t = pq.read_table(f, columns=["text", "metadata"]).to_pylist()
        for r in t:
            st[r["metadata"]["url"]] = ("kept", r["text"])
    for f in sorted(glob.glob(str(work / "mid" / "*.parquet"))):  # passed the filters, removed as dup
        for r in pq.read_table(f, columns=["text", "metadata"]).to_pylist():
            st.setdefault(r["metadata"]["url"], ("exact_duplicate", r["text"]))
    for name in ("lang", "gopher"):
        for f in sorted(glob.glob(str(work / "excluded" / name / "*.jsonl.gz"))):
            with gzip.open(f, "rt") as fh:
                for line in fh:
                    r = json.loads(line)
                    reason = r["metadata"].get("filter_reason") or name
                    st.setdefault(r["metadata"]["url"], (f"{name}:{reason}", r["text"]))
    return st


def _text_cause(ta: str | None, td: str | None) -> str:
    """How the two extracted texts of a page differ (the kept-set diff's categories)."""
    if td is None:
        return "datatrove: no text (not extracted: skipped or timed out)"
    if ta is None:
        return "assay: no text (not extracted)"
    if ta == td:
        return "same text (the filters decided differently)"
    if "HTTP/1." in td[:300] and "HTTP/1." not in ta[:300]:  # datatrove's WarcReader keeps the HTTP header block
        if td.endswith(ta) or ta in td:
            return "datatrove text = HTTP header block + assay's text"
        return "datatrove text starts with the HTTP header block, rest differs too"
    return "other text difference"


def explain_kept_difference(files: list[Path], tmp: Path, workers: int) -> dict[str, Any]:
    """Why the two sides keep different pages (equal-work settings), by diffing their outputs.

    Both run once more, untimed, recording every dropped page with its reason. For each page
    kept by one side only: the other side's reason, and whether the two extracted texts differ.
    For LID drops the score both sides' model gives each side's text is recomputed here.
    """
    run_assay([str(f) for f in files], str(tmp / "ex-assay"), workers, 1, None, write_dropped=True)
    a = _assay_status(tmp / "ex-assay")
    run_datatrove([str(f) for f in files], str(tmp / "ex-dt"), workers, "resiliparse", explain=True)
    d = _datatrove_status(tmp / "ex-dt")
    from collections import Counter

    import fasttext

    model = fasttext.load_model(_lid_model_path())

    def en(x: str | None) -> float:
        if not x:
            return 0.0
        labels, probs = model.predict(x.replace("\n", " "), k=-1)
        return float(dict(zip(labels, probs)).get("__label__en", 0.0))

    trans: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = {}
    text_differs: Counter[str] = Counter()
    causes: dict[str, Counter[str]] = {}
    for u in sorted(set(a) | set(d)):
        sa, ta = a.get(u, ("not read", None))
        sd, td = d.get(u, ("not extracted/read", None))
        if (sa == "kept") == (sd == "kept"):
            continue
        key = f"assay {sa} / datatrove {sd}"
        trans[key] += 1
        same = ta is not None and td is not None and ta == td
        text_differs[key] += 0 if same else 1
        causes.setdefault(key, Counter())[_text_cause(ta, td)] += 1
        if len(examples.setdefault(key, [])) < 3:
            examples[key].append({"url": u, "same_text": same, "len_assay": len(ta or ""),
                                  "len_datatrove": len(td or ""), "en_score_assay_text": round(en(ta), 4),
                                  "en_score_datatrove_text": round(en(td), 4)})
    return {
        "assay_kept": sum(v[0] == "kept" for v in a.values()),
        "datatrove_kept": sum(v[0] == "kept" for v in d.values()),
        "both_kept": sum(1 for u in a if a[u][0] == "kept" and d.get(u, ("",))[0] == "kept"),
        "only_one_side": dict(trans.most_common()),
        "of_which_extracted_text_differs": dict(text_differs),
        "text_cause": {k: dict(v.most_common()) for k, v in causes.items()},
        "examples": examples,
    }


def _print_kept(k: dict[str, Any]) -> None:
    print(f"\nkept-set diff (equal work): assay {k['assay_kept']}, datatrove {k['datatrove_kept']}, "
          f"both {k['both_kept']}")
    for key, v in k["only_one_side"].items():
        print(f"  {v:5d}  {key}  (extracted text differs in {k['of_which_extracted_text_differs'][key]})")
        for cause, c in k.get("text_cause", {}).get(key, {}).items():
            print(f"         {c:5d}  {cause}")
    print(json.dumps(k["examples"], indent=1)[:3000])


def _dump(path: str | None, res: dict[str, Any]) -> None:
    """The figures so far (a long run that is stopped keeps its finished pairs)."""
    if path:
        Path(path).write_text(json.dumps(res, indent=2))


def _pair(res: dict[str, Any], ours: str, theirs: str) -> None:
    a, d = res[ours], res[theirs]
    d["assay_speedup_wall"] = round(d["wall_s"] / a["wall_s"], 2)
    d["assay_speedup_cpu"] = round(d["cpu_s"] / a["cpu_s"], 2)
    d["compared_with"] = ours


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="assay bench pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(DEFAULT_INPUT),
                    help="folder of .warc.gz files (default: ../shared/data/warc; the 12,000-page corpus: "
                         "`assay bench warc_corpus`, then --input ~/.cache/assay/warc-corpus/warc)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes on both sides")
    ap.add_argument("--split", type=int, default=2,
                    help="assay's input.split for the as-shipped row (datatrove has no equivalent)")
    ap.add_argument("--datatrove-extractor", choices=["trafilatura", "resiliparse", "both", "none"], default="both",
                    help="none: assay's two rows only (no ratio; for a profile of newer code)")
    ap.add_argument("--shipped-files", type=int, default=0,
                    help="the as-shipped pair (assay as shipped vs datatrove + Trafilatura) reads only the "
                         "first N files, both sides (default: all)")
    ap.add_argument("--no-explain", action="store_true", help="skip the kept-set diff")
    ap.add_argument("--explain-only", action="store_true",
                    help="only the kept-set diff (untimed reruns of the equal-work pair), no timings")
    ap.add_argument("--repetition", action="store_true",
                    help="Gopher repetition before Gopher quality on both sides (the issue's pipeline); "
                         "adds an assay row with the word sharing off (ASSAY_SHARE_WORDS=0); needs --no-explain")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the ceiling probe (resiliparse's parse + extract_plain_text alone on the same pages)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.repetition and not (args.no_explain and not args.explain_only):
        raise SystemExit("--repetition: add --no-explain (the kept-set diff is for the default pipeline)")
    rp = {"repetition": True} if args.repetition else {}
    files = sorted(Path(args.input).glob("*.warc*"))
    if not files:
        raise SystemExit(f"no WARC files in {args.input}")
    shipped = files[: args.shipped_files] if args.shipped_files else files
    mb = sum(f.stat().st_size for f in files) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="assay-bench-"))
    fs, ss = [str(f) for f in files], [str(f) for f in shipped]
    extractors = {"both": ["resiliparse", "trafilatura"], "none": []}.get(args.datatrove_extractor,
                                                                        [args.datatrove_extractor])
    if args.explain_only:
        try:
            k = explain_kept_difference(files, tmp, args.workers)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _print_kept(k)
        _dump(args.json, {"files": len(files), "kept_difference": k})
        return {"kept_difference": k}
    try:
        res: dict[str, Any] = {"files": len(files), "input_mb_compressed": round(mb, 2), "workers": args.workers,
                               "shipped_files": len(shipped)}
        # untimed: fill numba's on-disk cache (LID, word-splitter and dedup kernels) once, so the
        # timed runs load compiled kernels as any second run does, instead of compiling them
        # (datatrove has no JIT to pay); both settings, on the smallest file
        warm = min(files, key=lambda f: f.stat().st_size)
        measured("run_assay", files=[str(warm)], out=str(tmp / "warm-eq"), workers=1, split=1, lid_max_chars=None,
                 **rp)
        measured("run_assay", files=[str(warm)], out=str(tmp / "warm-sh"), workers=1, split=1, lid_max_chars=10_000,
                 **rp)
        # equal work: one shard per file (= datatrove's one task per file), LID on the whole page;
        # each side in a fresh process, CPU over its whole process tree; pairs run back to back
        res["assay_equal"] = measured("run_assay", files=fs, out=str(tmp / "assay-eq"), workers=args.workers,
                                      split=1, lid_max_chars=None, **rp)
        if args.repetition:  # the same, each Gopher stage splitting the words itself
            import os

            res["assay_equal_split_twice"] = measured(
                "run_assay", env={**os.environ, "ASSAY_SHARE_WORDS": "0"}, files=fs,
                out=str(tmp / "assay-eq2"), workers=args.workers, split=1, lid_max_chars=None, **rp)
        if "resiliparse" in extractors:
            res["datatrove_resiliparse"] = measured("run_datatrove", files=fs, work=str(tmp / "dt-resiliparse"),
                                                    workers=args.workers, extractor="resiliparse", **rp)
            _pair(res, "assay_equal", "datatrove_resiliparse")
            if not args.no_ceiling:  # the same pages, resiliparse alone: the held-equal ratio's ceiling
                c = res["resiliparse_only"] = measured("run_resiliparse_only", files=fs, workers=args.workers)
                res["datatrove_resiliparse"]["ceiling"] = round(
                    res["datatrove_resiliparse"]["cpu_s"] / c["ceiling_cpu_s"], 2)
        _dump(args.json, res)
        # as shipped: input.split and LID on the first 10,000 characters
        res["assay_shipped"] = measured("run_assay", files=ss, out=str(tmp / "assay"), workers=args.workers,
                                        split=args.split, lid_max_chars=10_000, **rp)
        if "trafilatura" in extractors:
            res["datatrove_trafilatura"] = measured("run_datatrove", files=ss, work=str(tmp / "dt-trafilatura"),
                                                    workers=args.workers, extractor="trafilatura", **rp)
            _pair(res, "assay_shipped", "datatrove_trafilatura")
        _dump(args.json, res)
        if not args.no_explain and "resiliparse" in extractors:
            res["kept_difference"] = explain_kept_difference(files, tmp, args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    docs, docs_s = res["assay_equal"]["docs_in"], res["assay_shipped"]["docs_in"]
    res["pages"], res["shipped_pages"] = docs, docs_s
    print(f"\n{len(files)} WARC files, {docs} pages, {mb:.1f} MB compressed, {args.workers} workers each; "
          f"as-shipped pair on {len(shipped)} files, {docs_s} pages\n")
    print(f"{'pipeline':<50}{'pages':>7}{'shards':>7}{'wall s':>8}{'CPU s':>8}{'pages/CPU-s':>12}{'kept':>6}"
          f"{'ratio wall':>11}{'ratio CPU':>10}")
    rows = [("assay, equal work (LID whole page, split 1)", "assay_equal", docs)]
    if "assay_equal_split_twice" in res:
        rows.append(("assay, equal work, words split twice", "assay_equal_split_twice", docs))
    if "resiliparse" in extractors:
        rows.append(("datatrove + resiliparse (extractor held equal)", "datatrove_resiliparse", docs))
    rows.append((f"assay as shipped (LID 10k chars, split {args.split})", "assay_shipped", docs_s))
    if "trafilatura" in extractors:
        rows.append(("datatrove + Trafilatura (as shipped)", "datatrove_trafilatura", docs_s))
    for name, key, n in rows:
        r = res[key]
        r["pages_per_cpu_s"] = round(n / r["cpu_s"], 1)
        ratio = ""
        if "assay_speedup_wall" in r:
            ratio = f"{r['assay_speedup_wall']:>10.1f}x{r['assay_speedup_cpu']:>9.1f}x"
        print(f"{name:<50}{n:>7}{r.get('shards', r.get('tasks', '')):>7}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}"
              f"{n / r['cpu_s']:>12.1f}{r['docs_out']:>6}{ratio}")
    print("(wall: the pipeline call inside each process; CPU: that process and every process it started, "
          "start-up and imports included)")
    print("\nassay per stage (equal-work run; CPU-s summed over workers):")
    tot = sum((st.get("cpu_s") or 0.0) for st in res["assay_equal"]["per_stage"])
    for st in res["assay_equal"]["per_stage"]:
        cpu = st.get("cpu_s") or 0.0
        mbs = (st.get("bytes_in") or 0) / 1e6 / cpu if cpu else float("nan")
        print(f"  {st['name']:24s} in {st['docs_in']:>7} out {st['docs_out']:>7} CPU {cpu:7.2f} s "
              f"({100 * cpu / res['assay_equal']['cpu_s']:4.1f}% of the tree)  {mbs:8.1f} MB/CPU-s")
    print(f"  {'(outside the stages)':24s} CPU {res['assay_equal']['cpu_s'] - tot:7.2f} s: start-up, imports, "
          "WARC reading, Parquet writing, the exact-dedup reduce, the manifest")
    if "resiliparse_only" in res:
        c, d = res["resiliparse_only"], res["datatrove_resiliparse"]
        print(f"\nresiliparse alone on the same {c['pages']} pages ({args.workers} processes; CPU-s inside the timers): "
              f"HTMLTree.parse {c['parse_s']:.2f} + extract_plain_text(main_content=True) {c['main_content_s']:.2f} "
              f"= {c['ceiling_cpu_s']:.2f} (main_content=False on the same trees: {c['all_text_s']:.2f}; "
              f"process tree {c['cpu_s']:.1f})")
        print(f"held-equal ratio {d['assay_speedup_cpu']:.1f}x of a ceiling {d['ceiling']:.1f}x "
              f"(datatrove's tree {d['cpu_s']:.1f} CPU-s / resiliparse alone {c['ceiling_cpu_s']:.2f}); "
              f"assay outside resiliparse: {res['assay_equal']['cpu_s'] - c['ceiling_cpu_s']:.2f} CPU-s")
    for key in ("datatrove_resiliparse", "datatrove_trafilatura"):
        if res.get(key, {}).get("per_step"):
            print(f"\n{key} per step (datatrove's own timers: wall s inside each step, summed over tasks):")
            for st in res[key]["per_step"]:
                print(f"  {st['name']:40s} {st['total_s']:8.2f} s")
    if "kept_difference" in res:
        _print_kept(res["kept_difference"])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
