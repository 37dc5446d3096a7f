"""The snapshot report: one self-contained HTML page drawn with Plotly (its JS bundled inline).

    assay report runs/x --out x.html          GET /v1/snapshots/{id}/report

Works offline: ``plotly.min.js`` comes from the ``plotly`` wheel and is inlined; no CDN. The
page shows the funnel of documents per stage with drop reasons, histograms of document length,
quality scores, SoftDedup weights and language scores, dedup cluster sizes, languages, the
shard table and the lineage. Figures are computed here (numpy histograms over at most
``max_rows`` sampled rows, read column by column from the shards), so the page stays small
whatever the snapshot's size. ``window.assayReport`` tells a test how many plots drew.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def _count(n: Any) -> str:
    """A count, or "n/a" where the manifest has none (tokens without an output.tokenizer)."""
    return "n/a" if n is None else f"{int(n):,}"


def plotly_js() -> str:
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def _sample_columns(folder: Path, manifest: dict[str, Any], max_rows: int) -> dict[str, np.ndarray | list[Any]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = [c["name"] for c in manifest.get("schema", [])]
    numeric = [n for n in names if n.startswith("quality.") or n in ("weight", "lang_score", "dedup.cluster_size")]
    want = {"text", "lang", *numeric} & set(names)
    out: dict[str, list[Any]] = {n: [] for n in want}
    out["length"] = []
    rows = 0
    for s in manifest.get("shards", []):
        if rows >= max_rows:
            break
        pf = pq.ParquetFile(folder / s["path"])
        for g in range(pf.num_row_groups):
            if rows >= max_rows:
                break
            cols = [c for c in want if c in pf.schema_arrow.names]
            t = pf.read_row_group(g, columns=cols).slice(0, max_rows - rows)
            rows += t.num_rows
            for c in cols:
                if c == "text":
                    out["length"].extend(pc.utf8_length(t.column("text")).to_pylist())
                else:
                    out[c].extend(t.column(c).to_pylist())
    out.pop("text", None)
    return {k: (np.array([x for x in v if x is not None], dtype=float) if k != "lang" else v) for k, v in out.items()}


def _hist(values: np.ndarray, title: str, xlabel: str, log_x: bool = False) -> dict[str, Any] | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    if log_x:
        v = np.log10(np.maximum(v, 1))
    counts, edges = np.histogram(v, bins=min(40, max(5, int(np.sqrt(v.size)))))
    centers = (edges[:-1] + edges[1:]) / 2
    x = (10 ** centers).round(1).tolist() if log_x else centers.round(4).tolist()
    return {"data": [{"type": "bar", "x": x, "y": counts.tolist(), "marker": {"color": "#4C78A8"}}],
            "layout": {"title": {"text": title}, "xaxis": {"title": {"text": xlabel}, "type": "log" if log_x else "linear"},
                       "yaxis": {"title": {"text": "documents"}}, "bargap": 0.05, "height": 320,
                       "margin": {"t": 40, "b": 50, "l": 60, "r": 20}}}


def build_figures(folder: Path, manifest: dict[str, Any], stats: dict[str, Any] | None, max_rows: int = 50_000) -> dict[str, Any]:
    figs: dict[str, Any] = {}
    stages = (stats or {}).get("stages") or [
        {"name": k, **v} for k, v in manifest.get("stats", {}).get("stages", {}).items()]
    if stages:
        names = [s["name"] for s in stages]
        figs["funnel"] = {"data": [{"type": "funnel", "y": names, "x": [s.get("docs_out", 0) for s in stages],
                                    "textinfo": "value+percent initial"}],
                          "layout": {"title": {"text": "Documents kept after each stage"}, "height": 60 + 45 * len(names),
                                     "margin": {"l": 160, "t": 40, "b": 30, "r": 20}}}
        reasons = sorted({r for s in stages for r in (s.get("dropped") or {})})
        if reasons:
            figs["drops"] = {"data": [{"type": "bar", "name": r, "x": names, "y": [(s.get("dropped") or {}).get(r, 0) for s in stages]}
                                      for r in reasons],
                             "layout": {"title": {"text": "Dropped documents by stage and reason"}, "barmode": "stack",
                                        "height": 360, "yaxis": {"title": {"text": "documents"}}}}
    cols = _sample_columns(folder, manifest, max_rows)
    if len(cols.get("length", [])):
        figs["length"] = _hist(cols["length"], "Document length", "characters (log scale)", log_x=True)
    for name, arr in cols.items():
        if name.startswith("quality."):
            figs[f"hist:{name}"] = _hist(arr, f"Quality score {name}", name)
    if "weight" in cols:
        figs["weight"] = _hist(cols["weight"], "SoftDedup weights", "weight")
    if "lang_score" in cols:
        figs["lang_score"] = _hist(cols["lang_score"], "Language-ID confidence", "lang_score")
    if "dedup.cluster_size" in cols and len(cols["dedup.cluster_size"]):
        sizes, counts = np.unique(cols["dedup.cluster_size"].astype(int), return_counts=True)
        figs["clusters"] = {"data": [{"type": "bar", "x": sizes.tolist(), "y": counts.tolist(), "marker": {"color": "#F58518"}}],
                            "layout": {"title": {"text": "Dedup cluster sizes"}, "xaxis": {"title": {"text": "cluster size"}, "type": "log"},
                                       "yaxis": {"title": {"text": "documents"}, "type": "log"}, "height": 320}}
    if "lang" in cols and cols["lang"]:
        langs, counts = np.unique(np.array([str(x) for x in cols["lang"] if x is not None]), return_counts=True)
        order = np.argsort(-counts)[:25]
        figs["langs"] = {"data": [{"type": "bar", "x": langs[order].tolist(), "y": counts[order].tolist(), "marker": {"color": "#54A24B"}}],
                         "layout": {"title": {"text": "Languages"}, "height": 320, "yaxis": {"title": {"text": "documents"}}}}
    return {k: v for k, v in figs.items() if v is not None}


def render_report(folder: str | Path, lineage: dict[str, Any] | None = None,
                  scrub: Callable[[str], str] | None = None, max_rows: int = 50_000) -> str:
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    stats_path = folder / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    figs = build_figures(folder, manifest, stats, max_rows)
    esc = html.escape
    t = manifest["totals"]
    st = manifest.get("stats", {})
    shard_rows = "".join(
        f"<tr><td>{i}</td><td>{esc(Path(s['path']).name)}</td><td>{s['rows']:,}</td><td>{s['bytes']:,}</td>"
        f"<td>{_count(s.get('tokens'))}</td><td>{esc(str(s.get('phase') or ''))}</td><td><code>{esc(s['sha256'][:16])}…</code></td></tr>"
        for i, s in enumerate(manifest.get("shards", [])[:2000]))
    lin = lineage or {"parents": manifest.get("parents", []), "children": [], "job_id": None}
    parents = ", ".join(f"<code>{esc(p)}</code>" for p in lin.get("parents", [])) or "none"
    children = ", ".join(f"<code>{esc(p)}</code>" for p in lin.get("children", [])) or "none"
    spec_text = json.dumps(manifest.get("spec", {}), indent=1)
    if scrub is not None:
        spec_text = scrub(spec_text)
    divs = "".join(f'<div class="plot" id="fig-{i}"></div>' for i in range(len(figs)))
    fig_json = json.dumps(list(figs.values())).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>assay snapshot {esc(manifest['snapshot_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1100px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}} th{{background:#f4f4f4}} .plot{{margin:12px 0}}
pre{{background:#f7f7f7;padding:8px;max-height:300px;overflow:auto;font-size:12px}}</style>
<script>window.assayReport={{errors:[],plots:0,expected:{len(figs)}}};
window.addEventListener('error',function(e){{window.assayReport.errors.push(String(e.message))}});
(function(){{var orig=console.error;console.error=function(){{window.assayReport.errors.push(Array.prototype.join.call(arguments,' '));return orig.apply(console,arguments)}}}})();</script>
<script>{plotly_js()}</script></head><body>
<h1>Snapshot <code>{esc(manifest['snapshot_id'])}</code></h1>
<p><b>{esc(str(manifest.get('name', '')))}</b> · assay {esc(str(manifest.get('code_version', '')))} ·
{t['rows']:,} documents in {t['shards']} shard(s) · {t['bytes'] / 1e6:.2f} MB · {_count(t.get('tokens'))} tokens</p>
<p>in {st.get('docs_in', 0):,} = kept {st.get('kept', 0):,} + dropped {st.get('dropped', 0):,} + quarantined {st.get('quarantined', 0):,}</p>
<h2>Plots</h2>{divs}
<h2>Shards</h2><table id="shards"><tr><th>#</th><th>file</th><th>rows</th><th>bytes</th><th>tokens</th><th>phase</th><th>sha256</th></tr>{shard_rows}</table>
<h2>Lineage</h2><p>parents: {parents}</p><p>children: {children}</p>
<p>job: {esc(str(lin.get('job_id') or '-'))} · spec hash <code>{esc(manifest.get('spec_hash', '')[:16])}</code></p>
<pre>{esc(spec_text)}</pre>
<script>
(function(){{
  var figs = {fig_json};
  var done = [];
  figs.forEach(function(f, i){{
    done.push(Plotly.newPlot('fig-' + i, f.data, f.layout, {{displaylogo:false, responsive:true, staticPlot:false}})
      .then(function(){{ window.assayReport.plots += 1; }}));
  }});
  Promise.all(done).then(function(){{
    var marker = document.createElement('div'); marker.id = 'assay-report-done';
    marker.setAttribute('data-plots', String(window.assayReport.plots));
    marker.setAttribute('data-errors', String(window.assayReport.errors.length));
    marker.setAttribute('data-points', String(document.querySelectorAll('.plot .point, .plot .bars path, .plot .funnel path').length));
    var per = []; document.querySelectorAll('.plot').forEach(function(d){{ per.push(d.querySelectorAll('.trace path').length); }});
    marker.setAttribute('data-marks-per-plot', per.join(','));
    document.body.appendChild(marker);
  }});
}})();
</script></body></html>
"""
