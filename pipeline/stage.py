"""The Stage protocol: what every step of a pipeline is.

A stage has a registered ``kind`` ("filter.gopher"), a validated pydantic config, declared
input/output columns and resources, ``setup()`` once per worker (load models there),
``process(table, ctx) -> table`` and ``teardown()``.

Three shapes cover everything:

- :class:`ScoreStage` only adds columns (``lang``, ``quality.fasttext``); it never drops.
- :class:`FilterStage` decides keep/drop from a table and gives a reason per dropped row; the
  base class splits the table, counts ``dropped.<reason>`` and hands dropped rows to the context
  (which writes them aside when the spec asks for it).
- :class:`BarrierStage` needs the whole corpus before it can decide (exact dedup, MinHash,
  SoftDedup): ``map`` emits a small artifact per input shard (keyed by ``doc_id``), ``reduce``
  turns all artifacts into a state on disk, ``apply`` uses that state on every shard.

Tables are Arrow tables; there are no pandas payloads anywhere in the core.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline import schema

#: JSON-schema key that marks a config field as naming files (value: the path kind).
PATH_KEY = "x-assay-path"
#: ``file``/``dir``: something on disk the stage opens; ``model``: a model file or folder;
#: ``snapshot``: an earlier snapshot the stage reads (recorded as a parent in the lineage).
PATH_KINDS = ("file", "dir", "model", "snapshot")


def PathField(default: Any = ..., *, kind: str = "file", **kwargs: Any) -> Any:  # noqa: N802 - a Field
    """A config field that names a file, folder, model or snapshot (a str or a list of str).

    Declaring it lets the REST service confine it under its roots before anything is opened,
    and lets the manifest record ``snapshot`` fields as parents: one mechanism for every stage,
    no list of special cases. Use it for every field that names something on disk.
    """
    if kind not in PATH_KINDS:
        raise ValueError(f"PathField kind {kind!r}: expected one of {PATH_KINDS}")
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[PATH_KEY] = kind
    return Field(default, json_schema_extra=extra, **kwargs)


class StageConfig(BaseModel):
    """Base for stage configs: unknown fields are errors, so typos never pass silently; NaN and
    infinities are refused (a NaN threshold would silently keep or drop everything)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def path_fields(cls) -> dict[str, str]:
        """Fields declared with :func:`PathField`: name -> kind."""
        out = {}
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra
            if isinstance(extra, dict) and extra.get(PATH_KEY):
                out[name] = str(extra[PATH_KEY])
        return out


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; the Ray executor sizes actor pools from this."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.5


@dataclass
class StageContext:
    """Per-shard, per-stage bookkeeping handed to ``process``.

    Counters merge across shards and workers into ``stats.json``. ``drop`` records rows a
    stage removes; they are counted always and kept (for writing aside) when
    ``keep_dropped`` is set.
    """

    stage_name: str
    shard_key: str = ""
    shard_index: int = 0
    keep_dropped: bool = False
    counters: Counter[str] = field(default_factory=Counter)
    dropped: list[pa.Table] = field(default_factory=list)

    def add(self, name: str, n: int | float = 1) -> None:
        self.counters[name] += n

    def drop(self, table: pa.Table, reasons: str | Sequence[str]) -> None:
        """Record ``table``'s rows as dropped; ``reasons`` is one reason or one per row."""
        n = table.num_rows
        if n == 0:
            return
        if isinstance(reasons, str):
            self.counters[f"dropped.{reasons}"] += n
            reason_list = [reasons] * n
        else:
            reason_list = list(reasons)
            if len(reason_list) != n:
                raise ValueError(f"{self.stage_name}: {n} dropped rows but {len(reason_list)} reasons")
            for r, c in Counter(reason_list).items():
                self.counters[f"dropped.{r}"] += c
        self.counters["dropped"] += n
        if self.keep_dropped:
            table = _set_column(table, schema.DROP_REASON, pa.array(reason_list, pa.string()))
            table = _set_column(table, schema.DROP_STAGE, pa.array([self.stage_name] * n, pa.string()))
            self.dropped.append(table)


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


class Stage(ABC):
    """One step of a pipeline. Subclasses set ``kind`` and usually ``Config``."""

    kind: ClassVar[str]
    Config: ClassVar[type[StageConfig]] = StageConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    outputs: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[Resources] = Resources()
    #: Human summary shown by ``assay stages``.
    summary: ClassVar[str] = ""
    #: Modules the stage imports lazily at run time; the process pool's fork server imports them
    #: once before forking workers (see :mod:`pipeline.preload`). Start-up cost only: never changes results.
    preload: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: StageConfig | dict[str, Any] | None = None, name: str | None = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = self.Config(**config)
        self.config = config
        self.name = name or self.kind

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Called once per worker before the first ``process`` (load models here)."""

    @abstractmethod
    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        """Transform one table; return the rows that go on."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Called once per worker after the last ``process``."""

    def output_columns(self) -> tuple[str, ...]:
        """Columns this configured instance adds (defaults to the class's ``outputs``)."""
        return self.outputs

    def reads_snapshots(self) -> list[str]:
        """Earlier snapshot folders this stage reads (its ``snapshot`` path fields): the lineage."""
        out: list[str] = []
        for name, kind in self.config.path_fields().items():
            if kind != "snapshot":
                continue
            value = getattr(self.config, name, None)
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, (list, tuple)):
                out.extend(str(v) for v in value)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


class ScoreStage(Stage):
    """A stage that only adds columns. Implement ``score``."""

    @abstractmethod
    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        """Return new columns (name -> array with one value per row)."""

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        for name, values in self.score(table).items():
            table = _set_column(table, name, values)
        return table


class FilterStage(Stage):
    """A stage that keeps or drops rows. Implement ``keep``.

    ``keep`` returns a boolean mask and, for the dropped rows, a reason: one string for all,
    or a sequence with one entry per row of the table (entries for kept rows are ignored).
    """

    @abstractmethod
    def keep(self, table: pa.Table) -> tuple[np.ndarray, str | Sequence[str | None]]:
        """Return (mask of rows to keep, reason(s) for the dropped ones)."""

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        mask, reasons = self.keep(table)
        mask = np.asarray(mask, dtype=bool)
        if mask.all():
            return table
        dropped_idx = np.flatnonzero(~mask)
        dropped = table.take(pa.array(dropped_idx))
        if isinstance(reasons, str):
            ctx.drop(dropped, reasons)
        else:
            ctx.drop(dropped, [str(reasons[i]) for i in dropped_idx])
        return table.filter(pa.array(mask))


class BarrierStage(Stage):
    """A stage that must see the whole corpus first: map per shard, reduce, apply.

    - ``map(table, ctx)`` runs on each shard as it streams past (after the stages before
      this one) and returns a small artifact table, keyed by ``doc_id``; the executor writes
      it under ``artifacts/<stage name>/`` with a name derived from the shard.
    - ``reduce_plan(rc)`` is the reduce as a generator of steps of small tasks
      (:mod:`pipeline.reduce`): each task holds at most its partition (a hash range of keys
      or one shard's rows), the executor runs the tasks where it likes, and the state it
      writes under ``rc.state_dir`` does not depend on the partition count. The context's
      artifacts, scratch and state are storage locations (local paths or URLs): tasks do
      their I/O through :mod:`pipeline.storage` (:mod:`pipeline.reduce` has the helpers).
      ``reduce(artifact_paths, state_dir)`` runs that plan in-process (tests, notebooks).
    - ``load_state(state_dir)`` runs once per worker before ``apply``; state that grows with
      the corpus is kept per input shard and loaded when that shard's batches arrive. With
      ``remote_state = True`` it takes a storage location (a URL on remote storage) and reads
      through storage; otherwise the worker hands it a local copy.
    - ``process`` (= apply) then runs on every shard.

    ``needs_barrier`` says whether this configured instance needs the whole input at all
    (a threshold filter with fixed bounds does not); the planner cuts segments only there.
    """

    #: ``load_state`` reads a storage location itself (no local copy of remote state needed)
    remote_state: ClassVar[bool] = False

    @property
    def needs_barrier(self) -> bool:
        return True

    @abstractmethod
    def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        """Artifact rows for this shard (keyed by ``doc_id``)."""

    def reduce_plan(self, rc: Any) -> Any:
        """Steps of reduce tasks (see :mod:`pipeline.reduce`); default: one task, whole reduce."""
        from pipeline.reduce import ReduceTask

        yield [ReduceTask(_whole_reduce, (self.kind, self.config.model_dump(mode="json"), self.name,
                                          [p for _, p in rc.artifacts], rc.state_dir))]

    def reduce(self, artifact_paths: list[Path], state_dir: Path, partitions: int = 1) -> None:
        """Combine all artifacts (shard *i* = ``artifact_paths[i]``) into a state under ``state_dir``."""
        from pipeline.reduce import context_for, drive

        drive(self.reduce_plan(context_for(artifact_paths, state_dir, partitions)))

    @abstractmethod
    def load_state(self, state_dir: Path) -> None:
        """Load what ``reduce`` wrote, before ``process`` runs."""


def _whole_reduce(kind: str, config: dict[str, Any], name: str, paths: list[str], state_dir: str) -> None:
    from pipeline.registry import get_stage_class

    import contextlib
    import tempfile

    from pipeline import storage

    stage = get_stage_class(kind)(config, name=name)
    assert isinstance(stage, BarrierStage)
    if not any(storage.is_url(p) for p in [*paths, state_dir]):
        type(stage).reduce(stage, [Path(p) for p in paths], Path(state_dir))
        return
    # a third-party reduce() wants POSIX paths: it gets local copies in the task's own process
    # (wherever that runs), and its state is uploaded from there
    with contextlib.ExitStack() as stack:
        cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="assay-reduce-")))
        local_state = stack.enter_context(storage.staged_dir(state_dir))
        type(stage).reduce(stage, [storage.local_file(p, cache) for p in paths], local_state)
