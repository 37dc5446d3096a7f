"""ShardLoader: a resumable torch ``IterableDataset`` of packed token batches over a snapshot.

How it works, and why resume is exact:

1. **Token cache.** The snapshot's shards are tokenized once into a flat token file (a 256-byte
   header with a magic number and version, then uint16/uint32 ids, every doc followed by EOS)
   plus per-doc offsets, weights, phases and curriculum order. The cache sits beside the
   snapshot (``<snapshot>/tokens/<tokenizer sha[:12]>/``) and is keyed by the shard hashes.
2. **Order.** The document order of epoch ``e`` is a pure function of (manifest, seed, e): a
   seeded permutation, or — for a curriculum snapshot — the (phase, order) columns that
   ``assay curriculum build`` wrote. Concatenating docs in that order gives one token stream.
3. **Packing.** Sequence ``s`` is the stream slice ``[s*T, s*T + T + 1)`` (inputs and shifted
   labels); batch ``g`` holds sequences ``g*B … g*B+B-1``. Any batch is found by binary search
   over the cumulative doc lengths: random access, no state but a cursor.
   With ``shuffle_buffer`` set, the sequences are shuffled before batching: position ``p`` of
   the epoch reads stream sequence ``perm(p)``, where ``perm`` permutes each window of
   ``shuffle_buffer`` consecutive sequences (``0``: the whole epoch) with a keyed Feistel
   bijection of (seed, epoch, window). So a short run sees a sample of sequences from all over
   the pool rather than one contiguous slice of a few (often huge) documents; memory is O(1)
   in the window size and any batch is still a pure function of its index. For a curriculum
   snapshot the windows never cross a phase boundary: phases keep their order.
   With ``phase_budget`` (tokens) a curriculum snapshot is phased *in the loader*: an epoch is
   the budget, phase ``p`` owns the positions ``[P_p, P_p+1)`` given by the phases' token
   shares of the budget, and its positions sample sequences from *all* of phase ``p``'s
   documents (through the same shuffle; a phase smaller than its share is re-read with a new
   key each pass). So a run whose budget is a sliver of the snapshot still reaches the anneal
   phase at ``(1 - share) x budget``, while its stable phase samples the whole pool — the
   curriculum changes the order of the data, not how much of the pool the run draws from.
4. **Workers.** Worker ``w`` of ``W`` makes batches ``cursor + w, cursor + w + W, …``;
   ``DataLoader`` takes them round-robin, so the batch sequence is identical for any ``W`` and no
   batch is made twice. The checkpoint is one integer (the next global batch) plus identity
   checks; batches prefetched but not consumed are simply made again after a resume.

Every label token carries the ``weight`` of the document it comes from (SoftDedup weights;
1.0 when the snapshot has none), so the trainer can weight the loss per token.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from trainer_bridge.snapshot import curriculum_phases, read_manifest, shard_files
from trainer_bridge.tokenizer import TextTokenizer

MAGIC = 20261122
VERSION = 1
HEADER_INTS = 64  # 256 bytes of int32: magic, version, itemsize, n_tokens (low, high)


def _write_header(f: Any, itemsize: int, n_tokens: int) -> None:
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:5] = [MAGIC, VERSION, itemsize, n_tokens & 0x7FFFFFFF, n_tokens >> 31]
    f.seek(0)
    f.write(header.tobytes())


def read_token_file(path: Path) -> np.ndarray:
    """Memory-map a token file, checking its magic number and version."""
    header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if header[0] != MAGIC or header[1] != VERSION:
        raise ValueError(
            f"{path}: not an assay token file (magic {header[0]}, version {header[1]})"
        )
    itemsize = int(header[2])
    n = int(header[3]) + (int(header[4]) << 31)
    dtype = np.uint16 if itemsize == 2 else np.uint32
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_INTS * 4, shape=(n,))


@dataclass
class TokenCache:
    """The tokenized snapshot: flat tokens + per-doc offsets, weights, phases and order."""

    folder: Path
    tokens: np.ndarray  # memmap, all docs with EOS after each
    offsets: np.ndarray  # int64 [n_docs + 1]
    weights: np.ndarray  # float32 [n_docs]
    phase: np.ndarray  # int16 [n_docs]; -1 = no phase
    order: np.ndarray  # int64 [n_docs]; -1 = no curriculum order
    phases: list[str]
    meta: dict[str, Any]

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def open(cls, folder: Path) -> TokenCache:
        meta = json.loads((folder / "meta.json").read_text())
        return cls(
            folder=folder,
            tokens=read_token_file(folder / "tokens.bin"),
            offsets=np.load(folder / "offsets.npy"),
            weights=np.load(folder / "weights.npy"),
            phase=np.load(folder / "phase.npy"),
            order=np.load(folder / "order.npy"),
            phases=list(meta["phases"]),
            meta=meta,
        )


def build_token_cache(
    snapshot: str | Path,
    tokenizer: TextTokenizer,
    cache_dir: str | Path | None = None,
    batch_docs: int = 512,
) -> TokenCache:
    """Tokenize a snapshot once (reused while shard hashes and tokenizer are unchanged)."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    manifest = read_manifest(snapshot)
    folder = (
        Path(cache_dir)
        if cache_dir is not None
        else default_cache_dir(snapshot, str(manifest.get("snapshot_id")), tokenizer.sha256)
    )
    key = {
        "snapshot_id": manifest.get("snapshot_id"),
        "shards": [s.get("sha256") for s in manifest["shards"]],
        "tokenizer_sha256": tokenizer.sha256,
    }
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") == key:
            return TokenCache.open(folder)
    phases = [p["name"] for p in curriculum_phases(manifest)]
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    itemsize = 2 if tokenizer.vocab_size <= 65535 else 4
    dtype = np.uint16 if itemsize == 2 else np.uint32
    lengths: list[int] = []
    weights: list[np.ndarray] = []
    phase_idx: list[np.ndarray] = []
    orders: list[np.ndarray] = []
    n_tokens = 0
    files = shard_files(snapshot, manifest)
    total_rows = sum(int(s.get("rows", 0)) for s in manifest["shards"])
    with (
        open(tmp / "tokens.bin", "wb") as f,
        tqdm(total=total_rows, desc="tokenize", unit="doc", disable=total_rows < 20_000) as bar,
    ):
        _write_header(f, itemsize, 0)
        for path in files:
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            cols = ["text"] + [c for c in ("weight", "phase", "order") if c in names]
            for rb in pf.iter_batches(batch_size=batch_docs, columns=cols):
                ids = tokenizer.encode_batch(rb.column("text").to_pylist())
                for doc in ids:
                    doc.append(tokenizer.eos_id)
                    lengths.append(len(doc))
                flat = np.concatenate([np.asarray(doc, dtype=dtype) for doc in ids])
                f.write(flat.tobytes())
                n_tokens += len(flat)
                n = rb.num_rows
                if "weight" in cols:
                    w = rb.column("weight").to_numpy(zero_copy_only=False).astype(np.float32)
                    weights.append(np.nan_to_num(w, nan=1.0))
                else:
                    weights.append(np.ones(n, np.float32))
                if "phase" in cols:
                    names_ = rb.column("phase").to_pylist()
                    for p in names_:
                        if p is not None and p not in phases:
                            phases.append(p)
                    phase_idx.append(
                        np.array([-1 if p is None else phases.index(p) for p in names_], np.int16)
                    )
                else:
                    phase_idx.append(np.full(n, -1, np.int16))
                if "order" in cols:
                    o = rb.column("order").to_numpy(zero_copy_only=False)
                    orders.append(np.asarray(o, dtype=np.int64))
                else:
                    orders.append(np.full(n, -1, np.int64))
                bar.update(n)
        _write_header(f, itemsize, n_tokens)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(tmp / "offsets.npy", offsets)
    np.save(tmp / "weights.npy", np.concatenate(weights) if weights else np.ones(0, np.float32))
    np.save(tmp / "phase.npy", np.concatenate(phase_idx) if phase_idx else np.zeros(0, np.int16))
    np.save(tmp / "order.npy", np.concatenate(orders) if orders else np.zeros(0, np.int64))
    meta = {
        "key": key,
        "phases": phases,
        "n_tokens": n_tokens,
        "n_docs": len(lengths),
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    return TokenCache.open(folder)


def default_cache_dir(snapshot: str | Path, snapshot_id: str, tokenizer_sha: str) -> Path:
    """``<snapshot>/tokens/<tokenizer sha[:12]>`` — or, when the snapshot folder is read-only,
    ``$ASSAY_CACHE`` (default ``~/.cache/assay``) ``/tokens/<snapshot_id>/<sha[:12]>``."""
    here = Path(snapshot) / "tokens"
    if os.access(Path(snapshot), os.W_OK) or (here.exists() and os.access(here, os.W_OK)):
        return here / tokenizer_sha[:12]
    base = Path(os.environ.get("ASSAY_CACHE", Path.home() / ".cache" / "assay"))
    return base / "tokens" / snapshot_id / tokenizer_sha[:12]


def _seed_from(snapshot_id: str, seed: int, epoch: int) -> np.random.SeedSequence:
    ident = int.from_bytes(str(snapshot_id).encode()[:16].ljust(16, b"\0"), "little")
    return np.random.SeedSequence([seed, epoch, ident & 0xFFFFFFFF, ident >> 96])


_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, well-mixing 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def feistel_permute(i: int, n: int, key: int, rounds: int = 4) -> int:
    """Image of ``i`` under a keyed pseudo-random permutation of ``range(n)``.

    A balanced Feistel network on the smallest even bit width covering ``n``, with cycle
    walking (re-apply until the value falls below ``n``): a bijection for any ``n``, computed
    in O(1) memory, so a shuffle of billions of sequences needs no permutation array.
    """
    if not 0 <= i < n:
        raise IndexError(f"{i} not in range({n})")
    if n == 1:
        return 0
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    k = _mix64(key & _M64)
    x = i
    while True:
        left, right = x >> half, x & mask
        for r in range(rounds):
            left, right = right, left ^ (_mix64(k ^ (r << 56) ^ right) & mask)
        x = (left << half) | right
        if x < n:
            return x


class ShardLoader(IterableDataset):
    """Packed ``(input_ids, labels, weights)`` batches over a snapshot, resumable exactly.

    Args:
        snapshot: snapshot folder (holds ``manifest.json``).
        tokenizer: a tokenizer folder/file (``tokenizer.json``) or a :class:`TextTokenizer`.
        seq_len: tokens per sequence ``T`` (labels are the next ``T`` tokens).
        batch_size: sequences per batch ``B``.
        seed: shuffles documents per epoch (ignored for curriculum snapshots, whose order is
            already a pure function of their manifest, seed and epoch).
        max_batches: stop after this many batches in total (``None``: run forever, epoch after
            epoch).
        cache_dir: where the token cache goes (default: inside the snapshot).
        remote_token: bearer token when ``snapshot`` is ``http(s)://HOST/v1/snapshots/ID``
            (default ``$ASSAY_TOKEN``); the shards are pulled into a verified local cache
            (``remote_cache``, default ``$ASSAY_CACHE/remote``) by :mod:`trainer_bridge.remote`.
        shuffle_buffer: ``None`` (default): sequences in stream order. ``0``: shuffle the
            sequences of the whole epoch (of each curriculum phase). ``K > 0``: shuffle within
            consecutive windows of ``K`` sequences.
        phase_budget: tokens of the run a curriculum snapshot's phases are scaled to (step 3
            above); ``None``: phases follow each other in the stream, each as long as its docs.
    """

    def __init__(
        self,
        snapshot: str | Path,
        tokenizer: str | Path | TextTokenizer,
        seq_len: int = 256,
        batch_size: int = 8,
        seed: int = 0,
        max_batches: int | None = None,
        cache_dir: str | Path | None = None,
        remote_token: str | None = None,
        remote_cache: str | Path | None = None,
        shuffle_buffer: int | None = None,
        phase_budget: int | None = None,
    ) -> None:
        super().__init__()
        if shuffle_buffer is not None and int(shuffle_buffer) < 0:
            raise ValueError(f"shuffle_buffer={shuffle_buffer}: use None, 0 (whole epoch) or > 0")
        self.shuffle_buffer = None if shuffle_buffer is None else int(shuffle_buffer)
        if str(snapshot).startswith(("http://", "https://")):
            from trainer_bridge.remote import pull_snapshot

            snapshot = pull_snapshot(str(snapshot), token=remote_token, cache_dir=remote_cache)
        self.snapshot = str(snapshot)
        self.manifest = read_manifest(snapshot)
        self.tokenizer = (
            tokenizer if isinstance(tokenizer, TextTokenizer) else TextTokenizer(tokenizer)
        )
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.max_batches = max_batches
        self.cache = build_token_cache(snapshot, self.tokenizer, cache_dir)
        n_tok = int(self.cache.offsets[-1])
        self.curriculum = bool(len(self.cache.order)) and bool((self.cache.order >= 0).all())
        self.stream_seqs = max(0, (n_tok - 1) // self.seq_len)
        self.seqs_per_epoch = self.stream_seqs
        self._segments: list[tuple[int, int]] | None = None
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self.phase_budget = None if phase_budget is None else int(phase_budget)
        self._plan: list[tuple[int, int, int, int, int]] = []  # (pos a, pos b, seg k, seg a, seg b)
        if self.phase_budget is not None:
            self._plan = self._phase_plan(self.phase_budget)
            self.seqs_per_epoch = self.phase_budget // self.seq_len
        self.batches_per_epoch = self.seqs_per_epoch // self.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"snapshot {self.snapshot} has {n_tok} tokens, fewer than one batch of "
                f"batch_size={self.batch_size} x seq_len={self.seq_len}; lower them"
            )
        self.next_batch = 0

    # -- order -----------------------------------------------------------------------------
    def doc_order(self, epoch: int) -> np.ndarray:
        """Document order of ``epoch``: pure function of (manifest, seed, epoch)."""
        c = self.cache
        if self.curriculum:
            phase = np.where(c.phase < 0, np.iinfo(np.int16).max, c.phase)
            return np.lexsort((c.order, phase))
        rng = np.random.default_rng(_seed_from(self.manifest["snapshot_id"], self.seed, epoch))
        return rng.permutation(c.n_docs)

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            order = self.doc_order(epoch)
            lengths = np.diff(self.cache.offsets)[order]
            ends = np.cumsum(lengths)
            self._epoch_cache = (epoch, order, ends)
        return self._epoch_cache[1], self._epoch_cache[2]

    def _stream_phase_starts(self) -> dict[str, int]:
        """Stream position (tokens) at which each curriculum phase starts in an epoch."""
        if not self.cache.phases:
            return {}
        order, ends = self._epoch(0)
        starts = np.concatenate([[0], ends[:-1]])
        out: dict[str, int] = {}
        for i, name in enumerate(self.cache.phases):
            hit = np.nonzero(self.cache.phase[order] == i)[0]
            if len(hit):
                out[name] = int(starts[hit[0]])
        return out

    def phase_token_starts(self) -> dict[str, int]:
        """Token position of the run (within an epoch) at which each curriculum phase starts:
        in the stream, or — with ``phase_budget`` — at its share of the budget."""
        if self.phase_budget is None:
            return self._stream_phase_starts()
        names = [n for n in self.cache.phases if n in self._stream_phase_starts()]
        return {names[k]: pa * self.seq_len for pa, pb, k, _, _ in self._plan if pb > pa}

    def segments(self) -> list[tuple[int, int]]:
        """``[start, end)`` stream sequence ranges the shuffle stays inside (one per phase)."""
        if self._segments is None:
            T, n = self.seq_len, self.stream_seqs
            cuts = sorted(
                {0, n} | {min(n, -(-t // T)) for t in self._stream_phase_starts().values()}
            )
            self._segments = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
        return self._segments

    def _phase_plan(self, budget: int) -> list[tuple[int, int, int, int, int]]:
        """Positions of the budget each phase owns: ``(pos a, pos b, segment, seg a, seg b)``."""
        if not self.curriculum or not self.cache.phases:
            raise ValueError(
                f"phase_budget={budget}: {self.snapshot} is not a curriculum snapshot (no phase "
                "and order columns); build one with `assay curriculum build` or drop phase_budget"
            )
        n_pos = budget // self.seq_len
        if n_pos < self.batch_size:
            raise ValueError(
                f"phase_budget={budget} is less than one batch of {self.batch_size} x "
                f"{self.seq_len} tokens"
            )
        from trainer_bridge.snapshot import curriculum_phases

        share = {p["name"]: float(p.get("target_token_frac", p.get("token_frac", 0.0)))
                 for p in curriculum_phases(self.manifest)}
        present = self._stream_phase_starts()
        names = [n for n in self.cache.phases if n in present]  # stream order = segment order
        segs = self.segments()
        if len(segs) != len(names):
            raise ValueError(f"{self.snapshot}: phases {names} do not map to sequence ranges")
        total = sum(share.get(n, 0.0) for n in names)
        if total <= 0:
            raise ValueError(f"{self.snapshot}: the manifest gives its phases no token share")
        plan, acc, pos = [], 0.0, 0
        for k, name in enumerate(names):
            acc += share.get(name, 0.0) / total
            end = n_pos if k == len(names) - 1 else int(round(acc * n_pos))
            plan.append((pos, end, k, *segs[k]))
            pos = end
        return plan

    def _shuffled(self, epoch: int, k: int, a: int, b: int, offset: int, rep: int = 0) -> int:
        """Stream sequence at ``offset`` of segment ``k = [a, b)`` under the sequence shuffle."""
        if self.shuffle_buffer is None:
            return a + offset
        K = self.shuffle_buffer or (b - a)
        w, o = divmod(offset, K)
        size = min(K, b - a - w * K)
        key = (self.seed * 1_000_003 + epoch) * 1_000_003 + k * 65_537 + w
        if rep:  # another pass over a phase smaller than its share of the budget
            key = _mix64(key ^ (rep << 40))
        return a + w * K + feistel_permute(o, size, key)

    def sequence_at(self, epoch: int, position: int) -> int:
        """Stream sequence read at ``position`` of ``epoch`` (identity without shuffling)."""
        if self._plan:
            for pa, pb, k, a, b in self._plan:
                if pa <= position < pb:
                    rep, off = divmod(position - pa, b - a)
                    return self._shuffled(epoch, k, a, b, off, rep)
            raise IndexError(f"position {position} not in the budget's {self.seqs_per_epoch}")
        if self.shuffle_buffer is None:
            return position
        for k, (a, b) in enumerate(self.segments()):
            if a <= position < b:
                return self._shuffled(epoch, k, a, b, position - a)
        raise IndexError(f"position {position} not in range({self.seqs_per_epoch})")

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    # -- random access ---------------------------------------------------------------------
    def _span(self, epoch: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and per-token doc weights of stream ``[start, start+length)`` in ``epoch``."""
        order, ends = self._epoch(epoch)
        c = self.cache
        toks = np.empty(length, dtype=np.int64)
        wts = np.empty(length, dtype=np.float32)
        d = int(np.searchsorted(ends, start, side="right"))
        pos, filled = start, 0
        while filled < length:
            doc = int(order[d])
            doc_start = int(ends[d] - (c.offsets[doc + 1] - c.offsets[doc]))
            a = pos - doc_start
            take = min(length - filled, int(ends[d]) - pos)
            src = int(c.offsets[doc]) + a
            toks[filled : filled + take] = c.tokens[src : src + take]
            wts[filled : filled + take] = c.weights[doc]
            filled += take
            pos += take
            d += 1
        return toks, wts

    def batch(self, index: int) -> dict[str, Any]:
        """Global batch ``index`` (epochs follow each other): a pure function of the index."""
        epoch, b = divmod(index, self.batches_per_epoch)
        T, B = self.seq_len, self.batch_size
        x = np.empty((B, T + 1), dtype=np.int64)
        w = np.empty((B, T + 1), dtype=np.float32)
        for i in range(B):
            s = self.sequence_at(epoch, b * B + i)
            x[i], w[i] = self._span(epoch, s * T, T + 1)
        return {
            "input_ids": torch.from_numpy(x[:, :-1].copy()),
            "labels": torch.from_numpy(x[:, 1:].copy()),
            "weights": torch.from_numpy(w[:, 1:].copy()),
            "batch_index": index,
            "epoch": epoch,
        }

    # -- iteration + state -----------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        g = self.next_batch + wid
        while self.max_batches is None or g < self.max_batches:
            item = self.batch(g)
            if info is None:
                self.next_batch = g + 1
            yield item
            g += nw

    def state_dict(self) -> dict[str, Any]:
        """A few integers plus identity checks: enough to resume exactly."""
        return {
            "next_batch": self.next_batch,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "shuffle_buffer": self.shuffle_buffer,
            "phase_budget": self.phase_budget,
            "snapshot_id": self.manifest.get("snapshot_id"),
            "tokenizer_sha256": self.tokenizer.sha256,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("seed", "seq_len", "batch_size", "shuffle_buffer", "phase_budget",
                  "snapshot_id", "tokenizer_sha256"):
            mine = self.state_dict()[k]
            if state.get(k) != mine:
                raise ValueError(
                    f"loader state was saved with {k}={state.get(k)!r} but this loader has "
                    f"{k}={mine!r}; rebuild the loader with the checkpoint's settings"
                )
        self.next_batch = int(state["next_batch"])

    def dataloader(self, num_workers: int = 0) -> StatefulLoader:
        """A ``DataLoader`` over this dataset that keeps :meth:`state_dict` current."""
        return StatefulLoader(self, num_workers)


class StatefulLoader:
    """Iterates a :class:`ShardLoader` through ``torch.utils.data.DataLoader`` workers.

    Worker copies of the dataset advance their own cursors; this wrapper records the last batch
    handed to the consumer, so ``state_dict()`` is exact even with prefetching workers.
    """

    def __init__(self, dataset: ShardLoader, num_workers: int = 0) -> None:
        self.dataset = dataset
        self.num_workers = num_workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from torch.utils.data import DataLoader

        dl = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=False,
            prefetch_factor=2 if self.num_workers else None,
        )
        for item in dl:
            self.dataset.next_batch = int(item["batch_index"]) + 1
            yield item

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
