"""pipeline._aot: the ahead-of-time compiled kernels give the JIT kernels' bits on real text, are
used only for arguments of exactly their declared kinds, and `assay dedup minhash` then runs
without importing numba (and writes the same bytes as with ASSAY_AOT=0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline import _aot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def aot():  # type: ignore[no-untyped-def]
    mod = _aot.kernels()
    if mod is None:
        pytest.skip("no AOT build here (no C compiler / numba.pycc): the JIT kernels are used")
    return mod


def _texts(copyright_rows: list[dict]) -> pa.Array:
    extra = ["", "one", "a b c d", "naïve café   日本語\u3000x\u00a0y", "x" * 5000]
    return pa.array([r["text"] for r in copyright_rows[:400]] + extra, pa.large_string())


def test_signatures_sets_and_word_counts_are_the_jit_bits(aot, copyright_rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    from dedup import signature as sig
    from pipeline._wordcount import count_words

    data, offs = sig._string_buffers(_texts(copyright_rows))
    a, b = sig.DEFAULT_PARAMS.coefficients()
    n = len(offs) - 1
    out = []
    for use_aot in (True, False):
        s = np.empty((n, 128), np.uint32)
        so = np.empty(n + 1, np.int64)
        args = (data, offs, sig._BYTE_CLASS, a, b, 5, s, so)
        flat = aot.signatures_and_sets(*args) if use_aot else sig._kernels()["signatures_and_sets"](*args)
        out.append((s, flat, so))
    assert all(np.array_equal(x, y) for x, y in zip(*out, strict=True))
    assert out[0][1].size > 10_000
    assert aot.count_words(data, offs) == count_words(data, offs) > 1000
    # and through the callers' wrapper
    s2, f2, o2 = sig.signatures_and_sets(_texts(copyright_rows))
    assert np.array_equal(s2, out[0][0]) and np.array_equal(f2, out[0][1])


def test_bucket_pairs_and_verify_are_the_jit_results(aot) -> None:  # type: ignore[no-untyped-def]
    from dedup import cc_kernels as cc

    rng = np.random.default_rng(3)
    node = np.sort(rng.choice(10_000, 3000, replace=False)).astype(np.int64)
    cuts = np.sort(rng.choice(np.arange(1, 3000), 400, replace=False))
    starts = np.r_[0, cuts].astype(np.int64)
    ends = np.r_[cuts, 3000].astype(np.int64)
    res = []
    for k in (aot.bucket_pairs, cc.bucket_pairs):
        m = k(node, starts, ends, 4, 2, 9000, False, np.zeros(0, np.int64), np.zeros(0, np.int64))
        oa, ob = np.empty(m, np.int64), np.empty(m, np.int64)
        k(node, starts, ends, 4, 2, 9000, True, oa, ob)
        res.append((m, oa, ob))
    assert res[0][0] == res[1][0] > 100 and np.array_equal(res[0][1], res[1][1]) and np.array_equal(res[0][2], res[1][2])

    sets = [np.unique(rng.integers(0, 30, rng.integers(10, 30))).astype(np.uint32) for _ in range(300)]
    offs = np.r_[0, np.cumsum([s.size for s in sets])].astype(np.int64)
    flat = np.concatenate(sets)
    a = rng.integers(0, 300, 2000).astype(np.int64)
    b = rng.integers(0, 300, 2000).astype(np.int64)
    got = []
    for k in (aot.verify_spanning, cc.verify_spanning):
        parent = np.arange(300, dtype=np.int64)
        joined = np.zeros(2000, bool)
        stats = np.zeros(2, np.int64)
        k(a, b, flat, offs, 0.6, True, parent, joined, stats)
        got.append((parent, joined, stats))
    assert got[0][1].any() and not got[0][1].all()
    assert all(np.array_equal(x, y) for x, y in zip(*got, strict=True))


def test_verify_with_two_set_arrays_is_the_jit_result(aot) -> None:  # type: ignore[no-untyped-def]
    from dedup import cc_kernels as cc

    rng = np.random.default_rng(5)
    sets = [np.unique(rng.integers(0, 30, rng.integers(10, 30))).astype(np.uint32) for _ in range(300)]
    fa, fb = np.concatenate(sets[:100]), np.concatenate(sets[100:])
    oa = np.r_[0, np.cumsum([s.size for s in sets[:100]])].astype(np.int64)
    ob = np.r_[0, np.cumsum([s.size for s in sets[100:]])].astype(np.int64)
    sa = rng.integers(0, 100, 2000).astype(np.int64)
    sb = rng.integers(0, 200, 2000).astype(np.int64)
    got = []
    for k in (aot.verify_spanning_sets, cc.verify_spanning_sets):
        parent = np.arange(300, dtype=np.int64)
        joined = np.zeros(2000, bool)
        stats = np.zeros(2, np.int64)
        k(sa, sb + 100, sa, sb, fa, oa, fb, ob, 0.6, parent, joined, stats)
        got.append((parent, joined, stats))
    assert got[0][1].any() and not got[0][1].all()
    assert all(np.array_equal(x, y) for x, y in zip(*got, strict=True))


def test_call_takes_only_the_declared_kinds(aot) -> None:  # type: ignore[no-untyped-def]
    data = np.frombuffer(b"a b  c", np.uint8)
    offs = np.array([0, 6], np.int64)
    assert _aot.call("count_words", data, offs) == 3
    assert _aot.call("count_words", data, offs.astype(np.int32)) is NotImplemented  # wrong dtype
    assert _aot.call("count_words", data, np.array([0, 0, 6, 6], np.int64)[::2]) is NotImplemented  # strided
    assert _aot.call("count_words", data.astype(np.int8), offs) is NotImplemented


def test_dedup_command_runs_without_numba_and_writes_the_jit_bytes(aot, copyright_rows: list[dict],  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in copyright_rows[:300]))
    code = ("import atexit, runpy, sys; "
            "atexit.register(lambda: print('numba imported:', 'numba' in sys.modules)); "
            "sys.argv = ['assay', *sys.argv[1:]]; "
            "runpy.run_module('pipeline.cli', run_name='__main__', alter_sys=True)")
    outs = {}
    for flag in ("1", "0"):
        env = dict(os.environ, PYTHONPATH=str(REPO), ASSAY_AOT=flag)
        p = subprocess.run([sys.executable, "-c", code, "dedup", "minhash", str(src), str(tmp_path / flag)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        outs[flag] = p.stdout
    assert "numba imported: False" in outs["1"] and "numba imported: True" in outs["0"]
    files = sorted(f.relative_to(tmp_path / "1") for f in (tmp_path / "1").rglob("*.parquet") if "_work" not in f.parts)
    assert any(f.parts[0] == "shards" for f in files) and any(f.parts[0] == "state" for f in files)
    for f in files:
        assert (tmp_path / "1" / f).read_bytes() == (tmp_path / "0" / f).read_bytes(), f
