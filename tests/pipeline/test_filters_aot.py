"""The text filters' word kernels compiled ahead of time (pipeline._aot, group "words"): each one
gives the JIT kernel's arrays on real text, the filters use them through ``words.KERNELS``
(falling back to the JIT kernel for other argument kinds), and an ``assay stage`` of Gopher
repetition / quality then runs without importing numba, with the same decisions and reasons as
with ASSAY_AOT=0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import _aot
from pipeline.filters import heuristics as h
from pipeline.filters import words as w

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def aot():  # type: ignore[no-untyped-def]
    mod = _aot.kernels("words")
    _aot.kernels("dedup")  # built here too: the stage commands' manifest word count uses it
    if mod is None:
        pytest.skip("no AOT build here (no C compiler / numba.pycc): the JIT kernels are used")
    return mod


def _col(raw_docs: list[dict]) -> pa.Array:
    extra = ["", "one", "naïve café — “quoted” it’s ¶ 日本語。\u3000x\u00a0y 🙂", "x" * 5000]
    return pa.array([r["text"] for r in raw_docs[:300]] + extra, pa.string())


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None or (a.dtype == b.dtype and np.array_equal(a, b))


def test_every_word_kernel_is_the_jit_kernel(aot, raw_docs: list[dict]) -> None:  # type: ignore[no-untyped-def]
    from pipeline.filters import _wordkernels as jit

    kn = w._kernels()
    data, offsets = w.utf8_buffers(_col(raw_docs))
    docs = np.arange(len(offsets) - 1, dtype=np.int64)
    cs, ce, doc_c = aot.chunk_bounds(data, offsets, docs)
    assert _same((cs, ce, doc_c), jit.chunk_bounds(data, offsets, docs)) and len(cs) > 100_000
    tabs = (kn.ct, kn.special, kn.fl, kn.merge_pairs, *kn.units, *kn.currencies)
    got = []
    for k in (aot, jit):  # each from an empty chunk cache, then again with the cache filled
        ctab, cfill = np.zeros_like(kn.ctab), np.zeros(1, np.int64)
        got.append([k.split_chunks(data, cs, ce, doc_c, *tabs, ctab, cfill, kn.rep) for _ in range(2)])
        got[-1].append((ctab, cfill))
    assert _same(tuple(map(tuple, got[0])), tuple(map(tuple, got[1])))
    tok_s, tok_e, flag, doc_tok = got[0][0]
    assert 0 < flag.sum() < len(flag)  # fallback chunks (non-ASCII) are in there
    fb = np.flatnonzero(flag)
    assert _same(aot.hash_spans(data, tok_s[fb], tok_e[fb]), jit.hash_spans(data, tok_s[fb], tok_e[fb]))
    lens = tok_e[fb] - tok_s[fb]  # one token per chunk
    u_off = np.arange(len(fb) + 1, dtype=np.int64)
    inv = np.arange(len(fb), dtype=np.int64)
    args = (tok_s, tok_e, flag, doc_tok, lens, u_off, inv)
    assert _same(aot.expand(*args), jit.expand(*args))
    tabs_q = h._char_tables()
    stops = h._stop_words(h.GopherQualityConfig())
    from pipeline.filters._wordtables import packed

    q = (data, tok_s, tok_e, doc_tok, tabs_q.punct, tabs_q.alpha, *packed(stops))
    assert _same(aot.quality_stats(*q), jit.quality_stats(*q))
    assert _same(aot.char_counts(data, offsets, docs), jit.char_counts(data, offsets, docs))
    lines_a = aot.repetition_lines(data, offsets, docs)
    assert _same(lines_a, jit.repetition_lines(data, offsets, docs))
    cfg = h.GopherRepetitionConfig()
    r = (
        data, tok_s, tok_e, doc_tok, np.ascontiguousarray(lines_a[:, 0]),
        np.array([n for n, _ in cfg.top_n_grams], np.int64), np.array([f for _, f in cfg.top_n_grams]),
        np.array([n for n, _ in cfg.dup_n_grams], np.int64), np.array([f for _, f in cfg.dup_n_grams]),
    )  # fmt: skip
    codes = aot.repetition(*r)
    assert _same(codes, jit.repetition(*r)) and (codes > 0).any()
    keys = np.array([12345 | 1, 777 | 1], np.uint64)
    vals = np.array([1, 2], np.uint64)
    ta, fa = np.zeros_like(kn.ctab), np.zeros(1, np.int64)
    tj, fj = np.zeros_like(kn.ctab), np.zeros(1, np.int64)
    aot.cache_put(ta, fa, keys, vals)
    jit.cache_put(tj, fj, keys, vals)
    assert np.array_equal(ta, tj) and fa[0] == fj[0] == 2


def test_kernels_use_aot_for_the_declared_kinds_only(aot) -> None:  # type: ignore[no-untyped-def]
    data = np.frombuffer(b"a b  c,", np.uint8).copy()
    offs = np.array([0, 7], np.int64)
    docs = np.array([0], np.int64)
    calls = w._KernelCalls()
    want = ([0, 2, 5], [1, 3, 7], [0, 3])
    assert [x.tolist() for x in calls.chunk_bounds(data, offs, docs)] == list(want)
    # int32 offsets are not the AOT kernel's kind: the JIT kernel takes them, same answer
    assert _aot.call("chunk_bounds", data, offs.astype(np.int32), docs) is NotImplemented
    assert [x.tolist() for x in calls.chunk_bounds(data, offs.astype(np.int32), docs)] == list(want)


def test_gopher_stage_commands_run_without_numba_and_decide_as_jit(aot, raw_docs: list[dict],  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": r["text"]}) + "\n" for i, r in enumerate(raw_docs[:200])))
    code = ("import atexit, runpy, sys; "
            "atexit.register(lambda: print('numba imported:', 'numba' in sys.modules)); "
            "sys.argv = ['assay', *sys.argv[1:]]; "
            "runpy.run_module('pipeline.cli', run_name='__main__', alter_sys=True)")
    for kind in ("filter.gopher_repetition", "filter.gopher_quality"):
        outs, kept = {}, {}
        for flag in ("1", "0"):
            out = tmp_path / f"{kind}-{flag}"
            env = dict(os.environ, PYTHONPATH=str(REPO), ASSAY_AOT=flag)
            p = subprocess.run([sys.executable, "-c", code, "stage", kind, str(src), str(out), "--no-progress"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stderr[-2000:]
            outs[flag] = p.stdout
            stats = json.loads((out / "stats.json").read_text())
            (st,) = [s for s in stats["stages"] if s["kind"] == kind]
            ids = pq.read_table(sorted((out / "shards").rglob("*.parquet"))).column("id").to_pylist()
            kept[flag] = (sorted(ids), st["dropped"])
        assert "numba imported: False" in outs["1"] and "numba imported: True" in outs["0"], kind
        assert kept["1"] == kept["0"] and 0 < len(kept["1"][0]) < 200 and kept["1"][1], kind
