"""The torch MinHash kernel is bit-identical to the numba kernel (torch CPU here, CUDA if any)."""

from __future__ import annotations

import numpy as np
import pytest

from dedup import signature as sig

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:  # type: ignore[no-untyped-def]
    import io
    import json

    import zstandard

    out = []
    with open(shared_data / "neardup_changelog.jsonl.zst", "rb") as f:
        r = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for line in r:
            out.append(json.loads(line)["text"][:4000])
            if len(out) >= 150:
                break
    return out + ["", "two words", "Ünïcode — 日本語 text with enough words to shingle"]


@pytest.fixture(scope="module")
def shared_data():  # type: ignore[no-untyped-def]
    from pathlib import Path

    p = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not (p / "neardup_changelog.jsonl.zst").exists():
        pytest.skip("real data not available")
    return p


def test_torch_cpu_equals_numba(texts: list[str]) -> None:
    from cuda_ext.minhash_torch import signatures_torch

    params = sig.MinhashParams(num_perm=128, ngram=5, seed=3)
    got = signatures_torch(texts, params, device="cpu", chunk=4096)  # several chunks
    np.testing.assert_array_equal(got, sig.signatures(texts, params))
    flat, offs = sig.shingle_hashes(texts[:3])
    np.testing.assert_array_equal(flat[offs[1] : offs[2]], sig.shingle_hashes_reference(texts[1]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_equals_numba(texts: list[str]) -> None:
    from cuda_ext.minhash_torch import signatures_torch

    got = signatures_torch(texts, device="cuda")
    np.testing.assert_array_equal(got, sig.signatures(texts))
