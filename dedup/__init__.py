"""Deduplication: exact (``dedup.exact``), MinHash LSH near-duplicates (``dedup.minhash``) and
SoftDedup reweighting (``dedup.softdedup``), all barrier stages keyed by ``doc_id``.

Modules: :mod:`dedup.signature` (tokenizer, shingles, MinHash; numba kernel + numpy reference),
:mod:`dedup.lsh` (bands, verified union-find, index format), :mod:`dedup.evaluate` (exact
ground truth, doc-level metrics), :mod:`dedup.cli` (``assay dedup``).
"""
