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


def run_assay(files: list[Path], out: Path, workers: int, split: int = 1) -> dict[str, Any]:
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    spec = PipelineSpec.from_dict({
        "name": "bench-pipeline",
        "input": {"paths": [str(f) for f in files], "split": split},
        "output": {"dir": str(out)},
        "execution": {"workers": workers},
        "stages": [
            {"kind": "extract.html", "engine": "resiliparse"},
            {"kind": "lid.fasttext"},
            {"kind": "filter.lang", "languages": ["en"], "min_score": 0.65},
            {"kind": "filter.gopher_quality"},
            {"kind": "dedup.exact"},
        ],
    })
    t0 = time.perf_counter()
    m = run_spec(spec, progress=False, workers=workers)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "docs_in": m["stats"]["docs_in"], "docs_out": m["totals"]["rows"]}


# -- datatrove side (module-level callables: its workers pickle them) -------------------------------


def _content(doc: Any) -> str:
    return doc.text


def _resiliparse_extractor() -> Any:
    from bench._dt_resiliparse import ResiliparseExtractor

    return ResiliparseExtractor()


def run_datatrove(files: list[Path], work: Path, workers: int, extractor: str) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import GopherQualityFilter, LanguageFilter
    from datatrove.pipeline.readers import ParquetReader, WarcReader
    from datatrove.pipeline.writers import ParquetWriter

    inp = work / "in"
    inp.mkdir(parents=True)
    for f in files:
        (inp / f.name).symlink_to(f.resolve())
    cfg = ExactDedupConfig(content_getter=_content)
    lang_filter = LanguageFilter(languages=["en"], language_threshold=0.65)
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
            GopherQualityFilter(),
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
    return {"wall_s": wall, "docs_out": out_rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="assay bench pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(DEFAULT_INPUT), help="folder of .warc.gz files (default: ../shared/data/warc)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes on both sides")
    ap.add_argument("--split", type=int, default=2,
                    help="assay's input.split: each file read as this many shards (datatrove has no equivalent)")
    ap.add_argument("--datatrove-extractor", choices=["trafilatura", "resiliparse", "both"], default="both")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    files = sorted(Path(args.input).glob("*.warc*"))
    if not files:
        raise SystemExit(f"no WARC files in {args.input}")
    mb = sum(f.stat().st_size for f in files) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="assay-bench-"))
    try:
        res: dict[str, Any] = {"files": len(files), "input_mb_compressed": round(mb, 2), "workers": args.workers}
        res["assay"] = run_assay(files, tmp / "assay", args.workers, args.split)
        res["assay_split1"] = run_assay(files, tmp / "assay1", args.workers, 1)
        docs = res["assay"]["docs_in"]
        extractors = ["resiliparse", "trafilatura"] if args.datatrove_extractor == "both" else [args.datatrove_extractor]
        for e in extractors:
            res[f"datatrove_{e}"] = run_datatrove(files, tmp / f"dt-{e}", args.workers, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a = res["assay"]["wall_s"]
    print(f"\n{len(files)} WARC files, {docs} pages, {mb:.1f} MB compressed, {args.workers} workers each\n")
    print(f"{'pipeline':<34}{'wall s':>9}{'pages/s':>10}{'MB/s':>8}{'kept':>7}{'assay is':>11}")
    rows = [(f"assay (resiliparse, split {args.split})", res["assay"]), ("assay (resiliparse, split 1)", res["assay_split1"])]
    rows += [(f"datatrove ({e})", res[f"datatrove_{e}"]) for e in extractors]
    for name, r in rows:
        w = r["wall_s"]
        ratio = f"{w / a:.1f}x" if name.startswith("datatrove") else ""
        print(f"{name:<34}{w:>9.1f}{docs / w:>10.1f}{mb / w:>8.2f}{r['docs_out']:>7}{ratio:>11}")
        r["docs_per_s"] = round(docs / w, 1)
        r["mb_per_s"] = round(mb / w, 3)
        if name.startswith("datatrove"):
            r["assay_speedup"] = round(w / a, 2)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
