"""gs:// against a GCS API on loopback (gcp-storage-emulator, `make venv-gcs`): pyarrow's GCS
client, pointed at it by STORAGE_EMULATOR_HOST alone, gives the local run's manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import storage
from pipeline.run import run_spec
from pipeline.spec import PipelineSpec
from tests.gcsserver import gcs_emulator
from tests.pipeline.test_executor import _spec_data, _write_shards
from tests.pipeline.test_storage import _barriers_spec, _without_input_paths


@pytest.fixture(scope="module")
def gcs():
    mp = pytest.MonkeyPatch()
    with gcs_emulator("assay") as env:
        for k, v in env.items():
            mp.setenv(k, v)
        storage._filesystem.cache_clear()
        yield env
    mp.undo()
    storage._filesystem.cache_clear()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, raw_docs) -> Path:
    folder = tmp_path_factory.mktemp("gcsin")
    _write_shards(raw_docs[:240], folder, 4)
    return folder


@pytest.mark.timeout(300)
def test_outputs_on_gcs_give_the_local_manifest_and_show_verify_read_them(gcs, inputs: Path, tmp_path: Path):
    from pipeline.cli import main

    ref = run_spec(PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "ref")), progress=False)
    out = "gs://assay/runs/out"
    m = run_spec(PipelineSpec.from_dict(_spec_data(inputs, out)), progress=False)  # type: ignore[arg-type]
    assert m == ref
    assert storage.read_json(f"{out}/manifest.json") == ref
    for s in ref["shards"]:
        assert storage.sha256(f"{out}/{s['path']}") == s["sha256"]
    names = {str(f.relative_to(storage.as_loc(out))) for f in storage.list_files(out)}
    assert any(n.startswith("state/dedup.exact/") for n in names) and not any(".tmp" in n for n in names)
    show = CliRunner().invoke(main, ["show", out])
    assert show.exit_code == 0 and ref["snapshot_id"] in show.output
    verify = CliRunner().invoke(main, ["verify", out])
    assert verify.exit_code == 0, verify.output


@pytest.mark.timeout(300)
def test_inputs_and_outputs_on_gcs_with_pool_reduces_give_the_local_manifest(gcs, inputs: Path, tmp_path: Path):
    for f in sorted(inputs.iterdir()):
        storage.write_bytes(f"gs://assay/inputs/{f.name}", f.read_bytes())
    ref = run_spec(PipelineSpec.from_dict(_barriers_spec(inputs, str(tmp_path / "ref"))), progress=False)
    out = "gs://assay/runs/all-remote"
    m = run_spec(PipelineSpec.from_dict(_barriers_spec("gs://assay/inputs", out)), progress=False, workers=2, partitions=2)
    assert _without_input_paths(m) == _without_input_paths(ref)
    assert storage.read_json(f"{out}/_work/markers/reduce-dedup.minhash.json")["ran"] == ["pool"]
