"""Build a curriculum snapshot: phases, per-phase domain mixing, and a deterministic order.

Phases are listed in training order with their share of tokens, e.g. ``stable:0.9,anneal:0.1``
(MiniCPM's WSD found ~10% of tokens in the decay phase works). Later phases get the best data:
the last phase takes the highest-``quality`` documents until it holds its token share, the one
before it the next best, and the first phase takes everything left. So the anneal phase, where
the trainer decays the learning rate, sees the cleanest text.

Per-phase mixing weights (``anneal:literature=2``) rescale how often a domain's documents appear
in a phase: a weight ``w`` keeps each doc ``floor(w)`` times plus once more with probability
``w - floor(w)`` (decided by a hash of doc_id and seed, so it is reproducible). The domain of a
doc is its ``source`` cut at the first ``:`` or ``=`` (a Debian package, a site, a file stem).

The order inside a phase is a seeded shuffle (``random``) or ascending ``difficulty`` with
seeded tie-breaking (``easy-to-hard``); either way it is a pure function of (manifest, seed,
epoch). Output shards carry ``phase``, ``order`` (global position), ``weight`` and the
``curriculum.*`` signals; the manifest's ``extra.curriculum`` records phases, mixture and token
counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curriculum.signals import compute_signals
from curriculum.snapshot_io import read_manifest, read_snapshot, write_snapshot

ORDERS = ("random", "easy-to-hard")


@dataclass(frozen=True)
class Phase:
    name: str
    token_frac: float


def parse_phases(spec: str) -> list[Phase]:
    """``"stable:0.9,anneal:0.1"`` → phases (shares must be positive and sum to 1)."""
    phases = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*([A-Za-z][\w-]*)\s*:\s*([0-9.]+)\s*", part)
        if not m:
            raise ValueError(f"phase {part!r} must look like NAME:SHARE, e.g. 'anneal:0.1'")
        phases.append(Phase(m.group(1), float(m.group(2))))
    total = sum(p.token_frac for p in phases)
    if abs(total - 1.0) > 1e-6 or any(p.token_frac <= 0 for p in phases):
        raise ValueError(f"phase shares in {spec!r} must be > 0 and sum to 1 (they sum to {total})")
    if len({p.name for p in phases}) != len(phases):
        raise ValueError(f"phase names in {spec!r} must be unique")
    return phases


def parse_mix(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``["anneal:literature=2", "stable:changelog=0.5"]`` → {phase: {domain: weight}}."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        m = re.fullmatch(r"\s*([\w-]+)\s*:\s*([^=]+?)\s*=\s*([0-9.]+)\s*", item)
        if not m:
            raise ValueError(f"mix {item!r} must look like PHASE:DOMAIN=WEIGHT")
        out.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return out


def domain_of(source: str | None) -> str:
    s = source or "unknown"
    return re.split(r"[:=]", s, maxsplit=1)[0] or "unknown"


def _rng(snapshot_id: str, seed: int, epoch: int, salt: int) -> np.random.Generator:
    ident = int.from_bytes(snapshot_id.encode()[:16].ljust(16, b"\0"), "little")
    return np.random.default_rng([seed, epoch, salt, ident & 0xFFFFFFFF, ident >> 96])


def _hash_unit(doc_ids: list[str], seed: int) -> np.ndarray:
    import xxhash

    return np.array(
        [xxhash.xxh3_64_intdigest(d, seed=seed) / 2**64 for d in doc_ids], dtype=np.float64
    )


def build_curriculum(
    snapshot: str | Path,
    output: str | Path,
    phases: str | list[Phase] = "stable:0.9,anneal:0.1",
    mix: dict[str, dict[str, float]] | None = None,
    order: str = "random",
    seed: int = 0,
    epoch: int = 0,
    rows_per_shard: int = 10_000,
    budget_tokens: int | None = None,
    tokenizer: str | None = None,
) -> dict[str, Any]:
    """Write a curriculum snapshot of ``snapshot`` to ``output``; return its manifest.

    ``budget_tokens`` scales the phases to a training budget instead of to the whole snapshot:
    phase ``i`` holds ``share_i x budget_tokens`` tokens (the last phases the best documents,
    the first a seeded random sample of the rest) and every document that does not fit goes to
    a trailing ``rest`` phase after them. A run of that budget then reaches the anneal phase
    (with shares of the whole snapshot, a budget far smaller than the snapshot never would).
    Tokens are counted with ``tokenizer`` (a folder with ``tokenizer.json``) when given, else
    whitespace words stand in for tokens.
    """
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: use one of {ORDERS}")
    if not isinstance(rows_per_shard, int) or rows_per_shard < 1:  # 0 failed in range(); < 0 wrote no shards
        raise ValueError(f"rows_per_shard={rows_per_shard!r}: give at least 1 row per shard")
    if Path(output).resolve() == Path(snapshot).resolve():
        raise ValueError(f"output {str(output)!r} is the input snapshot's own folder: it would replace the "
                         "snapshot it reads; choose another folder")
    plist = parse_phases(phases) if isinstance(phases, str) else list(phases)
    mix = mix or {}
    unknown = set(mix) - {p.name for p in plist}
    if unknown:
        raise ValueError(f"mix names phase(s) {sorted(unknown)} not in {[p.name for p in plist]}")
    src_manifest = read_manifest(snapshot)
    sid = str(src_manifest["snapshot_id"])
    table = read_snapshot(snapshot)
    stale = [
        c for c in table.column_names if c in ("phase", "order") or c.startswith("curriculum.")
    ]
    table = table.drop_columns(stale)  # re-building a curriculum snapshot replaces its columns
    n = table.num_rows
    if n == 0:
        raise ValueError(f"snapshot {snapshot} has no rows")
    sig = compute_signals(table)
    words = sig["words"]
    if tokenizer is not None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
        texts = table.column("text").to_pylist()
        words = np.array(
            [len(e.ids) + 1 for k in range(0, n, 2048) for e in tok.encode_batch(texts[k : k + 2048])],
            dtype=np.float64,
        )
    total_words = float(words.sum()) if budget_tokens is None else float(budget_tokens)
    if budget_tokens is not None and budget_tokens <= 0:
        raise ValueError(f"budget_tokens={budget_tokens} must be > 0")

    # Assign phases: last phase gets the best quality, filling its token share.
    by_quality = np.argsort(-sig["quality"], kind="stable")
    phase_of = np.zeros(n, dtype=np.int64)
    cursor = 0
    for pi in range(len(plist) - 1, 0, -1):
        target = plist[pi].token_frac * total_words
        got = 0.0
        while cursor < n and got < target:
            phase_of[by_quality[cursor]] = pi
            got += words[by_quality[cursor]]
            cursor += 1
    # the rest stays in phase 0 -- or, with a budget, phase 0 takes its share of the rest in a
    # seeded random order and what is left goes to the trailing `rest` phase
    if budget_tokens is not None:
        rest = Phase("rest", 0.0)
        left = np.sort(by_quality[cursor:])
        left = left[np.argsort(_hash_unit([str(d) for d in table.column("doc_id").to_pylist()],
                                          seed + 1)[left], kind="stable")]
        phase_of[left] = len(plist)
        target = plist[0].token_frac * total_words
        got = 0.0
        for i in left:
            if got >= target:
                break
            phase_of[i] = 0
            got += words[i]
        plist = [*plist, rest]

    domains = [domain_of(s) for s in table.column("source").to_pylist()]
    doc_ids = table.column("doc_id").to_pylist()
    u = _hash_unit(doc_ids, seed)
    rows: list[np.ndarray] = []
    phase_rows: list[np.ndarray] = []
    phase_info: list[dict[str, Any]] = []
    mixture: dict[str, dict[str, float]] = {}
    for pi, ph in enumerate(plist):
        idx = np.nonzero(phase_of == pi)[0]
        weights = mix.get(ph.name, {})
        if weights:
            reps = []
            for i in idx:
                w = weights.get(domains[i], 1.0)
                k = int(np.floor(w)) + int(u[i] < w - np.floor(w))
                reps.append(k)
            idx = np.repeat(idx, reps)
        rng = _rng(sid, seed, epoch, salt=pi)
        if order == "random":
            idx = idx[rng.permutation(len(idx))]
        else:
            jitter = rng.random(len(idx))
            idx = idx[np.lexsort((jitter, sig["difficulty"][idx]))]
        rows.append(idx)
        phase_rows.append(np.full(len(idx), pi))
        ph_words = float(words[idx].sum())
        dom_words: dict[str, float] = {}
        for i in idx:
            dom_words[domains[i]] = dom_words.get(domains[i], 0.0) + float(words[i])
        mixture[ph.name] = {
            d: round(w / ph_words, 6) if ph_words else 0.0
            for d, w in sorted(dom_words.items(), key=lambda kv: -kv[1])
        }
        phase_info.append(
            {
                "name": ph.name,
                "target_token_frac": ph.token_frac,
                "docs": int(len(idx)),
                "tokens": int(ph_words),
                "mean_quality": round(float(sig["quality"][idx].mean()), 4) if len(idx) else None,
                "mean_difficulty": round(float(sig["difficulty"][idx].mean()), 4)
                if len(idx)
                else None,
            }
        )
    all_tokens = sum(p["tokens"] for p in phase_info) or 1
    for p in phase_info:
        p["token_frac"] = round(p["tokens"] / all_tokens, 6)

    order_idx = np.concatenate(rows)
    out = table.take(pa.array(order_idx))
    weight = (
        out.column("weight").cast(pa.float32()).fill_null(1.0)
        if "weight" in out.column_names
        else pa.array(np.ones(len(order_idx), np.float32))
    )
    if "weight" in out.column_names:
        out = out.drop_columns(["weight"])
    out = out.append_column("weight", weight)
    names = np.array([p.name for p in plist])
    out = out.append_column("phase", pa.array(names[np.concatenate(phase_rows)], pa.string()))
    out = out.append_column("order", pa.array(np.arange(len(order_idx), dtype=np.int64)))
    for key in ("difficulty", "quality", "compression_ratio", "readability"):
        out = out.append_column(
            f"curriculum.{key}", pa.array(sig[key][order_idx].astype(np.float32))
        )

    def shards() -> Any:
        for ph in plist:
            part = out.filter(pc.equal(out.column("phase"), ph.name))
            for k in range(0, max(part.num_rows, 1), rows_per_shard):
                chunk = part.slice(k, rows_per_shard)
                if chunk.num_rows:
                    yield (f"{ph.name}-{k // rows_per_shard:04d}", chunk, ph.name)

    params = {
        "phases": [{"name": p.name, "token_frac": p.token_frac} for p in plist],
        "mix": mix,
        "order": order,
        "seed": seed,
        "epoch": epoch,
        "rows_per_shard": rows_per_shard,
        "budget_tokens": budget_tokens,
        "token_unit": "tokens" if tokenizer is not None else "words",
    }
    extra = {
        "curriculum": {
            **params,
            "phases": phase_info,
            "mixture": mixture,
            "signals": [
                "compression_ratio",
                "words",
                "words_per_sentence",
                "syllables_per_word",
                "readability",
                "quality columns",
            ],
        }
    }
    return write_snapshot(
        output,
        shards(),
        name=f"{src_manifest.get('name', 'snapshot')}-curriculum",
        spec={"curriculum": params, "input_snapshot": sid},
        parents=[sid],
        stats={"docs_in": n, "docs_out": int(len(order_idx))},
        extra=extra,
    )
