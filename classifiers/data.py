"""Labelled text for training and evaluating scorers: reading, label handling, held-out split.

Training files are JSONL (optionally ``.gz``/``.zst``) or Parquet with a text field and a label
field; labels may be ints or strings. The held-out split is a pure function of each record's
text hash and a seed, so re-running a training command never leaks test rows into training.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash


@dataclass
class LabelledTexts:
    """Parallel lists of texts and string labels (labels normalised with ``str``)."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledTexts:
        return LabelledTexts([self.texts[i] for i in idx], [self.labels[i] for i in idx])

    def binary(self, positive: str) -> np.ndarray:
        """1 where the label equals ``positive``, else 0."""
        return np.array([lab == positive for lab in self.labels], dtype=np.int8)


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name
    if name.endswith(".zst"):
        import zstandard

        fh = path.open("rb")
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield dict records from a JSONL(.gz/.zst) or Parquet file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"training/input file {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
        return
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def read_labelled(
    path: str | Path, text_field: str = "text", label_field: str = "label"
) -> LabelledTexts:
    """Read (text, label) pairs; rows without text or label are errors naming the field."""
    texts: list[str] = []
    labels: list[str] = []
    for i, rec in enumerate(iter_records(path)):
        if text_field not in rec or label_field not in rec:
            missing = text_field if text_field not in rec else label_field
            raise ValueError(
                f"{path}: record {i} has no field {missing!r} (fields: {sorted(rec)}); "
                f"pass --text-field/--label-field"
            )
        text, label = rec[text_field], rec[label_field]
        if text is None or label is None:
            continue
        texts.append(str(text))
        labels.append(str(label))
    if not texts:
        raise ValueError(f"{path}: no labelled records")
    return LabelledTexts(texts, labels)


def holdout_mask(texts: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of held-out rows: ``xxh64(text, seed) < fraction`` — stable across runs."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    limit = int(fraction * 2**64)
    return np.array(
        [xxhash.xxh64_intdigest(t.encode("utf-8", "surrogatepass"), seed=seed) < limit for t in texts],
        dtype=bool,
    )


def split_holdout(
    data: LabelledTexts, fraction: float = 0.2, seed: int = 0
) -> tuple[LabelledTexts, LabelledTexts]:
    """(train, held-out) split by text hash; see :func:`holdout_mask`."""
    mask = holdout_mask(data.texts, fraction, seed)
    return data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))


def default_positive_label(labels: Sequence[str]) -> str:
    """The label treated as "good": ``1`` if present, else the only non-``0`` of two labels.

    Raises with the labels seen when there is no obvious choice (pass ``--positive-label``).
    """
    distinct = sorted(set(labels))
    for cand in ("1", "True", "true", "positive", "pos", "good", "hq", "high"):
        if cand in distinct:
            return cand
    if len(distinct) == 2 and "0" in distinct:
        return distinct[1] if distinct[0] == "0" else distinct[0]
    raise ValueError(
        f"cannot tell which label is the positive (good) one among {distinct[:20]}; "
        f"pass --positive-label / positive_label"
    )
