"""The snapshot report renders in a real headless Chromium: every plot draws with data, no console
errors, no network (Plotly is inlined from the plotly wheel)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.pipeline.svc_util import auth, cli, wait_job, write_inputs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory, raw_docs) -> Path:
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    tmp = tmp_path_factory.mktemp("report")
    crawl = write_inputs(tmp / "crawl", raw_docs[:300], files=2, per_file=150)
    spec = PipelineSpec.from_dict({
        "name": "report-demo", "input": {"paths": [str(crawl)]}, "output": {"dir": str(tmp / "snap")},
        "stages": [{"kind": "lid.fasttext"}, {"kind": "filter.gopher_quality"},
                   {"kind": "dedup.minhash", "mode": "annotate"}, {"kind": "dedup.softdedup"}],
    })
    run_spec(spec, progress=False)
    return tmp / "snap"


def _render_in_chromium(html_file: Path, tmp: Path) -> tuple[str, str]:
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--proxy-server=127.0.0.1:9",  # no network at all
         f"--user-data-dir={tmp / 'chrome-profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=20000", "--dump-dom", html_file.as_uri()],
        capture_output=True, text=True, timeout=120)
    return out.stdout, out.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/apt-packages.txt)")
def test_report_plots_render_in_headless_chromium(snapshot: Path, tmp_path: Path):
    html_file = tmp_path / "report.html"
    r = cli("report", str(snapshot), "--out", str(html_file))
    assert "self-contained" in r.stdout
    page = html_file.read_text()
    assert "<script src=" not in page and "<link " not in page  # nothing fetched from anywhere
    dom, log = _render_in_chromium(html_file, tmp_path)
    m = re.search(r'id="assay-report-done"[^>]*data-plots="(\d+)"[^>]*data-errors="(\d+)"[^>]*data-points="(\d+)"', dom)
    assert m, f"the report's scripts did not finish; chromium said: {log[-2000:]}"
    plots, errors, points = (int(x) for x in m.groups())
    expected = len(re.findall(r'class="plot" id="fig-', page))
    # funnel, drops, length, weight, lang_score, clusters, languages
    assert expected >= 7 and plots == expected and errors == 0
    assert points > 50  # bars and funnel segments drawn from the data
    per_plot = re.search(r'data-marks-per-plot="([\d,]*)"', dom).group(1).split(",")
    assert len(per_plot) == expected and all(int(n) > 0 for n in per_plot), per_plot  # no empty plot
    assert dom.count('class="main-svg"') >= expected
    for title in ("Documents kept after each stage", "Dropped documents by stage and reason", "Dedup cluster sizes",
                  "SoftDedup weights", "Languages", "Document length"):
        assert title in dom, title
    console = [ln for ln in log.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == [], console  # the page logs nothing: no errors, no warnings
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["shards"][0]["sha256"][:16] in dom  # the shard table


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_over_http_and_the_index_page(tmp_path: Path, raw_docs):
    from fastapi.testclient import TestClient

    from pipeline.service import create_app

    crawl = write_inputs(tmp_path / "crawl", raw_docs[:100], per_file=100)
    app = create_app(tmp_path / "svc", [crawl])
    _, tok = app.state.catalog.create_token("t", "submit")
    h = auth(tok)
    with TestClient(app) as c:
        jid = c.post("/v1/jobs", json={"name": "r", "input": {"paths": ["."]}, "stages": [{"kind": "dedup.exact"}]},
                     headers=h).json()["id"]
        sid = wait_job(c.get, jid, h)["snapshot_id"]
        r = c.get(f"/v1/snapshots/{sid}/report", headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert str(tmp_path) not in r.text
        index = c.get("/", headers=h).text
        assert f"/v1/snapshots/{sid}/report" in index and jid in index
    (tmp_path / "r.html").write_text(r.text)
    dom, _log = _render_in_chromium(tmp_path / "r.html", tmp_path)
    m = re.search(r'data-plots="(\d+)"[^>]*data-errors="(\d+)"', dom)
    assert m and int(m.group(1)) >= 2 and m.group(2) == "0"
