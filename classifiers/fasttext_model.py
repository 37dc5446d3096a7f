"""fastText quality classifier: training, batched prediction and the ``classify.fasttext`` stage.

DCLM's curation filter is a fastText bigram classifier; this is the same tool, trained on any
labelled JSONL/Parquet. The package is ``fasttext-numpy2-wheel`` (the one datatrove itself
requires): it installs from a manylinux wheel next to numpy 2, and — unlike ``fasttext``
0.9.3 (compiles from sdist, ``predict`` breaks on numpy 2), ``fasttext-wheel`` (single-string
predict broken) and ``fasttext-predict`` (cannot train) — both trains and predicts.

Text is normalised the same way for training and prediction (:func:`normalize_text`):
whitespace runs (newlines included: fastText treats ``\\n`` as end of input) become one space,
optional lowercasing, and truncation to ``max_chars`` so one huge document costs bounded time.
The model's settings and held-out metrics live in a sidecar ``MODEL.bin.json``, so the stage
knows the positive label and the normalisation without being told again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from classifiers.data import LabelledTexts, default_positive_label
from pipeline import schema
from pipeline.registry import register
from pipeline.stage import PathField, Resources, ScoreStage, StageConfig

LABEL_PREFIX = "__label__"
logger = logging.getLogger(__name__)


def normalize_text(text: str, lowercase: bool = True, max_chars: int = 20_000) -> str:
    """One line of text as fastText sees it (see module docstring)."""
    if max_chars and len(text) > max_chars:
        text = text[:max_chars]
    text = " ".join(text.split())  # 2.7x faster than re.sub(r"\s+", " ") on long docs
    return text.lower() if lowercase else text


def sidecar_path(model_path: str | Path) -> Path:
    return Path(str(model_path) + ".json")


@dataclass
class FastTextParams:
    """Training hyper-parameters (fastText names in brackets).

    Defaults follow DCLM's quality classifier: word bigrams, 64-d, softmax. On
    quality_train (≈3.5k docs) training takes a few seconds on one core.
    """

    word_ngrams: int = 2  # [wordNgrams] 2 = unigrams + bigrams
    dim: int = 64  # [dim]
    epoch: int = 10  # [epoch]
    lr: float = 0.3  # [lr]
    min_count: int = 2  # [minCount] rarer words are dropped
    bucket: int = 200_000  # [bucket] hashed n-gram buckets; model ≈ bucket × dim × 4 B = 51 MB
    thread: int = 1  # [thread]
    seed: int = 0  # [seed] (fastText is deterministic only with thread=1)
    lowercase: bool = True
    max_chars: int = 20_000


@dataclass
class FastTextMeta:
    """What the sidecar JSON stores beside ``MODEL.bin``."""

    labels: list[str]
    positive_label: str
    lowercase: bool = True
    max_chars: int = 20_000
    params: dict[str, Any] = field(default_factory=dict)
    heldout: dict[str, Any] = field(default_factory=dict)
    train_file: str | None = None
    n_train: int = 0

    def save(self, model_path: str | Path) -> None:
        tmp = sidecar_path(model_path).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, default=float))
        os.replace(tmp, sidecar_path(model_path))

    @classmethod
    def load(cls, model_path: str | Path) -> FastTextMeta | None:
        p = sidecar_path(model_path)
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))


class FastTextModel:
    """A loaded fastText classifier that returns P(positive) or an expected label value."""

    def __init__(
        self,
        model_path: str | Path,
        positive_label: str | None = None,
        lowercase: bool | None = None,
        max_chars: int | None = None,
    ):
        import fasttext

        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(
                f"fastText model {path} not found; train one with "
                f"`assay classifier train fasttext --train FILE --output {path}`"
            )
        fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-model warning
        self.model = fasttext.load_model(str(path))
        self.labels = [lab.removeprefix(LABEL_PREFIX) for lab in self.model.get_labels()]
        meta = FastTextMeta.load(path)
        self.meta = meta
        if positive_label is None:
            positive_label = meta.positive_label if meta else default_positive_label(self.labels)
        if positive_label not in self.labels:
            raise ValueError(
                f"positive_label {positive_label!r} is not a label of {path} (labels: {self.labels})"
            )
        self.positive_label = positive_label
        self.lowercase = lowercase if lowercase is not None else (meta.lowercase if meta else True)
        self.max_chars = max_chars if max_chars is not None else (meta.max_chars if meta else 20_000)

    def _probs(self, texts: Sequence[str]) -> np.ndarray:
        """(n, n_labels) matrix of label probabilities, columns in ``self.labels`` order."""
        return self._probs_normalized(
            [normalize_text(t or "", self.lowercase, self.max_chars) for t in texts]
        )

    def _probs_normalized(self, lines: Sequence[str]) -> np.ndarray:
        """Like :meth:`_probs` for lines already passed through :func:`normalize_text`."""
        k = len(self.labels)
        # multilinePredict is the C++ batch path of model.predict(list): one call for all
        # rows. The trailing newline is the end-of-sentence token every training line had.
        lines = [line + "\n" for line in lines]
        all_labels, all_probs = self.model.f.multilinePredict(lines, k, 0.0, "strict")
        index = {LABEL_PREFIX + lab: j for j, lab in enumerate(self.labels)}
        out = np.zeros((len(lines), k), dtype=np.float64)
        for i, (labs, probs) in enumerate(zip(all_labels, all_probs, strict=True)):
            for lab, p in zip(labs, probs, strict=True):
                out[i, index[lab]] = p
        return np.clip(out, 0.0, 1.0)

    def predict_positive(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive label) per text, float64 in [0, 1]."""
        return self._probs(texts)[:, self.labels.index(self.positive_label)]

    def predict_expected(self, texts: Sequence[str]) -> np.ndarray:
        """Σ p(label) × float(label): the expected score for numeric labels (e.g. 0–5 edu)."""
        try:
            values = np.array([float(lab) for lab in self.labels])
        except ValueError:
            raise ValueError(
                f"score='expected' needs numeric labels, this model has {self.labels}"
            ) from None
        return self._probs(texts) @ values


_NAN_EXIT = 3


_TRAIN_CHILD = """
import json, sys
import fasttext
kwargs, out = json.loads(sys.argv[1]), sys.argv[2]
try:
    fasttext.train_supervised(**kwargs).save_model(out)
except RuntimeError as e:
    if "NaN" in str(e):
        sys.exit(%d)
    raise
""" % _NAN_EXIT


def _train_in_fresh_process(kwargs: dict[str, Any], out: str) -> int:
    """Train in a fresh Python child; returns its exit code (0 = model written to ``out``).

    Why a child: fasttext-numpy2-wheel 0.9.2 raises a spurious "Encountered NaN." on the
    second and later trainings in one process (seen in ~1 of 4 runs on quality_train, on the
    same file and settings, at any lr), while the first training in a fresh process succeeded
    12 times in 12. A plain subprocess (not multiprocessing) so that callers' scripts need no
    ``if __name__ == "__main__"`` guard; it costs ~0.2 s.
    """
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, json.dumps(kwargs), out])
    return proc.returncode


def train_fasttext(
    data: LabelledTexts,
    output: str | Path,
    params: FastTextParams | None = None,
    positive_label: str | None = None,
    heldout: LabelledTexts | None = None,
    train_file: str | None = None,
) -> FastTextMeta:
    """Train a supervised fastText model on ``data`` and write ``output`` + its sidecar.

    When ``heldout`` is given, its AUC/F1/calibration go into the sidecar (and are returned).
    """
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    params = params or FastTextParams()
    labels = sorted(set(data.labels))
    if len(labels) < 2:
        raise ValueError(f"need at least two distinct labels to train, got {labels}")
    positive = positive_label if positive_label is not None else default_positive_label(labels)
    if positive not in labels:
        raise ValueError(f"positive label {positive!r} not among the labels {labels}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        for text, lab in zip(data.texts, data.labels, strict=True):
            line = normalize_text(text, params.lowercase, params.max_chars)
            fh.write(f"{LABEL_PREFIX}{lab.replace(' ', '_')} {line}\n")
        tmp_train = fh.name
    tmp_model = output.with_name(output.name + ".tmp")
    lr = params.lr
    kwargs = dict(
        input=tmp_train, wordNgrams=params.word_ngrams, dim=params.dim, epoch=params.epoch,
        minCount=params.min_count, bucket=params.bucket, thread=params.thread,
        seed=params.seed, loss="softmax", verbose=0,
    )
    try:
        for attempt in range(6):
            code = _train_in_fresh_process({**kwargs, "lr": lr}, str(tmp_model))
            if code == 0:
                break
            if code != _NAN_EXIT or attempt == 5:
                raise RuntimeError(
                    f"fastText training failed (exit code {code}, lr={lr}); see the error above"
                    + ("; try a lower --lr" if code == _NAN_EXIT else "")
                )
            new_lr = lr / 2 if attempt % 2 == 1 else lr
            logger.warning("fastText reported NaN at lr=%s; retrying with lr=%s", lr, new_lr)
            lr = new_lr
    finally:
        os.unlink(tmp_train)
    os.replace(tmp_model, output)
    model = fasttext.load_model(str(output))
    meta = FastTextMeta(
        labels=[lab.removeprefix(LABEL_PREFIX) for lab in model.get_labels()],
        positive_label=positive,
        lowercase=params.lowercase,
        max_chars=params.max_chars,
        params={**params.__dict__, "lr": lr},
        train_file=train_file,
        n_train=len(data),
    )
    meta.save(output)
    if heldout is not None and len(heldout):
        from classifiers.metrics import evaluate

        scorer = FastTextModel(output)
        prob = scorer.predict_positive(heldout.texts)
        meta.heldout = evaluate(heldout.binary(positive), prob, prob)
        meta.save(output)
    return meta


class FastTextScorerConfig(StageConfig):
    model_path: str = PathField(kind="model", description="fastText .bin trained by `assay classifier train fasttext`")
    name: str = Field("fasttext", description="score column is quality.<name>")
    positive_label: str | None = Field(
        None, description="label whose probability is the score; default: from the sidecar JSON"
    )
    score: Literal["positive", "expected"] = Field(
        "positive",
        description="'positive' = P(positive_label); 'expected' = Σ p·label for numeric labels",
    )


@register
class FastTextScorer(ScoreStage):
    """Adds ``quality.<name>``: the fastText probability of the positive (good) label.

    Prediction runs in one C++ call per batch (``multilinePredict``): about 10–20k short
    documents/s per core; cost grows with text length up to ``max_chars``.
    """

    kind = "classify.fasttext"
    Config = FastTextScorerConfig
    inputs = (schema.TEXT,)
    outputs = ("quality.fasttext",)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=1.0)
    summary = "fastText quality score: P(good) of a trained classifier as quality.<name>"

    config: FastTextScorerConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        self._model: FastTextModel | None = None

    def output_columns(self) -> tuple[str, ...]:
        return (schema.quality_column(self.config.name),)

    def setup(self) -> None:
        if self._model is None:
            self._model = FastTextModel(self.config.model_path, self.config.positive_label)

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        self.setup()
        assert self._model is not None
        texts = table.column(schema.TEXT).to_pylist()
        if self.config.score == "expected":
            values = self._model.predict_expected(texts)
        else:
            values = self._model.predict_positive(texts)
        return {schema.quality_column(self.config.name): pa.array(values, pa.float32())}

    def teardown(self) -> None:
        self._model = None
