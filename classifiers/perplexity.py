"""Small-LM perplexity scorer (CCNet-style): low perplexity under a model of good text = good.

``classify.perplexity`` adds ``quality.<name>`` = the perplexity of each document's first
``max_tokens`` tokens under a small causal LM. Two kinds of model folder load:

- an **assay LM** (``assay_lm.json`` + ``model.safetensors`` + ``tokenizer.json``), trained by
  ``assay classifier train perplexity`` on reference text (e.g. the label-1 rows of
  quality_train): a byte-level BPE tokenizer (``tokenizers``, 4,096 tokens) and a 2-layer,
  128-d GPT (≈0.9 M parameters, 0.5 M of them the tied embedding) — a few minutes on one CPU core;
- a local **Hugging Face** causal-LM folder (``config.json``; needs ``transformers``), loaded
  with ``local_files_only``.

Scoring is batched and token-length aware: each document is cut to ``max_tokens`` and into
``context``-token windows, windows are sorted by length and packed into batches of at most
``tokens_per_batch`` padded tokens, so memory is bounded by ``tokens_per_batch × vocab × 4 B``
of logits (8,192 × 4,096 × 4 B = 134 MB by default) whatever the documents' lengths. Padding
sits at the end of each causal window, so it never changes a real token's prediction.
torch is imported inside functions only.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import PathField, Resources, ScoreStage, StageConfig

EOS = "<|endoftext|>"
META_FILE = "assay_lm.json"
FORMAT = "assay-tiny-gpt/2"  # /2: trainer_bridge's GPT; /1 (a separate LayerNorm GPT) is gone


@dataclass
class TinyLMConfig:
    """Architecture of the assay LM: ``trainer_bridge.model.GPT`` (RMSNorm, RoPE, SwiGLU, tied
    embeddings), the same model class the bundled trainer trains."""

    vocab_size: int = 4096
    context: int = 128  # tokens per window (the GPT's max_seq_len)
    d_model: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int = 0  # 0: as many K/V heads as query heads
    ffn_hidden: int = 0  # SwiGLU width; 0: the GPT's default (8/3 d_model, multiple of 64)


@dataclass
class TrainSettings:
    """Training budget: stop at ``steps`` or ``max_seconds``, whichever comes first."""

    steps: int = 1500
    batch_size: int = 32  # windows per step (× context tokens)
    lr: float = 3e-3
    weight_decay: float = 0.01
    max_seconds: float = 600.0
    seed: int = 0
    threads: int = 1
    heldout_fraction: float = 0.05  # of windows, for the reported validation perplexity


def _build_model(cfg: TinyLMConfig):
    """The trainer's GPT (``trainer_bridge.model``): one model in the project, not two."""
    from trainer_bridge.model import GPT, GPTConfig

    return GPT(GPTConfig(
        vocab_size=cfg.vocab_size, max_seq_len=cfg.context, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_kv_head=cfg.n_kv_head or cfg.n_head, d_model=cfg.d_model,
        ffn_hidden=cfg.ffn_hidden, tie_embeddings=True,
    ))


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Byte-level BPE (GPT-2 style: no unknown tokens) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_lm(
    texts: Sequence[str],
    output: str | Path,
    model_cfg: TinyLMConfig | None = None,
    settings: TrainSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train tokenizer + tiny GPT on ``texts`` (reference "good" text); write a model folder.

    Returns the metadata written to ``assay_lm.json`` (steps, seconds, validation perplexity).
    """
    import torch
    from safetensors.torch import save_model
    from tqdm import tqdm

    model_cfg = model_cfg or TinyLMConfig()
    st = settings or TrainSettings()
    if not texts:
        raise ValueError("train_lm needs reference texts; got none")
    torch.manual_seed(st.seed)
    torch.set_num_threads(st.threads)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts, model_cfg.vocab_size)
    model_cfg.vocab_size = tok.get_vocab_size()
    eos = tok.token_to_id(EOS)
    stream: list[int] = []
    for enc in tok.encode_batch(list(texts)):
        stream.extend(enc.ids)
        stream.append(eos)
    ctx = model_cfg.context
    n_win = (len(stream) - 1) // ctx
    if n_win < 4:
        raise ValueError(f"reference text too small: {len(stream)} tokens < 4 windows of {ctx}")
    data = torch.tensor(stream[: n_win * ctx + 1], dtype=torch.long)
    rng = np.random.default_rng(st.seed)
    order = rng.permutation(n_win)
    n_val = max(1, int(n_win * st.heldout_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]

    def windows(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.as_tensor(idx * ctx)
        offs = torch.arange(ctx + 1)
        w = data[starts[:, None] + offs[None, :]]
        return w[:, :-1], w[:, 1:]

    model = _build_model(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=st.lr, weight_decay=st.weight_decay,
                            betas=(0.9, 0.95))
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(total=st.steps, desc="training LM", unit="step", disable=not progress)
    loss_val = float("nan")
    while step < st.steps and time.perf_counter() - t0 < st.max_seconds:
        lr = st.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / st.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows(rng.choice(train_idx, size=min(st.batch_size, len(train_idx))))
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_val = loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.3f}")
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        vx, vy = windows(val_idx[:256])
        vl = torch.nn.functional.cross_entropy(model(vx).reshape(-1, model_cfg.vocab_size),
                                               vy.reshape(-1))
    save_model(model, str(out / "model.safetensors"))  # the tied head is stored once
    tok.save(str(out / "tokenizer.json"))
    meta = {
        "format": FORMAT,
        "model": asdict(model_cfg),
        "train": asdict(st),
        "steps_done": step,
        "train_seconds": seconds,
        "train_tokens": int(len(stream)),
        "final_train_loss": loss_val,
        "val_perplexity": float(math.exp(float(vl))),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / META_FILE)
    return meta


class PerplexityLM:
    """A loaded causal LM + tokenizer that returns per-document perplexity."""

    def __init__(self, model_dir: str | Path, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        d = Path(model_dir)
        if (d / META_FILE).exists():
            from safetensors.torch import load_model
            from tokenizers import Tokenizer

            meta = json.loads((d / META_FILE).read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(
                    f"{d}: model format {meta.get('format')!r}, this scorer reads {FORMAT!r}; "
                    f"retrain it with `assay classifier train perplexity`"
                )
            self.cfg = TinyLMConfig(**meta["model"])
            self.model = _build_model(self.cfg)
            load_model(self.model, str(d / "model.safetensors"))
            self.context = self.cfg.context
            self.vocab_size = self.cfg.vocab_size
            tok = Tokenizer.from_file(str(d / "tokenizer.json"))
            self._encode = lambda texts: [e.ids for e in tok.encode_batch(list(texts))]
            self._logits = self.model
        elif (d / "checkpoint.pt").exists():
            from trainer_bridge.tokenizer import TextTokenizer
            from trainer_bridge.trainer import load_model

            self.model, ck = load_model(d)
            self.context = self.model.cfg.max_seq_len
            self.vocab_size = self.model.cfg.vocab_size
            ttok = TextTokenizer(ck["tokenizer"])
            self._encode = ttok.encode_batch
            self._logits = self.model
        elif (d / "config.json").exists():
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError:
                raise ImportError(
                    f"{d} is a Hugging Face model folder; loading it needs `transformers` "
                    f"(pip install transformers)"
                ) from None
            hf = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True,
                                                      dtype=torch.float32)
            htok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
            self.model = hf
            self.context = int(min(getattr(hf.config, "max_position_embeddings", 1024), 1024))
            self.vocab_size = int(hf.config.vocab_size)
            self._encode = lambda texts: htok(list(texts), add_special_tokens=False)["input_ids"]
            self._logits = lambda ids: hf(input_ids=ids).logits
        else:
            raise FileNotFoundError(
                f"{d} holds neither {META_FILE} (train one with `assay classifier train "
                f"perplexity`), nor an assay trainer checkpoint.pt, nor a Hugging Face config.json"
            )
        self.model.eval()

    def perplexity(self, texts: Sequence[str], max_tokens: int = 512,
                   tokens_per_batch: int = 8192, max_logits: int = 64_000_000) -> np.ndarray:
        """exp(mean next-token NLL) over each text's first ``max_tokens`` tokens; NaN if < 2.

        ``max_logits`` caps a batch's logits (tokens × vocabulary floats: 256 MB by default),
        which matters for HF models with big vocabularies (SmolLM2: 49,152 → 1,302 tokens).
        """
        import torch

        tokens_per_batch = max(1, min(tokens_per_batch, max_logits // self.vocab_size))
        ids = self._encode([t or "" for t in texts])
        ctx = self.context
        # (doc, window) pieces; a window predicts its tokens 1..n-1
        pieces: list[tuple[int, list[int]]] = []
        for i, seq in enumerate(ids):
            seq = seq[:max_tokens]
            for s in range(0, len(seq), ctx):
                w = seq[s:s + ctx]
                if len(w) >= 2:
                    pieces.append((i, w))
        nll = np.zeros(len(ids), dtype=np.float64)
        cnt = np.zeros(len(ids), dtype=np.int64)
        pieces.sort(key=lambda p: len(p[1]))
        j = 0
        with torch.inference_mode():
            while j < len(pieces):
                width = len(pieces[j][1])
                k = j
                # grow the batch while (rows × longest window) fits the token budget
                while k < len(pieces) and (k - j + 1) * len(pieces[k][1]) <= max(
                        tokens_per_batch, width):
                    k += 1
                batch = pieces[j:k]
                width = len(batch[-1][1])
                x = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros((len(batch), width - 1), dtype=torch.bool)
                for r, (_, w) in enumerate(batch):
                    x[r, : len(w)] = torch.tensor(w)
                    mask[r, : len(w) - 1] = True
                logits = self._logits(x)[:, :-1].float()
                tok_nll = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
                ).view(len(batch), width - 1)
                sums = (tok_nll * mask).sum(1).double().numpy()
                for r, (doc, w) in enumerate(batch):
                    nll[doc] += sums[r]
                    cnt[doc] += len(w) - 1
                j = k
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, np.exp(nll / np.maximum(cnt, 1)), np.nan)


class PerplexityConfig(StageConfig):
    model_path: str = PathField(
        kind="model",
        description="folder from `assay classifier train perplexity`, or a local HF causal LM"
    )
    name: str = Field("perplexity", description="score column is quality.<name>")
    max_tokens: int = Field(512, gt=1, description="only the first max_tokens tokens are scored")
    tokens_per_batch: int = Field(8192, gt=0, description="padded tokens per forward pass")
    threads: int = Field(1, ge=1, description="torch threads per worker")


@register
class PerplexityScorer(ScoreStage):
    """Adds ``quality.<name>``: perplexity under a small LM of good text (lower = better).

    With the default 2-layer 128-d model and 512 tokens per document: about 100-200
    documents/s per core. Empty documents get NaN (``filter.threshold`` drops them as missing).
    """

    kind = "classify.perplexity"
    Config = PerplexityConfig
    inputs = (schema.TEXT,)
    outputs = ("quality.perplexity",)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=1.0)
    summary = "perplexity under a small causal LM of good text as quality.<name> (lower = better)"

    config: PerplexityConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        self._lm: PerplexityLM | None = None

    def output_columns(self) -> tuple[str, ...]:
        return (schema.quality_column(self.config.name),)

    def setup(self) -> None:
        if self._lm is None:
            self._lm = PerplexityLM(self.config.model_path, self.config.threads)

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        self.setup()
        assert self._lm is not None
        ppl = self._lm.perplexity(table.column(schema.TEXT).to_pylist(), self.config.max_tokens,
                                  self.config.tokens_per_batch)
        return {schema.quality_column(self.config.name): pa.array(ppl, pa.float32())}

    def teardown(self) -> None:
        self._lm = None
