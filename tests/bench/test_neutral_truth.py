"""The neutral dedup ground truth (bench/neutral_truth.py) equals brute force on real text."""

from __future__ import annotations

import itertools
import random

from bench.neutral_truth import exact_pairs, neutral_text, shingle_sets, shingles


def _near_dups(raw_docs: list[dict]) -> list[str]:
    """Real paragraphs plus edited copies of some (a word dropped, a line appended)."""
    rng = random.Random(3)
    base = [d["text"][:1500] for d in raw_docs[:120]]
    out = list(base)
    for t in rng.sample(base, 40):
        w = t.split()
        if len(w) > 20:
            k = rng.randrange(len(w))
            out.append(" ".join(w[:k] + w[k + 1 :]))
            out.append(t + "\nSee also the changelog.")
    out += ["", "one two", "One two!"]
    return out


def test_exact_pairs_equal_brute_force(raw_docs):
    texts = _near_dups(raw_docs)
    sets = [set(shingles(t)) for t in texts]
    want = set()
    for i, j in itertools.combinations(range(len(texts)), 2):
        a, b = sets[i], sets[j]
        if a or b:
            if len(a & b) / len(a | b) >= 0.8:
                want.add((i, j))
    left, right, jac = exact_pairs(shingle_sets(texts), 0.8)
    got = set(zip(left.tolist(), right.tolist()))
    assert len(want) >= 40  # the edited copies (and "one two" vs "One two!")
    assert got == want
    assert (jac >= 0.8).all()


def test_neutral_text_gives_the_same_words():
    import re

    t = "Foo_bar BAZ, naïve—café 3.14 x_y_z ÉCOLE"
    assert neutral_text(t).split() == [w.replace("_", "\u00b7") for w in re.findall(r"\w+", t.lower())]
    # and assay's own splitter agrees word for word on the rewritten text
    from dedup.signature import words

    assert [w.decode() for w in words(neutral_text(t))] == neutral_text(t).split()
