"""`assay bench scale --compare-tree DIR`: 2-worker runs of two checkouts on one corpus, each traced."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scale

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_compare_tree_runs_both_checkouts_alternating_and_reports_the_drivers_shards(tmp_path: Path):
    out = scale.main(["--skip-rss", "--speedup-docs", "600", "--per-shard", "150", "--repeat", "2",
                      "--compare-tree", str(REPO), "--json", str(tmp_path / "r.json")])
    cmp = out["compare_tree"]
    assert "speedup" not in out and cmp["docs"] == 600 and cmp["same_output"]
    assert [(r["tree"], r["round"]) for r in cmp["runs"]] == [("this", 0), ("other", 0), ("other", 1), ("this", 1)]
    for r in cmp["runs"]:
        tl = r["timeline"]
        assert len(tl["workers"]) == 2 and r["all_cpu_s"] > sum(w["cpu_s"] for w in tl["workers"]) > 0
        # every shard of every segment ran once, in a worker or in the driver while the pool started
        here = (tl.get("driver_shards") or {}).get("tasks", 0)
        assert here + sum(w["tasks"] for w in tl["workers"]) >= 4 * 5  # 4 shards x 5 segments (+ reduce tasks)
    assert "this  round 0" in scale.compare_report(cmp)
