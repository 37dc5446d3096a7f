"""The `assay train` commands end to end on the real-text fixture (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from trainer_bridge.cli import train

TINY = [
    "--layers",
    "1",
    "--heads",
    "2",
    "--kv-heads",
    "1",
    "--d-model",
    "32",
    "--seq-len",
    "32",
    "--batch-size",
    "4",
    "--steps",
    "6",
    "--warmup",
    "2",
    "--log-every",
    "3",
]


def _json_tail(output: str) -> dict:
    return json.loads(output[output.index("{") :])


def test_pretrain_moe_then_export_refuses(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    r = CliRunner().invoke(
        train,
        [
            "pretrain",
            str(real_snapshot),
            str(tmp_path / "moe"),
            "--tokenizer",
            str(tokenizer_dir),
            "--experts",
            "4",
            "--top-k",
            "2",
            "--grad-accum",
            "2",
            *TINY,
        ],
    )
    assert r.exit_code == 0, r.output
    assert "step 6/6" in r.output and "tok/s" in r.output
    out = _json_tail(r.output)
    assert out["final_loss"] > 0 and out["device"] == "cpu"
    e = CliRunner().invoke(train, ["export", str(tmp_path / "moe"), str(tmp_path / "hf")])
    assert e.exit_code != 0 and "MoE" in e.output


def test_pretrain_sliding_window_export_and_quantize(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "sw"
    r = CliRunner().invoke(
        train,
        [
            "pretrain",
            str(real_snapshot),
            str(run),
            "--tokenizer",
            str(tokenizer_dir),
            "--sliding-window",
            "8",
            "--schedule",
            "cosine",
            *TINY,
        ],
    )
    assert r.exit_code == 0, r.output
    e = CliRunner().invoke(train, ["export", str(run), str(tmp_path / "hf")])
    assert e.exit_code == 0, e.output
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["model_type"] == "mistral" and cfg["sliding_window"] == 8
    assert (tmp_path / "hf" / "tokenizer.json").exists()
    q = CliRunner().invoke(train, ["quantize", str(run), str(tmp_path / "q8"), "--method", "int8"])
    assert q.exit_code == 0, q.output
    rep = _json_tail(q.output)
    assert rep["bytes"] == (tmp_path / "q8" / "model.safetensors").stat().st_size
    assert rep["size_ratio"] < 0.5


def test_bad_option_is_a_usage_error(real_snapshot: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        train,
        [
            "pretrain",
            str(real_snapshot),
            str(tmp_path / "x"),
            "--heads",
            "4",
            "--kv-heads",
            "3",
            "--steps",
            "1",
        ],
    )
    assert r.exit_code == 2 and "n_kv_head" in r.output
