"""The CUDA MinHash kernel: compiled by nvcc here, its arithmetic bit-identical to the numba
kernel (host build of the same source), tiling and set building checked, fallback logged;
the on-GPU parity test runs where there is a GPU (marked ``gpu``)."""

from __future__ import annotations

import ctypes
import io
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cuda_ext import minhash as cm
from dedup import signature as sig

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NVCC = shutil.which("nvcc")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    import zstandard

    src = DATA / "neardup_changelog.jsonl.zst"
    carried = Path(__file__).resolve().parents[2] / ".gpu" / "minhash_docs.jsonl.gz"
    if not src.exists() and carried.exists():  # the GPU machine: bench/gpu_prepare.py's docs
        import gzip

        with gzip.open(carried, "rt", encoding="utf-8") as fh:
            docs = [json.loads(line)["text"] for line in fh]
        return docs[:300] + ["", "two words"]
    if not src.exists():
        pytest.skip("real data not available")
    out = []
    with open(src, "rb") as f:
        r = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for line in r:
            out.append(json.loads(line)["text"][:20000])  # some docs span several 2,048 tiles
            if len(out) >= 120:
                break
    return out + ["", "two words", "Ünïcode — 日本語 text with enough words to shingle"]


@pytest.mark.skipif(NVCC is None, reason="needs nvcc (CUDA toolkit)")
def test_kernel_compiles_to_ptx(tmp_path: Path) -> None:
    ptx = tmp_path / "k.ptx"
    subprocess.run(
        [NVCC, "-ptx", "-arch=sm_90", f"-DTILE={cm.TILE}", str(cm.KERNEL_FILE), "-o", str(ptx)],
        check=True,
        capture_output=True,
    )
    text = ptx.read_text()
    assert ".entry minhash_tiles" in text and "atom.global.min.u32" in text


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    if NVCC is None:
        pytest.skip("needs nvcc (CUDA toolkit)")
    so = tmp_path_factory.mktemp("cu") / "minhash_host.so"
    subprocess.run(
        [
            NVCC,
            "-shared",
            "-Xcompiler",
            "-fPIC",
            "-DASSAY_HOST_TEST",
            "-x",
            "cu",
            str(cm.KERNEL_FILE),
            "-o",
            str(so),
        ],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(so))


def _host_signatures(lib: ctypes.CDLL, texts: list[str], params: sig.MinhashParams) -> np.ndarray:
    flat, offs = sig.shingle_hashes(texts, params.ngram)
    a, b = params.coefficients()
    out = np.empty((len(offs) - 1, params.num_perm), dtype=np.uint32)
    flat, offs = np.ascontiguousarray(flat), np.ascontiguousarray(offs)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    lib.minhash_host(
        flat.ctypes.data_as(ctypes.c_void_p),
        offs.ctypes.data_as(ctypes.c_void_p),
        ctypes.c_longlong(len(offs) - 1),
        a.ctypes.data_as(ctypes.c_void_p),
        b.ctypes.data_as(ctypes.c_void_p),
        ctypes.c_int(params.num_perm),
        out.ctypes.data_as(ctypes.c_void_p),
    )
    return out


@pytest.mark.parametrize(
    "params", [sig.DEFAULT_PARAMS, sig.MinhashParams(num_perm=200, ngram=3, seed=7)]
)
def test_kernel_arithmetic_equals_numba(host_lib: ctypes.CDLL, texts: list[str], params) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(
        _host_signatures(host_lib, texts, params), sig.signatures(texts, params)
    )


def test_tiles_reduce_to_the_same_minimum(texts: list[str]) -> None:
    """The kernel's plan: docs cut into tiles, per-tile minima atomicMin'ed into one row —
    emulated with numpy here (tile of 7 shingles), equal to the numba signatures."""
    params = sig.MinhashParams(num_perm=16)
    flat, offs = sig.shingle_hashes(texts, params.ngram)
    doc, start, end = cm.plan_tiles(offs, tile=7)
    assert (end - start).max() <= 7 and (end > start).all()
    assert (
        np.bincount(doc, weights=end - start, minlength=len(texts)).tolist()
        == np.diff(offs).tolist()
    )
    a, b = params.coefficients()
    out = np.full((len(texts), params.num_perm), 0xFFFFFFFF, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for d, s, e in zip(doc, start, end, strict=True):
            v = ((a[:, None] * flat[None, s:e] + b[:, None]) >> np.uint64(32)).min(axis=1)
            np.minimum.at(out, (d,), v.astype(np.uint32))
    np.testing.assert_array_equal(out, sig.signatures(texts, params))


def test_shingle_sets_equal_numba(texts: list[str]) -> None:
    _, flat_sets, set_offs = sig.signatures_and_sets(texts)
    flat, offs = sig.shingle_hashes(texts)
    values, offsets = cm.shingle_sets(flat, offs, xp=np)
    np.testing.assert_array_equal(offsets, set_offs)
    np.testing.assert_array_equal(values, flat_sets)


def test_no_gpu_falls_back_to_the_cpu_kernel_with_a_warning(texts: list[str], caplog) -> None:  # type: ignore[no-untyped-def]
    if cm.cuda_unavailable_reason() is None:
        pytest.skip("a GPU is present: the fallback is not taken")
    cm._warned.clear()
    before = cm.FALLBACKS["calls"]
    with caplog.at_level(logging.WARNING, logger="cuda_ext.minhash"):
        got = cm.signatures_and_sets(texts, device="cuda")
        cm.signatures_and_sets(texts[:3], device="cuda")
    warnings = [r for r in caplog.records if "using the CPU (numba) kernel" in r.getMessage()]
    assert len(warnings) == 1  # once per process and reason, not once per batch
    assert cm.FALLBACKS["calls"] == before + 2
    for x, y in zip(got, sig.signatures_and_sets(texts), strict=True):
        np.testing.assert_array_equal(x, y)


def test_stage_device_cuda_gives_the_cpu_result(texts: list[str], tmp_path: Path) -> None:
    from dedup.minhash import MinhashDedupStage
    from pipeline.stage import StageContext

    table = pa.table({"doc_id": [f"d{i}" for i in range(len(texts))], "text": texts})
    arts = {}
    for device in ("cpu", "cuda"):
        stage = MinhashDedupStage({"device": device})
        stage.setup()
        ctx = StageContext(stage.name)
        arts[device] = stage.map(table, ctx)
        if device == "cuda" and cm.cuda_unavailable_reason():
            assert ctx.counters["cuda_fallback_batches"] == 1
    assert arts["cpu"].equals(arts["cuda"])
    with pytest.raises(ValueError, match="device"):
        MinhashDedupStage({"device": "tpu"})


@pytest.mark.gpu
@pytest.mark.skipif(cm.cuda_unavailable_reason() is not None, reason="needs a CUDA GPU + cupy")
def test_gpu_kernel_equals_numba(texts: list[str]) -> None:
    for params in (sig.DEFAULT_PARAMS, sig.MinhashParams(num_perm=200, ngram=3, seed=7)):
        got = cm.signatures_and_sets(texts * 20, params, device="cuda")
        for x, y in zip(got, sig.signatures_and_sets(texts * 20, params), strict=True):
            np.testing.assert_array_equal(x, y)
