"""`assay bench datajuicer`: assay vs Data-Juicer's equivalent text operators, same docs, same run.

Data-Juicer (``py-data-juicer==1.6.1``) has no WARC reader or HTML extractor, so both sides get
the same extracted pages: the WARC corpus run once through assay's ``extract.html`` (untimed
preparation), written as JSONL ``{"id", "text"}``. Then each side runs as a whole command in a
fresh process (``dj-process --config`` in its own venv, ``assay run`` in the project's), with
the same worker count; CPU-seconds cover each command's whole process tree
(:mod:`bench._tree_cpu`), start-up included.

Two comparisons, both on the same docs:

- **lid**: language ID alone (the same ``lid.176`` model, keep English ≥ 0.65). Data-Juicer's
  ``language_id_score_filter`` vs assay's ``lid.fasttext`` + ``filter.lang`` (whole page).
  The same work, up to Data-Juicer lower-casing the text before predicting.
- **chain**: LID → quality → repetition → exact dedup with each tool's own operators:
  Data-Juicer's ``language_id_score_filter``, ``words_num_filter`` (50..100,000),
  ``alphanumeric_filter``, ``stopwords_filter`` (Gopher's 8 stop words), ``word_repetition_filter``,
  ``document_deduplicator`` vs assay's ``lid.fasttext``, ``filter.lang``,
  ``filter.gopher_quality``, ``filter.gopher_repetition``, ``dedup.exact``. Equivalent in
  purpose, not in rules: the kept counts differ and are reported, not compared.

Data-Juicer runs offline: its fastText model path is the same ``lid.176.ftz`` (linked as
``lid.176.bin`` in a private models cache), its stop words come from a JSON file written here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DJ_VENV = REPO / ".venv-dj"
GOPHER_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


def extract_docs(warc_dir: Path, out_jsonl: Path, workers: int, max_files: int = 0) -> int:
    """The shared input: assay's extract.html over the WARC files, as JSONL (untimed)."""
    import pyarrow.parquet as pq

    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    files = sorted(warc_dir.glob("*.warc*"))
    if max_files:
        files = files[:max_files]
    snap = out_jsonl.parent / "extracted"
    spec = PipelineSpec.from_dict({
        "name": "bench-dj-extract",
        "input": {"paths": [str(f) for f in files]},
        "output": {"dir": str(snap)},
        "execution": {"workers": workers},
        "stages": [{"kind": "extract.html", "engine": "resiliparse"}],
    })
    run_spec(spec, progress=False, workers=workers)
    n = 0
    with open(out_jsonl, "w") as fh:
        for f in sorted((snap / "shards").glob("*.parquet")):
            t = pq.read_table(f, columns=["doc_id", "text"])
            for i, x in zip(t.column("doc_id").to_pylist(), t.column("text").to_pylist()):
                fh.write(json.dumps({"id": i, "text": x}) + "\n")
                n += 1
    shutil.rmtree(snap, ignore_errors=True)
    return n


def _dj_config(kind: str, inp: Path, out: Path, work: Path, workers: int) -> Path:
    ops: list[dict[str, Any]] = [{"language_id_score_filter": {"lang": "en", "min_score": 0.65}}]
    if kind == "chain":
        stop_dir = work / "stopwords"
        stop_dir.mkdir(exist_ok=True)
        (stop_dir / "gopher_stopwords.json").write_text(json.dumps({"en": GOPHER_STOP_WORDS}))
        ops += [
            {"words_num_filter": {"lang": "en", "min_num": 50, "max_num": 100_000}},
            {"alphanumeric_filter": {"min_ratio": 0.25}},
            {"stopwords_filter": {"lang": "en", "min_ratio": 0.01, "stopwords_dir": str(stop_dir)}},
            {"word_repetition_filter": {"lang": "en", "rep_len": 10, "max_ratio": 0.5}},
            {"document_deduplicator": {"lowercase": False, "ignore_non_character": False}},
        ]
    import yaml

    cfg = {
        "project_name": f"assay-bench-{kind}",
        "dataset_path": str(inp),
        "export_path": str(out),
        "np": workers,
        "text_keys": "text",
        "use_cache": False,
        "open_tracer": False,
        "process": ops,
    }
    p = work / f"dj-{kind}.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _assay_spec(kind: str, inp: Path, out: Path, work: Path, workers: int) -> Path:
    stages: list[dict[str, Any]] = [
        {"kind": "lid.fasttext", "max_chars": None},
        {"kind": "filter.lang", "languages": ["en"], "min_score": 0.65},
    ]
    if kind == "chain":
        stages += [{"kind": "filter.gopher_quality"}, {"kind": "filter.gopher_repetition"}, {"kind": "dedup.exact"}]
    spec = {"name": f"bench-dj-{kind}", "input": {"paths": [str(inp)]}, "output": {"dir": str(out)},
            "execution": {"workers": workers}, "stages": stages}
    p = work / f"assay-{kind}.json"
    p.write_text(json.dumps(spec))
    return p


_ASSAY_RUN = ("import json, sys; from pipeline.run import run_spec; from pipeline.spec import PipelineSpec; "
              "run_spec(PipelineSpec.from_dict(json.load(open(sys.argv[1]))), progress=False)")


def _count_jsonl(path: Path) -> int:
    if path.is_dir():
        return sum(_count_jsonl(f) for f in path.glob("*.jsonl"))
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="assay bench datajuicer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(REPO / ".." / "shared" / "data" / "warc"), help="folder of WARC files")
    ap.add_argument("--max-files", type=int, default=0, help="only the first N WARC files")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default="lid,chain")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    dj_python = DJ_VENV / "bin" / "python"
    if not dj_python.exists():
        raise SystemExit(f"Data-Juicer's venv {DJ_VENV} is missing: run `make venv-dj`")
    from bench._tree_cpu import run_cmd_measured
    from pipeline.filters.lid import default_model_path

    work = Path(tempfile.mkdtemp(prefix="assay-bench-dj-"))
    res: dict[str, Any] = {"workers": args.workers}
    try:
        inp = work / "docs.jsonl"
        res["docs"] = extract_docs(Path(args.input), inp, args.workers, args.max_files)
        res["input_mb"] = round(inp.stat().st_size / 1e6, 2)
        models = work / "dj-models"
        models.mkdir()
        (models / "lid.176.bin").symlink_to(default_model_path())
        dj_env = dict(os.environ, DATA_JUICER_MODELS_CACHE=str(models), DATA_JUICER_CACHE_HOME=str(work / "dj-home"),
                      HF_DATASETS_CACHE=str(work / "hf"), HF_HUB_OFFLINE="1", PATH=f"{DJ_VENV / 'bin'}:{os.environ['PATH']}")
        dj_env.pop("PYTHONPATH", None)
        a_env = dict(os.environ, PYTHONPATH=str(REPO))
        import sys

        for kind in args.kinds.split(","):
            r: dict[str, Any] = {}
            spec = _assay_spec(kind, inp, work / f"assay-{kind}", work, args.workers)
            # `assay run` reads TOML, which has no null for max_chars: the same call, from JSON
            r["assay"] = run_cmd_measured([sys.executable, "-c", _ASSAY_RUN, str(spec)], a_env)
            r["assay"]["kept"] = json.loads((work / f"assay-{kind}" / "manifest.json").read_text())["totals"]["rows"]
            cfg = _dj_config(kind, inp, work / f"dj-{kind}" / "out.jsonl", work, args.workers)
            r["datajuicer"] = run_cmd_measured([str(DJ_VENV / "bin" / "dj-process"), "--config", str(cfg)], dj_env,
                                               cwd=work)
            r["datajuicer"]["kept"] = _count_jsonl(work / f"dj-{kind}" / "out.jsonl")
            for side in ("assay", "datajuicer"):
                r[side].pop("stdout", None)
                r[side]["stderr"] = r[side]["stderr"][-300:]
            r["ratio_cpu"] = round(r["datajuicer"]["cpu_s"] / r["assay"]["cpu_s"], 2)
            r["ratio_wall"] = round(r["datajuicer"]["wall_s"] / r["assay"]["wall_s"], 2)
            res[kind] = r
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{res['docs']} extracted pages ({res['input_mb']} MB JSONL), {args.workers} workers each, "
          "whole commands in fresh processes\n")
    print(f"{'comparison':<8}{'side':<12}{'wall s':>8}{'CPU s':>8}{'kept':>7}{'ratio wall':>11}{'ratio CPU':>10}")
    for kind in args.kinds.split(","):
        r = res[kind]
        for side in ("assay", "datajuicer"):
            s = r[side]
            tail = f"{r['ratio_wall']:>10.1f}x{r['ratio_cpu']:>9.1f}x" if side == "datajuicer" else ""
            print(f"{kind:<8}{side:<12}{s['wall_s']:>8.1f}{s['cpu_s']:>8.1f}{s['kept']:>7}{tail}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
