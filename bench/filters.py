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
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


def load_docs(data_dir: Path, n_raw: int, n_pages: int, seed: int = 0) -> list[tuple[str, str]]:
    """(origin, text) pairs: a random sample of the raw corpus plus extracted WARC pages."""
    import zstandard

    docs: list[tuple[str, str]] = []
    if n_raw:
        with open(data_dir / "pretrain_raw.jsonl.zst", "rb") as f:
            lines = io.TextIOWrapper(
                zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"
            )
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


def _ours(name: str) -> Callable[[str], tuple[str | None, str | None]]:
    from pipeline.filters import heuristics as h

    if name == "c4":
        stage_c4 = h.C4QualityStage()
        return stage_c4.judge
    stage = {
        "gopher_quality": h.GopherQualityStage,
        "gopher_repetition": h.GopherRepetitionStage,
        "fineweb": h.FineWebQualityStage,
    }[name]()
    return lambda text: (stage.judge(text), None)


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
    from pipeline.filters import heuristics, words

    words.english_splitter().cache.clear()
    heuristics._chunk_stats.cache.clear()
    heuristics._chunk_stats.tokens.clear()


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
    results: dict[str, Any] = {
        "docs": len(texts),
        "chars": chars,
        "origins": dict(Counter(origins)),
        "filters": {},
    }
    # warm imports (spaCy model build, our rules) outside the timings
    _datatrove("gopher_quality")("warm up the tokenizer.")
    _ours("gopher_quality")("warm up the tokenizer.")

    for name in FILTERS:
        dt, ours = _datatrove(name), _ours(name)
        _reset_datatrove_cache()
        t0 = time.process_time()
        ref = [dt(t) for t in texts]
        t_dt = time.process_time() - t0
        _reset_caches()
        t0 = time.process_time()
        got = [ours(t) for t in texts]
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
            "speedup": t_dt / t_ours,
        }

    # all four per document, as a pipeline runs them
    dts = [_datatrove(n) for n in FILTERS]
    ours_all = [_ours(n) for n in FILTERS]
    _reset_datatrove_cache()
    t0 = time.process_time()
    for t in texts:
        for f in dts:
            f(t)
    t_dt = time.process_time() - t0
    _reset_caches()
    t0 = time.process_time()
    for t in texts:
        for f in ours_all:
            f(t)
    t_ours = time.process_time() - t0
    results["chained"] = {
        "datatrove_docs_per_s": len(texts) / t_dt,
        "fast_docs_per_s": len(texts) / t_ours,
        "speedup": t_dt / t_ours,
    }
    return results


def format_table(results: dict[str, Any]) -> str:
    lines = [
        "| filter | decisions agree | same reason | datatrove docs/CPU-s | fast docs/CPU-s "
        "| speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["filters"].items():
        lines.append(
            f"| {name} | {100 * r['decision_agreement']:.2f}% | {100 * r['reason_agreement']:.2f}% "
            f"| {r['datatrove_docs_per_s']:.0f} | {r['fast_docs_per_s']:.0f} "
            f"| {r['speedup']:.1f}× |"
        )
    c = results["chained"]
    lines.append(
        f"| all four, per doc | | | {c['datatrove_docs_per_s']:.0f} | {c['fast_docs_per_s']:.0f} "
        f"| {c['speedup']:.1f}× |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="assay bench filters", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--raw", type=int, default=2000, help="documents sampled from pretrain_raw")
    ap.add_argument("--pages", type=int, default=1500, help="WARC pages, extracted")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    results = run(args.data, args.raw, args.pages, args.seed)
    print(f"{results['docs']} docs ({results['origins']}), {results['chars'] / 1e6:.1f} M chars")
    print(format_table(results))
    for name, r in results["filters"].items():
        line = f"{name}: disagreements {r['disagreements'] or 'none'}"
        if name == "c4":
            line += f"; kept texts identical {100 * r['output_text_identical']:.2f}%"
        print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
