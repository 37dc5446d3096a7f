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


def test_out_of_range_numbers_are_one_line_naming_the_flag(real_snapshot: Path, tmp_path: Path) -> None:
    """These were tracebacks deep in the first step (a negative tensor dimension, divisions by
    zero, the DataLoader's own ValueError) or ran silently (0 layers, -1 steps, min-lr-ratio 5)."""
    cases = [
        ("--layers", "0", "--layers=0: use an integer >= 1"),
        ("--d-model", "-8", "--d-model=-8: use an integer >= 1"),
        ("--seq-len", "0", "--seq-len=0: use an integer >= 1"),
        ("--batch-size", "0", "--batch-size=0: use an integer >= 1"),
        ("--grad-accum", "0", "--grad-accum=0: use an integer >= 1"),
        ("--steps", "-1", "--steps=-1: use an integer >= 1"),
        ("--tokens", "0", "--tokens=0: use an integer >= 1"),
        ("--sliding-window", "0", "--sliding-window=0: use an integer >= 1"),
        ("--workers", "-1", "--workers=-1: use an integer >= 0"),
        ("--log-every", "-1", "--log-every=-1: use an integer >= 0"),
        ("--lr", "nan", "--lr=nan: use a number in (0, inf]"),
        ("--min-lr-ratio", "5", "--min-lr-ratio=5.0: use a number in [0, 1]"),
        ("--decay-frac", "-0.5", "--decay-frac=-0.5: use a number in [0, 1]"),
    ]
    for flag, value, says in cases:
        r = CliRunner().invoke(train, ["pretrain", str(real_snapshot), str(tmp_path / "x"), *TINY, flag, value])
        assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == f"Error: {says}", (flag, r.output)
        assert not (tmp_path / "x").exists()
    r = CliRunner().invoke(train, ["pretrain", str(real_snapshot), str(tmp_path / "x"), *TINY, "--experts", "2",
                                   "--top-k", "0"])
    assert r.exit_code == 2 and "--top-k=0: use an integer >= 1" in r.output, r.output


def test_distill_top_k_is_the_teachers_and_no_command_declares_a_flag_twice(tmp_path: Path) -> None:
    """distill declared --top-k twice (the shared MoE option and its own): `--top-k 64` set the
    MoE experts-per-token field and left KD at full logits, silently."""
    import click

    from pipeline.cli import main
    from trainer_bridge.cli import distill

    ctx = distill.make_context("distill", [str(tmp_path), str(tmp_path / "o"), "--teacher", str(tmp_path),
                                           "--top-k", "64", "--moe-top-k", "3"])
    assert (ctx.params["kd_top_k"], ctx.params["moe_top_k"]) == (64, 3)

    def walk(cmd: click.Command, path: str) -> None:
        seen: dict[str, str] = {}
        for p in cmd.params:
            for o in (*p.opts, *p.secondary_opts):
                assert o not in seen, f"`{path}` declares {o} twice ({seen[o]} and {p.name})"
                seen[o] = str(p.name)
        if isinstance(cmd, click.Group):  # the lazy ones too (train, curriculum, dedup, ...)
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                walked.append(f"{path} {name}")
                walk(sub, f"{path} {name}")

    walked: list[str] = []
    walk(main, "assay")
    assert "assay train distill" in walked and "assay curriculum build" in walked, walked


def test_ablation_sizes_are_checked_before_any_training(real_snapshot: Path, tmp_path: Path) -> None:
    """eval ablation: --batch-size 0 / --seq-len 0 were ZeroDivisionErrors, --lr nan and --layers 0
    ValueError tracebacks, --tokens 0 / --evals 0 and --seeds -1 ran (or trained nothing) silently."""
    from trainer_bridge.cli import eval_group

    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"text": "Held-out prose: a paragraph of real text to score."}) + "\n")
    two = [str(real_snapshot), str(real_snapshot), "--eval", str(evals), "--out", str(tmp_path / "o"),
           "--layers", "1", "--d-model", "32", "--heads", "2", "--kv-heads", "1", "--seq-len", "32",
           "--tokens", "2048", "--device", "cpu"]
    levers = ["--arm", f"raw={real_snapshot}", "--eval-set", f"p={evals}", "--out", str(tmp_path / "o")]
    for args, says in (
        ([*two, "--batch-size", "0"], "--batch-size=0: use an integer >= 1"),
        ([*two, "--seq-len", "0"], "--seq-len=0: use an integer >= 1"),
        ([*two, "--lr", "nan"], "--lr=nan: use a number in (0, inf]"),
        ([*two, "--layers", "0"], "--layers=0: use an integer >= 1"),
        ([*two, "--tokens", "0"], "--tokens=0: use an integer >= 1"),
        ([*two, "--evals", "0"], "--evals=0: use an integer >= 1"),
        ([*levers, "--seeds", "-1"], "--seeds '-1': give N >= 1 or a list like 0,2,4"),
    ):
        r = CliRunner().invoke(eval_group, ["ablation", *args])
        assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == f"Error: {says}", (args[-2:], r.output)
        assert not (tmp_path / "o").exists()


def test_tokenizer_and_quantize_sizes_are_checked(real_snapshot: Path, tmp_path: Path) -> None:
    """train tokenizer --vocab-size -5 was an OverflowError traceback and --max-chars 0 trained on
    nothing; quantize --group-size 0 / -3 a ZeroDivisionError / negative-dimension traceback."""
    for args, flag in (
        (["tokenizer", str(real_snapshot), "--out", str(tmp_path / "t"), "--vocab-size", "-5"], "--vocab-size"),
        (["tokenizer", str(real_snapshot), "--out", str(tmp_path / "t"), "--max-chars", "0"], "--max-chars"),
        (["quantize", str(tmp_path), str(tmp_path / "t"), "--method", "int4", "--group-size", "0"], "--group-size"),
        (["quantize", str(tmp_path), str(tmp_path / "t"), "--eval-seqs", "0"], "--eval-seqs"),
    ):
        r = CliRunner().invoke(train, args)
        assert r.exit_code == 2 and f"Invalid value for '{flag}'" in r.output, (args, r.output)
        assert not (tmp_path / "t").exists()
