"""``assay bench extract``: which HTML extractor to use, measured on real pages.

The reference is ``main_text`` in ``html_pages_sample.jsonl.zst``: each doc generator's own
content container with its navigation/sidebar/footer removed (Sphinx, DocBook-XSL, Publican,
LibreOffice help, rustdoc, mdBook, Scribble...). The raw HTML of those pages comes from the
WARC files (``warc/debian-docs-*.warc.gz``), joined by URL: 455 pages have both.

Quality is bag-of-words overlap with the reference (lower-cased ``\\w+`` tokens, multiset
intersection): precision = how much of the output is main text, recall = how much of the main
text came out. Reported per page and averaged (macro), and pooled over all pages (micro).
Speed is pages per CPU-second (``time.process_time``, robust to a loaded machine) for decode +
extract, the whole per-page work of ``extract.html``.

    python -m bench.extract [--data DIR] [--limit N] [--out docs/benchmarks/extract.json]
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import DEFAULT_DATA, add_out, bench_parser, jsonl_zst_lines, write_json
_WORD = re.compile(r"\w+")


def load_pages(data_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Pages with both raw HTML (from the WARCs) and a ``main_text`` reference, by URL."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    refs: dict[str, dict[str, Any]] = {}
    for line in jsonl_zst_lines(data_dir / "html_pages_sample.jsonl.zst"):
        d = json.loads(line)
        refs[d["url"]] = d
    pages: list[dict[str, Any]] = []
    for warc in sorted((data_dir / "warc").glob("*.warc.gz")):
        with open(warc, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                url = rec.headers.get("WARC-Target-URI")
                ref = refs.get(url or "")
                if ref is None:
                    continue
                pages.append(
                    {
                        "url": url,
                        "html": rec.reader.read(),
                        "main_text": ref["main_text"],
                        "full_text": ref["text"],
                        "generator": ref["generator"],
                        "lang": ref["lang"],
                    }
                )
                if limit and len(pages) >= limit:
                    return pages
    return pages


def bag(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def overlap(pred: str, ref: str) -> tuple[int, int, int]:
    """(common, predicted, reference) word counts of a bag-of-words comparison."""
    p, r = bag(pred), bag(ref)
    return sum((p & r).values()), sum(p.values()), sum(r.values())


def prf(common: int, n_pred: int, n_ref: int) -> tuple[float, float, float]:
    precision = common / n_pred if n_pred else (1.0 if n_ref == 0 else 0.0)
    recall = common / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def engines() -> dict[str, Callable[[bytes], str]]:
    """Name → function(raw bytes) → text, each doing the full decode + extract."""
    from pipeline.extract import HtmlExtractStage, decode_html

    def stage(**config: Any) -> Callable[[bytes], str]:
        st = HtmlExtractStage(config)
        st.setup()
        return lambda b: st.extract_one(b)[0] or ""

    def trafilatura_default(b: bytes) -> str:
        from trafilatura import extract

        return extract(decode_html(b), include_comments=False) or ""

    return {
        "extract.html resiliparse, main_content=True (default)": stage(),
        "extract.html resiliparse, main_content=False": stage(main_content=False),
        "extract.html trafilatura (datatrove/FineWeb settings)": stage(engine="trafilatura"),
        "trafilatura defaults (recall), no comments": trafilatura_default,
    }


def evaluate(pages: list[dict[str, Any]], fn: Callable[[bytes], str]) -> dict[str, Any]:
    outs: list[str] = []
    t0 = time.process_time()
    for p in pages:
        outs.append(fn(p["html"]))
    elapsed = time.process_time() - t0
    per_page = []
    pooled = [0, 0, 0]
    empty = 0
    by_gen: dict[str, list[float]] = {}
    for p, out in zip(pages, outs, strict=True):
        c = overlap(out, p["main_text"])
        for i in range(3):
            pooled[i] += c[i]
        pr = prf(*c)
        per_page.append(pr)
        by_gen.setdefault(p["generator"], []).append(pr[2])
        empty += not out.strip()
    n = len(per_page)
    return {
        "pages": n,
        "pages_per_s": n / elapsed if elapsed else float("inf"),
        "macro_precision": sum(x[0] for x in per_page) / n,
        "macro_recall": sum(x[1] for x in per_page) / n,
        "macro_f1": sum(x[2] for x in per_page) / n,
        "micro_f1": prf(*pooled)[2],
        "empty_outputs": empty,
        # every doc generator (Sphinx, DocBook, LibreOffice help...) weighs the same, so the
        # 262 DocBook pages (little boilerplate) do not decide alone
        "generator_balanced_f1": sum(sum(v) / len(v) for v in by_gen.values()) / len(by_gen),
        "f1_by_generator": {g: round(sum(v) / len(v), 3) for g, v in sorted(by_gen.items())},
    }


def run(data_dir: Path = DEFAULT_DATA, limit: int | None = None) -> dict[str, Any]:
    pages = load_pages(data_dir, limit)
    results: dict[str, Any] = {
        "pages": len(pages),
        "generators": dict(Counter(p["generator"] for p in pages)),
    }
    # no boilerplate removal at all: the reference's own "all visible text"
    base = [prf(*overlap(p["full_text"], p["main_text"])) for p in pages]
    results["all_visible_text_f1"] = sum(x[2] for x in base) / len(base)
    results["all_visible_text_precision"] = sum(x[0] for x in base) / len(base)
    results["engines"] = {}
    for name, fn in engines().items():
        fn(pages[0]["html"])  # warm up imports
        results["engines"][name] = evaluate(pages, fn)
    return results


def format_table(results: dict[str, Any]) -> str:
    lines = [
        "| engine | macro P | macro R | macro F1 | generator-balanced F1 | micro F1 | empty "
        "| pages/CPU-s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["engines"].items():
        lines.append(
            f"| {name} | {r['macro_precision']:.3f} | {r['macro_recall']:.3f} "
            f"| {r['macro_f1']:.3f} "
            f"| {r['generator_balanced_f1']:.3f} | {r['micro_f1']:.3f} | {r['empty_outputs']} "
            f"| {r['pages_per_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("assay bench extract", __doc__)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N pages")
    add_out(ap)
    args = ap.parse_args(argv)
    results = run(args.data, args.limit)
    print(f"{results['pages']} pages; generators: {results['generators']}")
    print(
        f"all visible text (no boilerplate removal): precision "
        f"{results['all_visible_text_precision']:.3f}, F1 {results['all_visible_text_f1']:.3f}"
    )
    print(format_table(results))
    for name, r in results["engines"].items():
        print(f"{name}: F1 by generator {r['f1_by_generator']}")
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
