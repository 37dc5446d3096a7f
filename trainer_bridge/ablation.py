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
import os
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


# -- the lever ablation: several arms x several seeds x several eval sets ---------------------

#: two-sided 97.5 % quantiles of Student's t for df = 1..30 (95 % intervals of a mean)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def _t975(df: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # the table (3 decimals; df > 30 uses df = 30)
        return _T975[min(df, 30) - 1]


def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean and 95 % t-interval of ``values`` (the seeds), with n, sd, min and max."""
    import statistics

    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "lo": None, "hi": None}
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else 0.0
    half = _t975(n - 1) * sd / n**0.5 if n > 1 else float("nan")
    return {"n": n, "mean": m, "lo": m - half, "hi": m + half, "sd": sd,
            "min": min(values), "max": max(values)}


def token_ratio(
    tokens: list[int], arm: list[float], base: list[float], budget: int
) -> float:
    """Tokens the arm needs to match the baseline's final loss, over the baseline's tokens.

    < 1: the arm reaches the baseline's final loss early (ratio = its tokens to get there /
    budget). > 1: it never does within the budget; then the ratio is budget / the tokens the
    *baseline* needed to reach the arm's final loss (how much longer the arm would have to
    train, if the curves keep their shape). Defined for any pair of curves, 1 when equal.
    """
    reach = tokens_to_reach(tokens, arm, base[-1])
    if reach is not None:
        return reach / budget
    back = tokens_to_reach(tokens, base, arm[-1])
    return budget / back if back else float("inf")


def _parse_named(items: list[str] | tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"{what} {it!r} must look like NAME=PATH")
        k, v = it.split("=", 1)
        if not k or k in out:
            raise ValueError(f"{what} name {k!r} is empty or given twice")
        out[k] = v
    return out


def prep_inputs(prep: str) -> tuple[dict[str, str], dict[str, str], str | None, str | None]:
    """(arms, eval sets, tasks file, tokenizer) from a ``bench.ablation_data`` output folder."""
    root = Path(prep)
    order = ("raw", "heuristics", "dedup", "quality", "softdedup", "curriculum", "full")
    arms = {a: str(root / f"snap_{a}") for a in order if (root / f"snap_{a}" / "manifest.json").exists()}
    evals = {e: str(root / "eval" / f"{e}.jsonl") for e in ("prose", "neutral", "raw_heldout")
             if (root / "eval" / f"{e}.jsonl").exists()}
    tasks = root / "eval" / "tasks.jsonl"
    tok = root / "tokenizer"
    if not arms or not evals:
        raise ValueError(f"{prep}: no snap_*/manifest.json or eval/*.jsonl (run bench.ablation_data)")
    return arms, evals, str(tasks) if tasks.exists() else None, (
        str(tok) if (tok / "tokenizer.json").exists() else None
    )


def run_one(
    snapshot: str,
    out: Path,
    tokenizer: Any,
    eval_data: dict[str, Any],
    items: list[dict[str, Any]],
    seed: int,
    steps: int,
    n_evals: int,
    model: dict[str, Any],
    seq_len: int,
    batch_size: int,
    lr: float,
    shuffle_buffer: int | None,
    device: str,
    phase_to_budget: bool = False,
) -> dict[str, Any]:
    """One training run, evaluated on every eval set at ``n_evals`` points and on the tasks at
    the end. Driven in segments with ``Trainer.run(stop_at=...)`` (the trainer's own resume
    path), so the losses are those of one uninterrupted run. ``phase_to_budget``: a curriculum
    snapshot's phases are scaled to the run's tokens in the loader."""
    import shutil
    import time

    from trainer_bridge.evaluation import evaluate, score_choices
    from trainer_bridge.trainer import TrainConfig, Trainer

    shutil.rmtree(out, ignore_errors=True)  # a half-finished run starts again from scratch
    cfg = TrainConfig(
        snapshot=snapshot, out_dir=str(out), tokenizer=str(tokenizer.folder), model=dict(model),
        seq_len=seq_len, batch_size=batch_size, max_steps=steps, lr=lr,
        warmup_steps=max(1, steps // 20), schedule="wsd", decay_frac=0.1, seed=seed,
        device=device, log_every=0, quiet=True, shuffle_buffer=shuffle_buffer,
        phase_to_budget=phase_to_budget,
    )
    t0 = time.perf_counter()
    tr = Trainer(cfg)
    points = sorted({max(1, round(steps * (k + 1) / n_evals)) for k in range(n_evals)})
    curves: dict[str, list[float]] = {e: [] for e in eval_data}
    for stop in points:
        tr.run(stop_at=stop)
        for e, data in eval_data.items():
            curves[e].append(evaluate(tr.model, data, device=tr.device))
    tasks = score_choices(tr.model, tokenizer, items, seq_len, device=tr.device) if items else {}
    tpb = tr.tokens_per_step
    res = {
        "snapshot": snapshot,
        "seed": seed,
        "eval_tokens": [p * tpb for p in points],
        "eval_loss": curves,
        "tasks": tasks,
        "train_loss_last": tr.history["loss"][-1],
        "decay_start_step": tr.decay_start,
        "phase_budget": tr.data.phase_budget,
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)  # 2 MB x runs: not worth keeping
    return res


CHECKPOINT_NAME = "checkpoint.pt"


def _claim(lock: Path) -> bool:
    """Take ``lock`` for this process (several processes may share one ablation folder, each
    running the runs no one else has claimed); a lock whose process is gone is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return False  # held by a live process
            except (ProcessLookupError, ValueError):
                lock.unlink(missing_ok=True)  # stale: its process died
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def run_levers(
    arms: dict[str, str],
    evals: dict[str, str],
    out: str,
    tasks: str | None = None,
    baseline: str = "raw",
    seeds: list[int] | None = None,
    max_tokens: int = 614_400,
    n_evals: int = 12,
    eval_seqs: int = 128,
    tokenizer: str | None = None,
    n_layer: int = 3,
    n_head: int = 4,
    n_kv_head: int = 2,
    d_model: int = 96,
    seq_len: int = 64,
    batch_size: int = 16,
    lr: float = 3e-3,
    shuffle_buffer: int | None = 0,
    task_items: int | None = None,
    device: str = "cpu",
    quiet: bool = False,
    train: bool = True,
    phase_in_loader: bool = True,
) -> dict[str, Any]:
    """Every arm x every seed on identical settings; per-run results in OUT/runs/*.json (a
    killed ablation resumes from the runs already done; several processes given the same OUT
    share the runs out through lock files), the summary in OUT/summary.json and OUT/summary.md
    (over the runs finished so far; ``train=False`` only summarizes them).

    ``phase_in_loader``: an arm whose snapshot is a curriculum (its manifest records phases)
    has its phases scaled to the run's token budget by the loader (``ShardLoader(phase_budget=
    ...)``): it draws the same number of tokens from the same pool as the other arms, and only
    the order differs — the best-scored share last, where the LR decays."""
    from trainer_bridge.evaluation import build_eval_tensor, read_items, read_texts
    from trainer_bridge.snapshot import curriculum_phases, read_manifest
    from trainer_bridge.tokenizer import TextTokenizer

    if baseline not in arms:
        raise ValueError(f"baseline arm {baseline!r} not among {sorted(arms)}")
    seeds = list(range(5)) if seeds is None else list(seeds)
    folder = Path(out)
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        tok_dir = folder / "tokenizer"
        if not (tok_dir / "tokenizer.json").exists():
            train_tokenizer(arms[baseline], tok_dir, vocab_size=2048)
        tokenizer = str(tok_dir)
    tok = TextTokenizer(tokenizer_file(tokenizer).parent)
    eval_data = {
        e: build_eval_tensor(read_texts(p), tok, seq_len,
                             eval_seqs, per_doc=seq_len + 1)
        for e, p in evals.items()
    }
    items = read_items(tasks) if tasks else []
    if task_items is not None:  # the first task_items items of each task
        seen: dict[str, int] = {}
        kept = []
        for it in items:
            seen[it["task"]] = seen.get(it["task"], 0) + 1
            if seen[it["task"]] <= task_items:
                kept.append(it)
        items = kept
    steps = max(1, max_tokens // (seq_len * batch_size))
    model = dict(n_layer=n_layer, n_head=n_head, n_kv_head=n_kv_head, d_model=d_model)
    phased = {a for a, snap in arms.items()
              if phase_in_loader and curriculum_phases(read_manifest(snap))}
    settings = {
        "arms": arms, "evals": evals, "tasks": tasks, "baseline": baseline, "seeds": seeds,
        "tokenizer": str(tok.folder), "vocab_size": tok.vocab_size, "model": model,
        "seq_len": seq_len, "batch_size": batch_size, "steps": steps,
        "tokens_budget": steps * seq_len * batch_size, "lr": lr, "schedule": "wsd (10% decay)",
        "shuffle_buffer": shuffle_buffer, "n_evals": n_evals,
        "phased_in_loader": sorted(phased),
        "eval_rows": {e: int(d.shape[0]) for e, d in eval_data.items()},
        "task_items": {t: sum(1 for it in items if it["task"] == t)
                       for t in sorted({it["task"] for it in items})},
    }
    runs: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in arms}
    for seed in seeds:  # seed-major: a partial ablation still has complete seed pairs
        for arm, snap in arms.items():
            path = folder / "runs" / f"{arm}-s{seed}.json"
            if train and not path.exists() and _claim(path.with_suffix(".lock")):
                try:
                    r = run_one(snap, folder / "runs" / f"{arm}-s{seed}", tok, eval_data, items,
                                seed, steps, n_evals, model, seq_len, batch_size, lr,
                                shuffle_buffer, device, phase_to_budget=arm in phased)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(r) + "\n")
                    os.replace(tmp, path)
                finally:
                    path.with_suffix(".lock").unlink(missing_ok=True)
                if not quiet:
                    fin = " ".join(f"{e} {v[-1]:.3f}" for e, v in r["eval_loss"].items())
                    print(f"{arm:>10} seed {seed}: {fin} ({r['seconds']} s)", flush=True)
            if path.exists():
                runs[arm][seed] = json.loads(path.read_text())
    summary = summarize(runs, settings)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(summary_markdown(summary) + "\n")
    try:
        summary["plot"] = str(plot_levers(runs, settings, folder / "levers.png"))
    except ImportError:  # matplotlib is optional
        pass
    return summary


def summarize(runs: dict[str, dict[int, dict[str, Any]]], settings: dict[str, Any]) -> dict[str, Any]:
    """Per arm: final losses, token ratios and task scores vs the baseline, over paired seeds."""
    base = settings["baseline"]
    budget = settings["tokens_budget"]
    out: dict[str, Any] = {"settings": settings, "arms": {}}
    for arm, by_seed in runs.items():
        seeds = sorted(s for s in by_seed if s in runs[base])
        row: dict[str, Any] = {"seeds": seeds, "eval": {}, "tasks": {}}
        for e in settings["evals"]:
            final = [by_seed[s]["eval_loss"][e][-1] for s in seeds]
            d = [by_seed[s]["eval_loss"][e][-1] - runs[base][s]["eval_loss"][e][-1] for s in seeds]
            ratio = [
                token_ratio(by_seed[s]["eval_tokens"], by_seed[s]["eval_loss"][e],
                            runs[base][s]["eval_loss"][e], budget)
                for s in seeds
            ]
            row["eval"][e] = {
                "final_loss": mean_ci(final),
                "delta_final_loss": mean_ci(d),
                "token_ratio": mean_ci(ratio),
                "token_ratio_per_seed": ratio,
                "seeds_better": sum(x < 0 for x in d),
            }
        tasks = sorted({t for s in seeds for t in by_seed[s]["tasks"]})
        for t in tasks:
            row["tasks"][t] = {
                m: mean_ci([by_seed[s]["tasks"][t][m] for s in seeds])
                for m in ("acc", "acc_per_char", "p_correct")
            }
            row["tasks"][t]["delta_acc_per_char"] = mean_ci(
                [by_seed[s]["tasks"][t]["acc_per_char"] - runs[base][s]["tasks"][t]["acc_per_char"]
                 for s in seeds]
            )
        row["seconds_per_run"] = mean_ci([by_seed[s]["seconds"] for s in seeds])["mean"]
        out["arms"][arm] = row
    return out


def _fmt(ci: dict[str, Any], digits: int = 2, signed: bool = False) -> str:
    if not ci.get("n"):
        return "—"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if ci["n"] < 2:
        return f.format(ci["mean"])
    return f"{f.format(ci['mean'])} [{f.format(ci['lo'])}, {f.format(ci['hi'])}]"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The lever table (mean [95 % CI] over seeds) and the task table, as Markdown."""
    st = summary["settings"]
    evals = list(st["evals"])
    done = {a: len(r["seeds"]) for a, r in summary["arms"].items()}
    lines = [
        f"Seeds finished (paired with {st['baseline']}): "
        + ", ".join(f"{a} {n}" for a, n in done.items())
        + f" of {len(st['seeds'])} requested; budget {st['tokens_budget']:,} tokens; model "
        f"{st['model']}; T={st['seq_len']} B={st['batch_size']}; vocab {st['vocab_size']}; "
        f"baseline `{st['baseline']}`. Mean [95 % t-interval] over seeds; token ratio < 1 = the "
        "arm reaches the baseline's final loss with that share of the tokens.",
        "",
        "| arm | " + " | ".join(f"token ratio ({e}) | Δ final loss ({e}) | better seeds ({e})"
                               for e in evals) + " |",
        "|---|" + "---:|---:|---:|" * len(evals),
    ]
    for arm, row in summary["arms"].items():
        cells = []
        for e in evals:
            r = row["eval"][e]
            cells += [_fmt(r["token_ratio"]), _fmt(r["delta_final_loss"], 3, True),
                      f"{r['seeds_better']}/{len(row['seeds'])}"]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | " + " | ".join(f"final loss ({e})" for e in evals) + " |",
              "|---|" + "---:|" * len(evals)]
    for arm, row in summary["arms"].items():
        lines.append(f"| {arm} | " + " | ".join(_fmt(row["eval"][e]["final_loss"], 3)
                                               for e in evals) + " |")
    tasks = sorted({t for row in summary["arms"].values() for t in row["tasks"]})
    if tasks:
        lines += ["", "| arm | " + " | ".join(f"{t} acc_per_char | Δ vs base | p_correct"
                                               for t in tasks) + " |",
                  "|---|" + "---:|---:|---:|" * len(tasks)]
        for arm, row in summary["arms"].items():
            cells = []
            for t in tasks:
                r = row["tasks"].get(t)
                cells += ([_fmt(r["acc_per_char"], 3), _fmt(r["delta_acc_per_char"], 3, True),
                           _fmt(r["p_correct"], 3)] if r else ["—"] * 3)
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_levers(runs: dict[str, dict[int, dict[str, Any]]], settings: dict[str, Any],
                path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    evals = list(settings["evals"])
    fig, axes = plt.subplots(1, len(evals), figsize=(6.5 * len(evals), 4.2), dpi=110,
                             squeeze=False)
    for ax, e in zip(axes[0], evals):
        for arm, by_seed in runs.items():
            if not by_seed:
                continue
            curves = np.array([r["eval_loss"][e] for r in by_seed.values()])
            toks = next(iter(by_seed.values()))["eval_tokens"]
            m = curves.mean(0)
            ax.plot(toks, m, marker="o", ms=2.5, label=f"{arm} ({m[-1]:.3f})",
                    lw=2 if arm == settings["baseline"] else 1.2)
            if len(curves) > 1:
                ax.fill_between(toks, curves.min(0), curves.max(0), alpha=0.12)
        ax.set_title(f"held-out loss: {e} (mean over {len(settings['seeds'])} seeds, band = range)")
        ax.set_xlabel("training tokens")
        ax.set_ylabel("nats/token")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
