"""``filter.decontaminate``: drop documents that share an n-gram with a reference set.

datatrove's recipe (``NGramsDecontIndexer`` + ``NGramsDecontFilter``, datatrove 0.10.1), with
the reference set read from files instead of lighteval's task registry:

- text is normalized as datatrove's ``simplify_text`` does (lower case, every digit run -> "0",
  punctuation -> space, whitespace collapsed, diacritics stripped), then split into words as
  spaCy's blank English tokenizer does (our :mod:`pipeline.filters.words`, which reproduces it);
- the index holds xxh64 of every ``n_grams``-word window (default 12) of each reference
  *label* (``text``), plus — like datatrove's defaults — the windows that straddle the end of
  its *query* and the start of the label (``find_overlap_ngrams``), and optionally windows of
  the query alone (``find_query_ngrams``);
- a document is dropped (reason ``contaminated``) when any of its windows is in the index;
  ``contaminated.<task>`` counts which reference task it matched.

Reference rows: JSONL or Parquet with ``text`` (the answer/gold), optional ``query`` (the
question/prompt) and optional ``task`` (default: the file's stem). The index is a sorted numpy
``uint64`` array (8 bytes per n-gram) looked up with ``searchsorted``, not a Python dict.
A parity test checks the same keep/drop decisions as datatrove's own filter on real documents.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from pipeline.filters.heuristics import CONSTANTS_PATH
from pipeline.filters.words import split_words
from pipeline.registry import register
from pipeline.stage import FilterStage, PathField, Resources, StageConfig

_NUMBERS = re.compile(r"\d+([.,،٫⎖⎗⎘]\d+)?")  # str patterns: \d is any Unicode Nd digit
_WS = re.compile(r"\s+")


def _punctuation_table() -> dict[int, str]:
    import json

    punct = json.loads(CONSTANTS_PATH.read_text(encoding="utf-8"))["punctuation"]
    return str.maketrans(punct, " " * len(punct))


_PUNCT = _punctuation_table()


def simplify_text(text: str) -> str:
    """datatrove's ``simplify_text`` with its default ``TextNormConfig``."""
    text = text.lower()
    text = _NUMBERS.sub("0", text)
    text = text.translate(_PUNCT)
    text = _WS.sub(" ", text.strip())
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return text.strip()


def words(text: str) -> list[str]:
    return split_words(simplify_text(text))


def ngram_hashes(tokens: list[str], n: int) -> list[int]:
    h = xxhash.xxh64_intdigest
    return [h(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)]


def reference_hashes(
    label: str,
    query: str | None,
    n: int,
    find_query_ngrams: bool = False,
    find_overlap_ngrams: bool = True,
) -> list[int]:
    """The index entries for one reference item (datatrove's ``compute_hashes``)."""
    lt = words(label)
    out = ngram_hashes(lt, n)
    if query is not None:
        qt = words(query)
        if find_query_ngrams:
            out += ngram_hashes(qt, n)
        if find_overlap_ngrams:
            h = xxhash.xxh64_intdigest
            for i in range(n - 1):
                if len(qt) >= n - 1 - i and len(lt) >= i + 1:
                    out.append(h(" ".join(qt[-n + 1 + i :] + lt[: i + 1])))
    return out


class DecontaminateConfig(StageConfig):
    reference: list[str] = PathField(
        kind="file",
        min_length=1,
        description="JSONL/Parquet files or folders of reference rows (text, query?, task?)",
    )
    n_grams: int = Field(12, ge=1, le=64, description="words per window (datatrove's default: 12)")
    find_query_ngrams: bool = Field(False, description="also match windows of the query alone")
    find_overlap_ngrams: bool = Field(
        True, description="also match windows straddling query and label"
    )
    text_field: str = "text"
    query_field: str = "query"
    task_field: str = "task"


class ReferenceIndex:
    """Sorted unique n-gram hashes with the task each came from (first seen wins)."""

    def __init__(self, hashes: np.ndarray, tasks: np.ndarray, names: list[str]):
        self.hashes, self.tasks, self.names = hashes, tasks, names

    @classmethod
    def build(cls, cfg: DecontaminateConfig) -> ReferenceIndex:
        from pipeline.spec import resolve_paths
        from pipeline.rowfiles import iter_row_chunks

        all_h: list[np.ndarray] = []
        all_t: list[np.ndarray] = []
        names: list[str] = []
        for path in resolve_paths(cfg.reference):
            for rows in iter_row_chunks(path):
                for r in rows:
                    label = r.get(cfg.text_field)
                    if not isinstance(label, str):
                        continue
                    q = r.get(cfg.query_field)
                    task = str(r.get(cfg.task_field) or _stem(path))
                    if task not in names:
                        names.append(task)
                    hs = reference_hashes(
                        label,
                        q if isinstance(q, str) else None,
                        cfg.n_grams,
                        cfg.find_query_ngrams,
                        cfg.find_overlap_ngrams,
                    )
                    all_h.append(np.array(hs, dtype=np.uint64))
                    all_t.append(np.full(len(hs), names.index(task), dtype=np.int32))
        if not names:
            raise ValueError(
                f"filter.decontaminate: no reference rows with a {cfg.text_field!r} field in {cfg.reference}"
            )
        h = np.concatenate(all_h) if all_h else np.zeros(0, np.uint64)
        t = np.concatenate(all_t) if all_t else np.zeros(0, np.int32)
        uniq, first = np.unique(h, return_index=True)
        return cls(uniq, t[first], names)

    def first_match(self, hashes: list[int]) -> int | None:
        """Position of the first window found in the index, or None."""
        if not hashes or not len(self.hashes):
            return None
        q = np.array(hashes, dtype=np.uint64)
        pos = np.minimum(np.searchsorted(self.hashes, q), len(self.hashes) - 1)
        hit = np.flatnonzero(self.hashes[pos] == q)
        return int(hit[0]) if len(hit) else None

    def task_of(self, h: int) -> str:
        i = int(np.searchsorted(self.hashes, np.uint64(h)))
        return self.names[int(self.tasks[i])]


def _stem(path: Path) -> str:
    name = path.name
    for s in (".parquet", ".zst", ".gz", ".jsonl", ".json", ".ndjson"):
        name = name.removesuffix(s)
    return name


@register
class DecontaminateFilter(FilterStage):
    """Drop documents sharing an n-gram with a reference set (benchmark questions...)."""

    kind = "filter.decontaminate"
    Config = DecontaminateConfig
    summary = (
        "drop documents that share a 12-gram with reference (benchmark) texts, datatrove's recipe"
    )
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.5)
    config: DecontaminateConfig

    def setup(self) -> None:
        self.index = ReferenceIndex.build(self.config)
        self._counts: dict[str, int] = {}

    def keep(self, table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
        if not hasattr(self, "index"):
            self.setup()
        n = self.config.n_grams
        texts = table.column("text").to_pylist()
        mask = np.ones(len(texts), dtype=bool)
        reasons: list[str | None] = [None] * len(texts)
        for i, text in enumerate(texts):
            hs = ngram_hashes(words(text or ""), n)
            j = self.index.first_match(hs)
            if j is not None:
                mask[i] = False
                reasons[i] = "contaminated"
                task = self.index.task_of(hs[j])
                self._counts[task] = self._counts.get(task, 0) + 1
        return mask, reasons

    def process(self, table: pa.Table, ctx):  # type: ignore[no-untyped-def]
        self._counts = {}
        out = super().process(table, ctx)
        for task, c in self._counts.items():
            ctx.add(f"contaminated.{task}", c)
        return out
