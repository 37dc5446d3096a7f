"""Hostile spec values and CLI flags: a one-line error naming the field (exit 2), never a
traceback, a run that writes into the current folder, or a pool of a million workers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.spec import PipelineSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, **over: dict) -> dict:
    src = tmp_path / "in.jsonl"
    if not src.exists():
        src.write_text("".join(json.dumps({"id": str(i), "text": f"doc {i} " * 30}) + "\n" for i in range(5)))
    data: dict = {"input": {"paths": [str(src)]}, "output": {"dir": str(tmp_path / "out")}, "stages": []}
    for sect, fields in over.items():
        if isinstance(fields, dict):
            data.setdefault(sect, {}).update(fields)
        else:
            data[sect] = fields
    return data


@pytest.mark.parametrize("over, expected", [
    ({"output": {"dir": ""}}, "output.dir: an empty output folder"),
    ({"output": {"dir": "/tmp/a\x00b"}}, "output.dir: output folder holds a NUL byte"),
    ({"output": {"dir": "/tmp/" + "y" * 300}}, "output.dir: output folder has a name over 255 bytes"),
    ({"output": {"dir": "nosuchscheme://bucket/x"}}, "output.dir: nosuchscheme:// locations cannot be opened"),
    ({"input": {"paths": ["/tmp/" + "z" * 300]}}, "input.paths: entry 0 has a name over 255 bytes"),
    ({"input": {"paths": ["ftp://127.0.0.1:1/x.jsonl"]}}, "input.paths: ftp:// locations cannot be opened"),
    ({"execution": {"workers": 10**6}}, "execution.workers: Input should be less than or equal to 1024"),
    ({"stages": [{"kind": "filter.gopher_repetition", "dup_line_frac": math.nan}]},
     "stages[0] (filter.gopher_repetition).dup_line_frac: Input should be a finite number, got nan"),
    ({"stages": [{"kind": "filter.gopher_quality", "max_symbol_word_ratio": math.inf}]},
     "stages[0] (filter.gopher_quality).max_symbol_word_ratio: Input should be a finite number"),
])
def test_hostile_spec_values_are_one_line_errors_naming_the_field(tmp_path: Path, over: dict, expected: str):
    with pytest.raises(SpecError) as e:
        PipelineSpec.from_dict(_spec(tmp_path, **over)).resolve_inputs()
    msg = str(e.value)
    assert msg.startswith("spec error: ") and expected in msg, msg
    assert "\n" not in msg and len(msg) < 300  # the huge value is not echoed back


def test_a_file_that_is_no_tokenizer_fails_at_validation(tmp_path: Path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(SpecError, match=r"^spec error: output.tokenizer: \S+ is not a tokenizers file"):
        PipelineSpec.from_dict(_spec(tmp_path, output={"tokenizer": str(bad)}))


def _toml(data: dict) -> str:
    def val(v: object) -> str:
        return json.dumps(v)  # JSON strings, numbers and lists are TOML literals too
    out = []
    for sect in ("input", "output"):
        out.append(f"[{sect}]")
        out += [f"{k} = {val(v)}" for k, v in data[sect].items()]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("over, field", [
    ({"input": {"paths": ["http://127.0.0.1:1/x.jsonl"]}}, "input.paths"),
    ({"output": {"dir": "/tmp/" + "y" * 300}}, "output.dir"),
    ({"output": {"tokenizer": "TOKFILE"}}, "output.tokenizer"),
])
def test_assay_run_with_a_hostile_spec_exits_2_with_one_line(tmp_path: Path, over: dict, field: str):
    bad = tmp_path / "not-a-tokenizer.json"
    bad.write_text("{}")
    data = _spec(tmp_path, **over)
    if data["output"].get("tokenizer") == "TOKFILE":
        data["output"]["tokenizer"] = str(bad)
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(data))
    r = CliRunner().invoke(main, ["run", str(spec), "--no-progress"])
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: spec error: {field}: "), r.output
    assert not (tmp_path / "out").exists()


def test_run_workers_flag_is_bounded(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(_spec(tmp_path)))
    r = CliRunner().invoke(main, ["run", str(spec), "--workers", "100000", "--no-progress"])
    assert r.exit_code == 2 and "--workers" in r.output and "1<=x<=1024" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_unopenable_url_scheme_prints_one_line_and_no_ignored_exception(tmp_path: Path):
    """fsspec's FTP filesystem, built without a host, used to fail twice: in __init__ and then in
    __del__ ("Exception ignored in ... FTPFileSystem.__del__" + a traceback on stderr)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(_spec(tmp_path, output={"dir": "ftp://127.0.0.1:1/out"})))
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(spec), "--no-progress"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    err = [ln for ln in p.stderr.splitlines() if ln.strip() and "compiling the dedup kernels" not in ln]
    assert p.returncode == 2 and err == ["error: spec error: output.dir: ftp:// locations cannot be opened: "
                                         "FTPFileSystem needs host"], p.stderr


def _assay(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=subprocess.DEVNULL)


def test_a_spec_that_is_no_text_is_one_line(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"name = 'x'\n\xff\xfe\x00binary")
    r = CliRunner().invoke(main, ["run", str(spec)])
    assert r.exit_code == 2 and r.output.strip().endswith("is not UTF-8 text (byte 11); a spec is a TOML file"), r.output


def test_bad_assay_env_folders_are_one_line_naming_the_variable(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(_spec(tmp_path)))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for var, args in (("ASSAY_TRACE", ["run", str(spec), "--no-progress"]), ("ASSAY_CACHE", ["train", "smollm2"])):
        p = _assay(args, {var: str(a_file / "sub")})
        assert p.returncode == 2, (var, p.stderr)
        assert p.stderr.strip().startswith(f"error: {var}=") and "Traceback" not in p.stderr, (var, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "out").exists()
    p = _assay(["run", str(spec), "--no-progress"], {"ASSAY_TRACE": str(tmp_path / "trace" / "new")})
    assert p.returncode == 0, p.stderr
    assert list((tmp_path / "trace" / "new").glob("*.jsonl"))  # a folder that did not exist is made


def test_serve_and_token_flags_are_checked(tmp_path: Path):
    root = str(tmp_path / "svc")
    for args, words in (
        (["serve", "--root", root, "--port", "99999"], "'--port': 99999 is not in the range 0<=x<=65535"),
        (["serve", "--root", root, "--max-jobs", "0"], "'--max-jobs': 0 is not in the range 1<=x<=256"),
        (["serve", "--root", root, "--keep-failed-hours", "nan"], "'--keep-failed-hours': nan: give hours"),
        (["serve", "--root", root, "--catalog", "nosuch://u:pw@host/x"], "--catalog nosuch://u:***@host/x: "),
        (["token", "create", "--root", root, "--role", "read", "--name", "x", "--catalog",
          "postgresql://u:secret@127.0.0.1:1/x"], "--catalog postgresql://u:***@127.0.0.1:1/x: OperationalError"),
        (["token", "create", "--root", str(tmp_path / "f" / "x"), "--role", "read", "--name", "x"],
         "--root"),
    ):
        if args[3] == str(tmp_path / "f" / "x"):
            (tmp_path / "f").write_text("a file in the way")
        p = _assay(args, timeout=30)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr)
        assert words in p.stderr and "secret" not in p.stderr and ":pw@" not in p.stderr, (args, p.stderr)


def test_serve_timeouts_are_checked(tmp_path: Path):
    """A FloatRange lets NaN through: --header-timeout nan was a ValueError traceback at start-up."""
    for flag, v in (("--header-timeout", "nan"), ("--body-timeout", "0"), ("--body-timeout", "inf")):
        r = CliRunner().invoke(main, ["serve", "--root", str(tmp_path / "svc"), flag, v])
        assert r.exit_code == 2 and f"'{flag}': {float(v)!r}: give seconds" in r.output, r.output


def test_report_of_an_unreachable_server_is_one_line(tmp_path: Path):
    from tests.pipeline.svc_util import free_port

    p = _assay(["report", f"http://127.0.0.1:{free_port()}/v1/snapshots/x", "--out", str(tmp_path / "r.html")])
    assert p.returncode == 2 and p.stderr.startswith("error: GET http://127.0.0.1:") and "refused" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_other_commands_on_unusable_input_are_one_line(tmp_path: Path):
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b'{"text": "a", "label": 1}\n\xff\xfe not text\n')
    notjson = tmp_path / "notjson.jsonl"
    notjson.write_text("root:x:0:0:root:/root:/bin/bash\n")
    job = tmp_path / "job.toml"
    job.write_bytes(b"name = 'x'\n\xff\xfe")
    for args, words in (
        (["classifier", "train", "fasttext", "--train", str(junk), "--output", str(tmp_path / "m.bin")],
         "Error: the input is not UTF-8 text (byte"),
        (["classifier", "train", "fasttext", "--train", str(notjson), "--output", str(tmp_path / "m.bin")],
         f"Error: {notjson}:1: not valid JSON"),
        (["curriculum", "build", str(tmp_path), str(tmp_path / "cur")], "Error: no snapshot manifest at"),
        (["synth", "generate", str(job), "--output", str(tmp_path / "sg")], "is not UTF-8 text (byte 11)"),
    ):
        p = _assay(args)
        assert p.returncode in (1, 2) and "Traceback" not in p.stderr and words in p.stderr, (args, p.stderr)
