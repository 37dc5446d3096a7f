"""Stage lifecycle and declared memory where the work really runs: in process-pool workers and
in Ray actors — every stage set up in a worker is torn down there, exactly once; a stage's
``Resources.memory_gb`` is the Ray actor's ``memory`` resource, and the pool's admission limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.run import run_spec
from pipeline.spec import PipelineSpec, SpecError
from tests.pipeline import _teardown_probe
from tests.pipeline.test_executor import _spec_data, _write_shards

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, raw_docs) -> Path:
    folder = tmp_path_factory.mktemp("life-in")
    _write_shards(raw_docs[:240], folder, 6)
    return folder


def _check_lifecycle(log: str, driver_pid: int, driver_too: bool = False) -> dict[int, dict[str, list[str]]]:
    """``driver_too``: the driver also runs shards (the LocalExecutor's first segment while its
    pool starts), so it is held to the same rule and counts towards the stages set up."""
    seen = _teardown_probe.read(log)
    workers = {pid: v for pid, v in seen.items() if pid != driver_pid}
    assert workers, f"no worker process set up a stage: {seen}"
    checked = {**workers, **({driver_pid: seen[driver_pid]} if driver_too and driver_pid in seen else {})}
    for pid, v in checked.items():
        # each stage a process set up is torn down there exactly once
        assert sorted(v["teardown"]) == sorted(v["setup"]) == sorted(set(v["setup"])), (pid, v)
    names = {n for v in checked.values() for n in v["setup"]}
    assert names == {"filter.length", "dedup.exact"}
    return workers


@pytest.mark.timeout(300)
def test_pool_workers_tear_down_every_stage_they_set_up(inputs: Path, tmp_path: Path):
    log = tmp_path / "probe.log"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_spec_data(inputs, tmp_path / "snap")))
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.pipeline._teardown_probe import install
        install()  # module level: the pool's fork server preloads __main__, its workers inherit it
        if __name__ == "__main__":
            from pipeline.run import run_spec
            from pipeline.spec import PipelineSpec
            m = run_spec(PipelineSpec.from_dict(json.load(open({str(spec)!r}))), progress=False, workers=2)
            print(json.dumps({{"pid": os.getpid(), "kept": m["stats"]["kept"]}}))
    """))
    r = subprocess.run([sys.executable, str(driver)], env={**os.environ, "ASSAY_TEARDOWN_LOG": str(log)},
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    workers = _check_lifecycle(str(log), out["pid"], driver_too=True)
    assert len(workers) == 2, workers  # both pool workers ran shards


def test_pool_admits_only_the_workers_whose_declared_memory_fits(inputs: Path, tmp_path: Path, monkeypatch):
    """The pool honours Resources.memory_gb as an admission limit: workers x the largest
    declaration must fit in physical memory — 2 workers of 0.6 x RAM are refused, 1 runs."""
    from pipeline import executor
    from pipeline.filters.basic import LengthFilterStage
    from pipeline.stage import Resources

    total = executor._physical_memory_gb()
    monkeypatch.setattr(LengthFilterStage, "resources", Resources(memory_gb=0.6 * total))
    with pytest.raises(SpecError, match=r"2 workers x .* GB .*Resources.memory_gb"):
        run_spec(PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "two")), progress=False, workers=2)
    assert not (tmp_path / "two").exists()
    m = run_spec(PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "one")), progress=False, workers=1)
    assert m["stats"]["kept"] > 0


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ray_actors_tear_down_their_stages_and_reserve_the_declared_memory(inputs: Path, tmp_path: Path):
    ray = pytest.importorskip("ray")
    from pipeline.ray_executor import RayExecutor

    log = tmp_path / "probe.log"
    ref = run_spec(PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "ref")), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.pipeline._teardown_probe.install",
                          "env_vars": {"ASSAY_TEARDOWN_LOG": str(log), "PYTHONPATH": str(REPO),
                                       # teardowns that take a while still finish before the run returns
                                       # (and before the ray.shutdown() below could cut them off)
                                       "ASSAY_TEARDOWN_SLOW_S": "1.5"}})
    try:
        m = RayExecutor(progress=False).run(PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "snap")))
        assert m == ref
    finally:
        ray.shutdown()
    workers = _check_lifecycle(str(log), os.getpid())
    # the actor's `memory` resource is the largest Resources.memory_gb of what it runs: segment 0
    # runs filter.length (0.1 GB) and dedup.exact's map (1.0 GB), segment 1 dedup.exact (1.0 GB)
    held = sorted({r for v in workers.values() for r in v["resources"]})
    assert held == ["dedup.exact:1", "filter.length:1"], held


def test_pool_workers_get_the_drivers_environment_as_it_is_when_the_pool_starts(inputs: Path, tmp_path: Path,
                                                                                 monkeypatch):
    """The fork server keeps the environment it started with; a pool started later (a long-lived
    driver that has since set AWS_ENDPOINT_URL, say) must still give its workers the current one."""
    from pipeline.executor import LocalExecutor

    spec = PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "a"))
    first = LocalExecutor(workers=2)
    pool = first._ensure_pool(spec, tmp_path / "a", 2)  # the fork server runs from here on
    assert pool.submit(os.getenv, "ASSAY_TEST_LATE_VAR").result() is None
    pool.shutdown()
    monkeypatch.setenv("ASSAY_TEST_LATE_VAR", "set-after-the-fork-server")
    second = LocalExecutor(workers=2)._ensure_pool(spec, tmp_path / "b", 2)
    try:
        assert second.submit(os.getenv, "ASSAY_TEST_LATE_VAR").result() == "set-after-the-fork-server"
    finally:
        second.shutdown()
