"""Curated-vs-raw ablation: the same model, the same token budget, two snapshots.

Both runs share one tokenizer (trained on RAW unless given, so the tokenizer cannot favour the
curated data), one model config, one schedule and one seed; only the data differ. Both are
evaluated on the same held-out sequences of well-written text along the way. The headline is
the number of training tokens the curated run needed to reach the raw run's final held-out loss
(linear interpolation between evaluation points); ``token_ratio`` = that / the budget (lower is
better; the design target is ≤ 0.6). Small-model curves are noisy, so the result also gives the
tokens from which the curated curve *stays* below that loss (``sustained_token_ratio``) and the
mean gap between the two curves (``mean_eval_gap``, negative when curated is better).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer_bridge.tokenizer import tokenizer_file, train_tokenizer


def tokens_to_reach(tokens: list[int], losses: list[float], target: float) -> float | None:
    """First token count where the curve reaches ``target`` (interpolated), or None."""
    prev_t, prev_l = 0.0, None
    for t, loss in zip(tokens, losses):
        if loss <= target:
            if prev_l is None or prev_l == loss:
                return float(t)
            frac = (prev_l - target) / (prev_l - loss)
            return prev_t + frac * (t - prev_t)
        prev_t, prev_l = float(t), loss
    return None


def tokens_to_stay(tokens: list[int], losses: list[float], target: float) -> float | None:
    """Tokens from which the curve stays at or below ``target`` to the end (robust to noise)."""
    for i in range(len(losses)):
        if all(v <= target for v in losses[i:]):
            return (
                tokens_to_reach(tokens[max(0, i - 1) :], losses[max(0, i - 1) :], target)
                if i
                else float(tokens[0])
            )
    return None


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, color in (("raw", "tab:gray"), ("curated", "tab:green")):
        run = result["runs"][name]
        ax.plot(
            run["eval_tokens"],
            run["eval_loss"],
            marker="o",
            ms=3,
            color=color,
            label=f"{name} (final {run['eval_loss'][-1]:.3f})",
        )
    ax.axhline(result["raw_final_loss"], color="tab:gray", ls=":", lw=1)
    if result["tokens_to_raw_final"] is not None:
        ax.axvline(
            result["tokens_to_raw_final"],
            color="tab:green",
            ls="--",
            lw=1,
            label=f"curated reaches raw final at {result['token_ratio']:.2f}x tokens",
        )
    ax.set_xlabel("training tokens")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("assay ablation: curated vs raw, same model and budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_ablation(
    raw: str,
    curated: str,
    out: str,
    eval_path: str,
    eval_where: list[str] | None = None,
    eval_seqs: int = 64,
    max_tokens: int = 1_000_000,
    n_evals: int = 10,
    tokenizer: str | None = None,
    vocab_size: int = 4096,
    n_layer: int = 4,
    n_head: int = 4,
    n_kv_head: int = 2,
    d_model: int = 128,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    schedule: str = "cosine",
    seed: int = 0,
    device: str = "auto",
    quiet: bool = False,
) -> dict[str, Any]:
    """Train on RAW and CURATED, evaluate both, write ``result.json`` and ``ablation.png``."""
    from trainer_bridge.trainer import TrainConfig, train

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tok = str(tokenizer_file(tokenizer).parent) if tokenizer else None
    if tok is None:
        tok_dir = folder / "tokenizer"
        tok = (
            str(tok_dir)
            if (tok_dir / "tokenizer.json").exists()
            else str(train_tokenizer(raw, tok_dir, vocab_size=vocab_size))
        )
    steps = max(1, max_tokens // (seq_len * batch_size))
    eval_every = max(1, -(-steps // max(1, n_evals)))  # ceil: n_evals points, last at the end
    runs: dict[str, Any] = {}
    for name, snap in (("raw", raw), ("curated", curated)):
        cfg = TrainConfig(
            snapshot=snap,
            out_dir=str(folder / name),
            tokenizer=tok,
            model=dict(n_layer=n_layer, n_head=n_head, n_kv_head=n_kv_head, d_model=d_model),
            seq_len=seq_len,
            batch_size=batch_size,
            max_steps=steps,
            lr=lr,
            warmup_steps=max(1, steps // 20),
            schedule=schedule,
            seed=seed,
            device=device,
            eval_path=eval_path,
            eval_where=list(eval_where or []),
            eval_every=eval_every,
            eval_seqs=eval_seqs,
            log_every=max(1, steps // 10),
            quiet=quiet,
        )
        if not quiet:
            print(f"== {name}: {snap} ({steps} steps x {seq_len * batch_size} tokens)", flush=True)
        h = train(cfg)
        runs[name] = {
            "snapshot": snap,
            "eval_tokens": h["eval_tokens"],
            "eval_loss": h["eval_loss"],
            "train_tokens": h["tokens"],
            "train_loss": h["loss"],
            "tokens_per_s": h["tokens_per_s"],
        }
    raw_final = runs["raw"]["eval_loss"][-1]
    cur = runs["curated"]
    reach = tokens_to_reach(cur["eval_tokens"], cur["eval_loss"], raw_final)
    stay = tokens_to_stay(cur["eval_tokens"], cur["eval_loss"], raw_final)
    budget = steps * seq_len * batch_size
    gaps = [c - r for c, r in zip(cur["eval_loss"], runs["raw"]["eval_loss"], strict=True)]
    result = {
        "raw_final_loss": raw_final,
        "curated_final_loss": cur["eval_loss"][-1],
        "tokens_budget": budget,
        "tokens_to_raw_final": reach,
        "token_ratio": reach / budget if reach is not None else None,
        "tokens_to_stay_below_raw_final": stay,
        "sustained_token_ratio": stay / budget if stay is not None else None,
        "mean_eval_gap": sum(gaps) / len(gaps),  # curated - raw over the curve; < 0: curated better
        "settings": {
            "eval": eval_path,
            "eval_where": list(eval_where or []),
            "eval_seqs": eval_seqs,
            "tokenizer": tok,
            "model": dict(n_layer=n_layer, n_head=n_head, n_kv_head=n_kv_head, d_model=d_model),
            "seq_len": seq_len,
            "batch_size": batch_size,
            "steps": steps,
            "lr": lr,
            "schedule": schedule,
            "seed": seed,
        },
        "runs": runs,
    }
    result["plot"] = str(plot_curves(result, folder / "ablation.png"))
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
