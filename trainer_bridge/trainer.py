"""The bundled training loop: pretraining and distillation on a snapshot.

- AdamW (no decay on norms), linear warmup, then WSD (warmup-stable-decay; MiniCPM found ~10%
  of tokens in the decay phase works) or cosine. For a curriculum snapshot the WSD decay starts
  where the ``anneal`` phase starts in the token stream, so the LR decays on the best data.
- Per-token loss weights from the snapshot's ``weight`` column (SoftDedup), gradient
  accumulation, gradient clipping.
- Checkpoints hold model, optimizer, step, history and the loader cursor: a resumed run makes
  the same batches and, on CPU, the same losses bit for bit.
- ``precision``: ``auto`` = bf16 autocast on GPU, fp32 on CPU; ``bf16`` also works on CPU
  (autocast); ``fp8`` = bf16 plus FP8 (e4m3) forward GEMMs in the blocks (:mod:`.fp8`; GPUs of
  compute capability ≥ 8.9, refused elsewhere). ``torch.compile`` on by default on GPU,
  opt-in on CPU; fused AdamW on GPU. Logs tokens/s and, on a GPU it knows, MFU (against the
  dense bf16 peak, also for fp8 runs). Every one of these paths runs in the CPU tests.
- Distillation: ``teacher`` set → loss = α·T²·KL + (1-α)·LM, with forward KL(teacher‖student)
  (mode covering, the classic Hinton loss) or reverse KL(student‖teacher) (mode seeking, MiniLLM).
  With ``kd_top_k`` the teacher keeps only its top-k logits per token (sparse KD: forward KL
  to the renormalised top-k distribution), and ``teacher_cache`` stores them on disk keyed by a
  hash of the batch's token ids, so a second student on the same data (another seed, α, or
  the no-KD baseline's twin) never runs the teacher again. A 135 M teacher runs ~140 tokens/s
  on one CPU core here; top-64 costs 256 bytes per token on disk.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainer_bridge.evaluation import build_eval_tensor, evaluate, parse_where, read_texts
from trainer_bridge.loader import ShardLoader
from trainer_bridge.model import GPT, GPTConfig, check_count, check_fraction, lm_loss
from trainer_bridge.tokenizer import TextTokenizer, tokenizer_file, train_tokenizer

CHECKPOINT = "checkpoint.pt"

# Dense bf16 peak FLOP/s for MFU, by device-name substring.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


@dataclass
class TrainConfig:
    snapshot: str
    out_dir: str
    tokenizer: str | None = None  # folder/file with tokenizer.json; None: <snapshot>/tokenizer
    vocab_size: int = 8192  # used only when a tokenizer has to be trained on the snapshot
    model: dict[str, Any] = field(default_factory=dict)  # GPTConfig fields (vocab_size is set)
    seq_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 200
    max_tokens: int | None = None  # if set, max_steps = ceil(max_tokens / tokens per step)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    schedule: str = "wsd"  # "wsd" or "cosine"
    decay_frac: float = 0.1  # WSD decay share when the snapshot has no anneal phase
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    use_weights: bool = True  # per-token loss weights from the snapshot's `weight` column
    seed: int = 0
    device: str = "auto"
    compile: bool | None = None  # None: on for CUDA, off on CPU
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp8
    fused_adamw: bool | None = None  # None: fused on CUDA (torch also has a CPU fused kernel)
    num_workers: int = 0
    shuffle_buffer: int | None = None  # ShardLoader sequence shuffle: None off, 0 whole epoch
    phase_to_budget: bool = False  # curriculum snapshot: phase shares of this run's tokens, in the loader
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    eval_path: str | None = None  # snapshot / JSONL(.zst) / Parquet of held-out text
    eval_where: list[str] = field(default_factory=list)  # e.g. ["label=1"]
    eval_every: int = 0  # 0: only at the end (when eval_path is set)
    eval_seqs: int = 64
    init_from: str | None = None  # start from this checkpoint's weights (fresh optimizer)
    teacher: str | None = None  # distillation: assay checkpoint or local HF causal-LM folder
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    kd_kind: str = "forward"  # "forward" or "reverse" KL
    kd_top_k: int = 0  # >0: distil from the teacher's top-k logits only (forward KL)
    teacher_cache: str | None = None  # folder for cached top-k teacher logits (needs kd_top_k)
    data_seed: int | None = None  # loader shuffle seed; None: `seed` (init and data together)
    qat: str | None = None  # "int8" / "int4": train with fake-quantized linear weights
    qat_group_size: int = 32  # int4 QAT: input channels per (scale, zero) group
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "batch_size", "grad_accum", "max_steps", "eval_seqs"):
            check_count(name, getattr(self, name), 1)
        for name in ("warmup_steps", "num_workers", "log_every", "checkpoint_every", "eval_every"):
            check_count(name, getattr(self, name), 0)  # 0: none / off
        if self.max_tokens is not None:
            check_count("max_tokens", self.max_tokens, 1)
        check_fraction("lr", self.lr, 0.0, math.inf, open_lo=True)
        check_fraction("min_lr_ratio", self.min_lr_ratio)
        check_fraction("decay_frac", self.decay_frac)
        if self.schedule not in ("wsd", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: use 'wsd' or 'cosine'")
        if self.kd_kind not in ("forward", "reverse"):
            raise ValueError(f"kd_kind={self.kd_kind!r}: use 'forward' or 'reverse'")
        if self.qat not in (None, "int8", "int4"):
            raise ValueError(f"qat={self.qat!r}: use 'int8', 'int4' or leave unset")
        if self.precision not in ("auto", "fp32", "bf16", "fp8"):
            raise ValueError(f"precision={self.precision!r}: use auto, fp32, bf16 or fp8")
        if self.kd_top_k < 0:
            raise ValueError(f"kd_top_k={self.kd_top_k}: use 0 (full logits) or a positive k")
        if self.kd_top_k and self.kd_kind != "forward":
            raise ValueError("kd_top_k needs kd_kind='forward' (reverse KL needs every logit)")
        if self.teacher_cache and not self.kd_top_k:
            raise ValueError("teacher_cache stores top-k logits: set kd_top_k (e.g. 64)")


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU by name (None if unknown: no MFU is logged then)."""
    return next((v for k, v in PEAK_FLOPS.items() if k in device_name), None)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak."""
    return tokens_per_s * flops_per_token / peak


def lr_at(step: int, total: int, cfg: TrainConfig, decay_start: int) -> float:
    """Learning rate for ``step`` (0-based) of ``total``."""
    lo = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * min(1.0, t)))
    if step < decay_start:
        return cfg.lr
    t = (step - decay_start + 1) / max(1, total - decay_start)
    return cfg.lr - (cfg.lr - lo) * min(1.0, t)


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def ensure_tokenizer(cfg: TrainConfig) -> TextTokenizer:
    """The configured tokenizer, or the snapshot's own (trained on first use)."""
    if cfg.tokenizer:
        return TextTokenizer(cfg.tokenizer)
    for cand in (Path(cfg.snapshot) / "tokenizer", Path(cfg.out_dir) / "tokenizer"):
        if (cand / "tokenizer.json").exists():
            return TextTokenizer(cand)
    # stored with the snapshot when we may write there, else beside the run
    dest = (
        Path(cfg.snapshot) / "tokenizer"
        if os.access(cfg.snapshot, os.W_OK)
        else Path(cfg.out_dir) / "tokenizer"
    )
    return TextTokenizer(train_tokenizer(cfg.snapshot, dest, vocab_size=cfg.vocab_size))


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    p = Path(path)
    p = p / CHECKPOINT if p.is_dir() else p
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}: pass a training output folder or .pt file")
    return torch.load(p, map_location=map_location, weights_only=False)


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """(model in eval mode, checkpoint dict) from an assay checkpoint (folder or file)."""
    ck = load_checkpoint(path, map_location)
    model = GPT(GPTConfig(**ck["model_config"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()}
    model.load_state_dict(state)
    return model.eval(), ck


def load_any_model(path: str | Path) -> tuple[GPT, str]:
    """(model, tokenizer folder) from an assay checkpoint or a local HF Llama/Mistral folder."""
    p = Path(path)
    if p.is_dir() and (p / "config.json").exists() and not (p / CHECKPOINT).exists():
        from trainer_bridge.export import import_hf

        return import_hf(p), str(p)
    model, ck = load_model(p)
    return model, ck["tokenizer"]


class Teacher:
    """Logits of a teacher sharing the student's tokenizer: assay checkpoint or HF folder."""

    def __init__(self, path: str, vocab_size: int, device: str) -> None:
        p = Path(path)
        hf_cfg = p / "config.json"
        if (
            hf_cfg.exists()
            and not (p / CHECKPOINT).exists()
            and json.loads(hf_cfg.read_text()).get("model_type") not in ("llama", "mistral")
        ):
            from transformers import AutoModelForCausalLM  # any other local HF causal LM

            self.model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
            self.hf = True
        else:
            self.model, _ = load_any_model(p)
            self.hf = False
        self.model.to(device).eval()
        for q in self.model.parameters():
            q.requires_grad_(False)
        self.vocab_size = vocab_size

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(ids)
        logits = out.logits if self.hf else out
        if logits.shape[-1] < self.vocab_size:
            raise ValueError(
                f"teacher vocab {logits.shape[-1]} < student vocab {self.vocab_size}: "
                "distillation needs a teacher trained with the same tokenizer"
            )
        return logits[..., : self.vocab_size]


class TeacherCache:
    """Top-k teacher logits on disk, one file per micro-batch named by a hash of its ids.

    Keyed by content, not by step: any run that meets the same batch (same snapshot, seq_len,
    batch size and data seed) reads it back, whatever its model seed or loss mix. Files are
    written to a temp name and renamed, so a killed run leaves no half file.
    """

    def __init__(self, teacher: Teacher | None, folder: str, k: int) -> None:
        self.teacher, self.folder, self.k = teacher, Path(folder), k
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def __call__(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import hashlib

        raw = ids.detach().cpu().to(torch.int32).contiguous().numpy().tobytes()
        key = hashlib.sha256(raw + f"|{tuple(ids.shape)}|k={self.k}".encode()).hexdigest()[:32]
        path = self.folder / f"{key}.pt"
        if path.exists():
            d = torch.load(path, weights_only=True)
            self.hits += 1
            return d["values"].to(ids.device).float(), d["indices"].to(ids.device).long()
        if self.teacher is None:
            raise FileNotFoundError(f"{path}: batch not in the teacher cache and no teacher set")
        vals, idx = self.teacher(ids).topk(self.k, dim=-1)
        tmp = path.with_suffix(".tmp")
        torch.save({"values": vals.half().cpu(), "indices": idx.to(torch.int32).cpu()}, tmp)
        os.replace(tmp, path)
        self.misses += 1
        return vals.half().float(), idx


def kd_loss_topk(
    student: torch.Tensor,
    t_values: torch.Tensor,
    t_indices: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward KL from the teacher's renormalised top-k distribution to the student, times T².

    ``sum_i p_i (log p_i - log q_i)`` over the k teacher tokens, with ``q`` the student's full
    softmax: ≥ 0, and 0 only when the student puts exactly ``p`` on those tokens.
    """
    s = F.log_softmax(student.float() / temperature, -1).gather(-1, t_indices)
    t = F.log_softmax(t_values.float() / temperature, -1)
    kl = (t.exp() * (t - s)).sum(-1) * temperature**2
    if weights is None:
        return kl.mean()
    return (kl * weights).sum() / weights.sum().clamp_min(1e-8)


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    kind: str,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token KL between softened distributions, times T² (keeps gradient scale), averaged."""
    s = F.log_softmax(student.float() / temperature, -1)
    t = F.log_softmax(teacher.float() / temperature, -1)
    if kind == "forward":  # KL(teacher || student)
        kl = (t.exp() * (t - s)).sum(-1)
    else:  # KL(student || teacher)
        kl = (s.exp() * (s - t)).sum(-1)
    kl = kl * temperature**2
    if weights is None:
        return kl.mean()
    return (kl * weights).sum() / weights.sum().clamp_min(1e-8)


class Trainer:
    """One training run; ``run()`` returns the history (also written to ``history.json``)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.tokenizer = ensure_tokenizer(cfg)
        self.tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum
        self.total_steps = (
            math.ceil(cfg.max_tokens / self.tokens_per_step) if cfg.max_tokens else cfg.max_steps
        )
        phase_budget = self.total_steps * self.tokens_per_step if cfg.phase_to_budget else None
        self.data = ShardLoader(
            cfg.snapshot,
            self.tokenizer,
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            seed=cfg.seed if cfg.data_seed is None else cfg.data_seed,
            shuffle_buffer=cfg.shuffle_buffer,
            phase_budget=phase_budget,
        )
        self.loader = self.data.dataloader(cfg.num_workers)
        mcfg = dict(cfg.model)
        mcfg["vocab_size"] = self.tokenizer.vocab_size
        mcfg.setdefault("max_seq_len", cfg.seq_len)
        self.model_config = GPTConfig(**mcfg)
        self.model = GPT(self.model_config)
        if cfg.init_from:
            init, _ = load_model(cfg.init_from)
            self.model.load_state_dict(init.state_dict())
        if cfg.qat:
            from trainer_bridge.quantize import prepare_qat

            prepare_qat(self.model, cfg.qat, cfg.qat_group_size)
        self.model.to(self.device)
        self.precision = (
            ("bf16" if self.device.startswith("cuda") else "fp32")
            if cfg.precision == "auto"
            else cfg.precision
        )
        if self.precision == "fp8":
            from trainer_bridge.fp8 import convert_to_fp8

            n = convert_to_fp8(self.model, self.device)
            self._log(f"fp8: {n} block linears run e4m3 forward GEMMs")
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, cfg.beta2),
            eps=1e-8,
            fused=cfg.fused_adamw
            if cfg.fused_adamw is not None
            else self.device.startswith("cuda"),
        )
        self.decay_start = self._decay_start()
        self.teacher = (
            Teacher(cfg.teacher, self.tokenizer.vocab_size, self.device) if cfg.teacher else None
        )
        self.teacher_topk: TeacherCache | None = None
        if cfg.kd_top_k:
            if self.teacher is None and not cfg.teacher_cache:
                raise ValueError("kd_top_k needs a teacher (or a filled teacher_cache)")
            self.teacher_topk = TeacherCache(
                self.teacher, cfg.teacher_cache or str(self.out / "teacher_cache"), cfg.kd_top_k
            )
        self.eval_data = None
        if cfg.eval_path:
            texts = read_texts(
                cfg.eval_path,
                parse_where(cfg.eval_where),
                max_chars=cfg.eval_seqs * cfg.seq_len * 8,
            )
            self.eval_data = build_eval_tensor(texts, self.tokenizer, cfg.seq_len, cfg.eval_seqs)
        self.step = 0
        self.history: dict[str, list[Any]] = {
            "step": [],
            "tokens": [],
            "loss": [],
            "lr": [],
            "eval_tokens": [],
            "eval_loss": [],
        }
        self._compiled = self.model
        use_compile = cfg.compile if cfg.compile is not None else self.device.startswith("cuda")
        if use_compile:
            self._compiled = torch.compile(self.model)  # type: ignore[assignment]
        if (self.out / CHECKPOINT).exists():
            self._resume(load_checkpoint(self.out, self.device))

    def _decay_start(self) -> int:
        total = self.total_steps
        default = max(self.cfg.warmup_steps, int(round(total * (1 - self.cfg.decay_frac))))
        starts = self.data.phase_token_starts()
        if "anneal" in starts and self.cfg.schedule == "wsd":
            step = starts["anneal"] // self.tokens_per_step
            if self.cfg.warmup_steps <= step < total:
                return step
            self._log(
                f"anneal phase starts at step {step}, outside [warmup, {total}); "
                f"decaying over the last {self.cfg.decay_frac:.0%} instead"
            )
        return default

    def _log(self, msg: str) -> None:
        if not self.cfg.quiet:
            print(msg, flush=True)

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> Path:
        path = self.out / CHECKPOINT
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "loader": self.loader.state_dict(),
                "history": self.history,
                "train_config": asdict(self.cfg),
                "model_config": self.model_config.to_dict(),
                "tokenizer": str(self.tokenizer.folder),
                "tokenizer_sha256": self.tokenizer.sha256,
                "rng": torch.get_rng_state(),
            },
            tmp,
        )
        os.replace(tmp, path)
        return path

    def _resume(self, ck: dict[str, Any]) -> None:
        if ck["model_config"] != self.model_config.to_dict():
            raise ValueError(
                f"{self.out / CHECKPOINT} holds a different model config; use a new "
                "--out folder or the same settings"
            )
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.loader.load_state_dict(ck["loader"])
        self.step = int(ck["step"])
        self.history = ck["history"]
        torch.set_rng_state(ck["rng"])
        self._log(f"resumed from {self.out / CHECKPOINT} at step {self.step}")

    # -- loop --------------------------------------------------------------------------------
    def _eval(self) -> float | None:
        if self.eval_data is None:
            return None
        loss = evaluate(self.model, self.eval_data, device=self.device)
        self.history["eval_tokens"].append(self.step * self.tokens_per_step)
        self.history["eval_loss"].append(loss)
        return loss

    def _micro_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["input_ids"].to(self.device, non_blocking=True)
        y = batch["labels"].to(self.device, non_blocking=True)
        w = batch["weights"].to(self.device) if self.cfg.use_weights else None
        ctx = (
            torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
            if self.precision in ("bf16", "fp8")
            else _null()
        )
        with ctx:
            logits = self._compiled(x)
            loss, plain = lm_loss(logits, y, w)
            if self.teacher_topk is not None:
                tv, ti = self.teacher_topk(x)
                kd = kd_loss_topk(logits, tv, ti, self.cfg.kd_temperature, w)
                loss = self.cfg.kd_alpha * kd + (1 - self.cfg.kd_alpha) * loss
            elif self.teacher is not None:
                kd = kd_loss(logits, self.teacher(x), self.cfg.kd_temperature, self.cfg.kd_kind, w)
                loss = self.cfg.kd_alpha * kd + (1 - self.cfg.kd_alpha) * loss
            if self.model_config.n_experts:
                loss = loss + self.model_config.moe_aux_weight * self.model.aux_loss()
            return loss, plain

    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (or stop after step ``stop_at``, as a killed run would, with
        a checkpoint) and return the history."""
        cfg = self.cfg
        self.model.train()
        it = iter(self.loader)
        flops_tok = self.model.flops_per_token(cfg.seq_len)
        peak = peak_flops(torch.cuda.get_device_name()) if self.device.startswith("cuda") else None
        t_start, tok_done = time.perf_counter(), 0
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        while self.step < end:
            lr = lr_at(self.step, self.total_steps, cfg, self.decay_start)
            for g in self.opt.param_groups:
                g["lr"] = lr
            plain_sum = 0.0
            for _ in range(cfg.grad_accum):
                loss, plain = self._micro_loss(next(it))
                (loss / cfg.grad_accum).backward()
                plain_sum += float(plain)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.step += 1
            tok_done += self.tokens_per_step
            h = self.history
            h["step"].append(self.step)
            h["tokens"].append(self.step * self.tokens_per_step)
            h["loss"].append(plain_sum / cfg.grad_accum)
            h["lr"].append(lr)
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self._eval()
            if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == self.total_steps):
                now = time.perf_counter()
                tps = tok_done / max(now - t_start, 1e-9)
                msg = (
                    f"step {self.step}/{self.total_steps} loss {h['loss'][-1]:.4f} "
                    f"lr {lr:.2e} tok/s {tps:,.0f}"
                )
                if peak:
                    msg += f" MFU {100 * mfu(tps, flops_tok, peak):.1f}%"
                if h["eval_loss"] and h["eval_tokens"][-1] == h["tokens"][-1]:
                    msg += f" eval {h['eval_loss'][-1]:.4f}"
                self._log(msg)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.checkpoint()
        if (
            self.eval_data is not None
            and self.step == self.total_steps
            and (
                not self.history["eval_tokens"]
                or self.history["eval_tokens"][-1] != self.step * self.tokens_per_step
            )
        ):
            self._eval()
        elapsed = time.perf_counter() - t_start
        self.checkpoint()
        result = {
            **self.history,
            "tokens_per_s": tok_done / max(elapsed, 1e-9) if tok_done else None,
            "mfu": mfu(tok_done / elapsed, flops_tok, peak) if (peak and tok_done) else None,
            "params": self.model.num_params(non_embedding=False),
            "device": self.device,
            "precision": self.precision,
            "compiled": self._compiled is not self.model,
            "checkpoint": str(self.out / CHECKPOINT),
        }
        (self.out / "history.json").write_text(json.dumps(result, indent=1) + "\n")
        return result


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run described by ``cfg``."""
    return Trainer(cfg).run()


__all__ = [
    "TrainConfig",
    "Trainer",
    "train",
    "load_model",
    "load_checkpoint",
    "lr_at",
    "tokenizer_file",
]
