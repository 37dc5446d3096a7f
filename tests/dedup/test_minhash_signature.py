"""The numba MinHash kernel against its numpy reference and against datasketch, on real text."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dedup import signature as sig
from dedup.evaluate import exact_pairs, prefix_length


@pytest.fixture(scope="module")
def texts(copyright_rows: list[dict]) -> list[str]:
    edge = [
        "",
        "   \n\t ",
        "one two",
        "Copyright: 1994 Debian Association, Inc.",
        "École naïve — 日本語のテキスト, ÜBER straße; emoji 🙂 end",
        # the kernel scans long docs as two halves cut at a separator near the middle:
        "x" * 200,  # no separator at all: one word
        "a" * 100 + " " + "b" * 99,  # the only separator is the cut
        "word " * 12 + "z" * 80,  # the second half is one word to the end
        ("Überprüfung " * 9).strip() + ". " + "日本語" * 20,  # multibyte runs across the middle
        "ab " * 21 + "c",  # 64 bytes: the shortest doc scanned as two halves
    ]
    return [r["text"] for r in copyright_rows[:120]] + edge


def test_words_are_lowercased_ascii_runs_and_nonascii_bytes() -> None:
    assert sig.words("Copyright: 1994 Debian Association, Inc.") == [
        b"copyright",
        b"1994",
        b"debian",
        b"association",
        b"inc",
    ]
    assert sig.words("naïve GPL-2+") == ["naïve".encode(), b"gpl", b"2"]


def test_kernel_signatures_equal_numpy_reference(texts: list[str]) -> None:
    params = sig.MinhashParams(num_perm=64, ngram=5, seed=7)
    ref = sig.signatures_reference(texts, params)
    fast = sig.signatures(texts, params)
    assert fast.dtype == np.uint32 and fast.shape == (len(texts), 64)
    np.testing.assert_array_equal(fast, ref)
    # empty docs have the all-max "empty" signature, others do not
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    assert len(empty) == 2 and (fast[empty] == sig.EMPTY).all()
    assert sum((fast == sig.EMPTY).all(axis=1)) == 2


def test_kernel_shingle_sets_equal_reference(texts: list[str]) -> None:
    s, flat, offsets = sig.signatures_and_sets(texts)
    np.testing.assert_array_equal(s, sig.signatures(texts))
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(
            flat[offsets[i] : offsets[i + 1]], sig.shingle_set_reference(t)
        )


def test_jaccard_kernel_and_prefix_filter_are_exact(texts: list[str]) -> None:
    _, flat, offsets = sig.signatures_and_sets(texts)
    n = len(texts)
    left, right = np.triu_indices(n, 1)
    fast = sig.jaccard_pairs(flat, offsets, left, right)
    sets = [flat[offsets[i] : offsets[i + 1]] for i in range(n)]
    for k in range(0, left.size, 97):  # a spread of pairs against the numpy reference
        assert fast[k] == pytest.approx(sig.jaccard_sorted(sets[left[k]], sets[right[k]]))
    # prefix-filtered ground truth == brute force over all pairs
    l2, r2, _ = exact_pairs(flat, offsets, 0.8)
    brute = set(zip(left[fast >= 0.8].tolist(), right[fast >= 0.8].tolist(), strict=True))
    assert set(zip(l2.tolist(), r2.tolist(), strict=True)) == brute
    assert len(brute) > 20
    assert prefix_length(10, 0.8) == 3


def test_jaccard_estimates_match_datasketch_on_real_near_duplicates(texts: list[str]) -> None:
    """Same shingles into datasketch (sha1 + Mersenne-prime permutations) and into our kernel:
    both estimate the exact Jaccard equally well, and agree with each other."""
    datasketch = pytest.importorskip("datasketch")
    docs = [t for t in texts[:120] if len(sig.words(t)) >= 20][:80]
    _, flat, offsets = sig.signatures_and_sets(docs)
    ours = sig.signatures(docs)
    theirs = []
    for t in docs:
        w = [x.decode("utf-8", "surrogatepass") for x in sig.words(t)]
        m = datasketch.MinHash(num_perm=128, seed=1)
        m.update_batch([" ".join(w[j : j + 5]).encode() for j in range(len(w) - 4)])
        theirs.append(m)
    rows = []
    for i, j in itertools.combinations(range(len(docs)), 2):
        exact = sig.jaccard_sorted(
            flat[offsets[i] : offsets[i + 1]], flat[offsets[j] : offsets[j + 1]]
        )
        if exact < 0.3:
            continue
        rows.append((exact, float((ours[i] == ours[j]).mean()), theirs[i].jaccard(theirs[j])))
    assert len(rows) >= 30, "expected many real near-duplicate licence pairs"
    exact_j, ours_j, ds_j = map(np.array, zip(*rows, strict=True))
    err_ours = np.abs(ours_j - exact_j).mean()
    err_ds = np.abs(ds_j - exact_j).mean()
    assert err_ours < 0.04, err_ours  # 128 permutations: std <= 0.044 per pair
    assert err_ours < err_ds + 0.015
    assert np.abs(ours_j - ds_j).mean() < 0.06


def test_numba_cache_dir_is_writable(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipeline._numba_cache import cache_dir

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nb"))
    assert cache_dir() == str(tmp_path / "nb")
    assert (tmp_path / "nb").is_dir()
