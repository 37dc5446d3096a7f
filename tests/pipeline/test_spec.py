from pathlib import Path

import pytest

from pipeline.spec import PipelineSpec, SpecError


def _spec(**over):
    data = {"name": "t", "input": {"paths": ["examples/data"]}, "output": {"dir": "/tmp/x"},
            "stages": [{"kind": "dedup.exact"}]}
    data.update(over)
    return data


def test_valid_spec_round_trips_and_hash_ignores_paths(tmp_path: Path):
    a = PipelineSpec.from_dict(_spec())
    b = a.with_overrides(inputs=[str(tmp_path)], output=str(tmp_path / "o"))
    assert a.spec_hash() == b.spec_hash()
    c = PipelineSpec.from_dict(_spec(stages=[{"kind": "dedup.exact", "lowercase": False}]))
    assert c.spec_hash() != a.spec_hash()


@pytest.mark.parametrize(
    "stages, expected",
    [
        ([{"kind": "filter.nope"}], "stages[0].kind: unknown stage kind 'filter.nope'"),
        ([{"kind": "dedup.exact", "lowercas": True}], "stages[0] (dedup.exact).lowercas: unknown field"),
        ([{"kind": "dedup.exact", "lowercase": "very"}], "stages[0] (dedup.exact).lowercase: Input should be a valid boolean"),
    ],
)
def test_bad_stage_config_names_the_field(stages, expected):
    with pytest.raises(SpecError) as e:
        PipelineSpec.from_dict(_spec(stages=stages))
    assert expected in str(e.value)
    assert "\n" not in str(e.value)
    if "lowercase:" in expected:
        assert "got 'very'" in str(e.value)


def test_bad_top_level_field_names_the_field():
    with pytest.raises(SpecError) as e:
        PipelineSpec.from_dict(_spec(execution={"batch_size": 0}))
    assert "execution.batch_size" in str(e.value) and "got 0" in str(e.value)
    with pytest.raises(SpecError) as e:
        PipelineSpec.from_dict({"input": {"paths": ["x"]}})
    assert "output: Field required" in str(e.value)


def test_toml_errors_are_one_line(tmp_path: Path):
    p = tmp_path / "s.toml"
    p.write_text('name = "x"\n[input\npaths = []\n')
    with pytest.raises(SpecError, match="not valid TOML"):
        PipelineSpec.from_toml(p)
    with pytest.raises(SpecError, match="does not exist"):
        PipelineSpec.from_toml(tmp_path / "missing.toml")


def test_missing_input_is_an_error_before_any_work(tmp_path: Path):
    from pipeline.run import run_spec

    spec = PipelineSpec.from_dict(_spec(input={"paths": [str(tmp_path / "nope.jsonl")]},
                                        output={"dir": str(tmp_path / "out")}))
    with pytest.raises(SpecError, match="nope.jsonl' does not exist"):
        run_spec(spec, progress=False)
    assert not (tmp_path / "out").exists()


def test_duplicate_stage_names_rejected():
    with pytest.raises(SpecError, match="used twice"):
        PipelineSpec.from_dict(_spec(stages=[{"kind": "dedup.exact"}, {"kind": "dedup.exact"}]))
