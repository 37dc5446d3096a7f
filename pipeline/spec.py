"""PipelineSpec: the TOML document that describes a job (CLI, REST and tests share it).

Validated up front: a bad spec fails before any work starts, with one line that names the
field and the value (``spec error: stages[2] (filter.gopher).min_doc_words: Input should be a
valid integer, got 'many'``).

Example::

    name = "demo"

    [input]
    paths = ["examples/data/*.warc.gz"]

    [output]
    dir = "runs/demo"

    [[stages]]
    kind = "extract.html"

    [[stages]]
    kind = "filter.gopher_quality"
    min_doc_words = 50
"""

from __future__ import annotations

import glob
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline import storage
from pipeline.registry import UnknownStageError, get_stage_class
from pipeline.stage import Stage, StageConfig
from pipeline.storage import Loc


class SpecError(ValueError):
    """A spec that cannot run; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: a local path component / whole path longer than these cannot exist (Linux NAME_MAX, PATH_MAX)
NAME_MAX, PATH_MAX = 255, 4096


def check_location(v: str, what: str = "path") -> str:
    """A location (local path or URL) as text that could exist: not empty, no NUL byte, no
    component over 255 bytes and at most 4096 bytes; a URL's scheme must be one storage can
    open (no network is touched). Raises ValueError naming the problem; the value is not echoed
    (it may be huge)."""
    if not v:
        raise ValueError(f"an empty {what}")
    if "\x00" in v:
        raise ValueError(f"{what} holds a NUL byte")
    b = v.encode("utf-8", "surrogatepass")
    if len(b) > PATH_MAX:
        raise ValueError(f"{what} is {len(b):,} bytes long (at most {PATH_MAX})")
    if any(len(c) > NAME_MAX for c in b.split(b"/")):
        raise ValueError(f"{what} has a name over {NAME_MAX} bytes between slashes")
    if storage.is_url(v):
        storage.check_scheme(v)
    return v


class InputSpec(_Strict):
    paths: list[str] = Field(min_length=1, description="files, folders or glob patterns")
    format: Literal["auto", "warc", "jsonl", "parquet"] = "auto"
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    source: str | None = Field(None, description="value of the `source` column; default: file name")
    max_doc_bytes: int = Field(8 * 1024 * 1024, gt=0, description="larger records are quarantined")
    split: int = Field(
        1, ge=1, le=1024,
        description="read each input file as this many shards (shard k takes every split-th record "
        "from k), so a few big files still keep every worker busy",
    )

    @field_validator("paths")
    @classmethod
    def _paths_text(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            check_location(p, f"entry {i}")
        return v


class OutputSpec(_Strict):
    dir: str
    rows_per_row_group: int = Field(10_000, gt=0)
    compression: Literal["zstd", "snappy", "none"] = "zstd"
    write_dropped: bool = Field(False, description="write dropped rows aside under dropped/")
    tokenizer: str | None = Field(
        None,
        description="tokenizer.json (or a folder holding one) to count the manifest's `tokens` "
        "with; without it `tokens` is null and only whitespace `words` are counted",
    )

    @field_validator("dir")
    @classmethod
    def _dir_text(cls, v: str) -> str:
        return check_location(v, "output folder")

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_exists(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from pipeline.tokens import TokenCounter

        check_location(v, "tokenizer path")
        try:
            return str(TokenCounter(v).path.resolve())  # loads it: a file that is no tokenizer fails here
        except ValueError as e:
            raise ValueError(str(e).removeprefix("output.tokenizer: ")) from None


class ExecutionSpec(_Strict):
    batch_size: int = Field(1000, gt=0, description="documents per Arrow batch")
    workers: int = Field(1, ge=1, le=1024, description="local worker processes (shard-parallel)")


class StageEntry(_Strict):
    """One ``[[stages]]`` table: ``kind``, optional ``name``, the rest is the stage config."""

    model_config = ConfigDict(extra="allow")
    kind: str
    name: str | None = None

    def config_dict(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PipelineSpec(_Strict):
    name: str = "assay-job"
    input: InputSpec
    output: OutputSpec
    execution: ExecutionSpec = ExecutionSpec()
    stages: list[StageEntry] = Field(default_factory=list)

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageEntry]) -> list[StageEntry]:
        seen: set[str] = set()
        for i, st in enumerate(stages):
            n = st.name or st.kind
            if n in seen:
                raise ValueError(f"stages[{i}]: name {n!r} is used twice; give one a distinct `name`")
            seen.add(n)
        return stages

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineSpec:
        p = Path(path)
        if not p.exists():
            raise SpecError(f"spec file {str(p)!r} does not exist")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"spec {str(p)!r} is not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise SpecError(f"spec {str(p)!r} is not UTF-8 text (byte {e.start}); a spec is a TOML file") from None
        except OSError as e:
            raise SpecError(f"spec {str(p)!r} cannot be read: {e.strerror or e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineSpec:
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            raise SpecError(_one_line(e, data)) from None
        spec.build_stages()  # validate every stage config now, not mid-run
        return spec

    def with_overrides(self, inputs: list[str] | None = None, output: str | None = None) -> PipelineSpec:
        data = self.model_dump(mode="json", exclude_none=True)
        if inputs:
            data["input"]["paths"] = list(inputs)
        if output:
            data["output"]["dir"] = output
        return PipelineSpec.from_dict(data)

    # -- derived --------------------------------------------------------------------------------

    def build_stages(self) -> list[Stage]:
        stages: list[Stage] = []
        for i, entry in enumerate(self.stages):
            try:
                cls = get_stage_class(entry.kind)
            except UnknownStageError as e:
                raise SpecError(f"spec error: stages[{i}].kind: {e}") from None
            try:
                config: StageConfig = cls.Config(**entry.config_dict())
            except ValidationError as e:
                raise SpecError(_one_line(e, entry.config_dict(), prefix=f"stages[{i}] ({entry.kind})")) from None
            stages.append(cls(config, name=entry.name))
        return stages

    def canonical(self) -> dict[str, Any]:
        """The spec as plain data with every default filled in (stage configs included)."""
        data = self.model_dump(mode="json")
        data["stages"] = [
            {"kind": st.kind, "name": st.name, "config": st.config.model_dump(mode="json")}
            for st in self.build_stages()
        ]
        return data

    def spec_hash(self) -> str:
        """sha256 of the canonical spec minus where it reads and writes (so one spec run on
        different corpora keeps the same processing identity)."""
        data = self.canonical()
        data.pop("output", None)
        data["input"] = {k: v for k, v in data["input"].items() if k != "paths"}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def resolve_inputs(self) -> list[Loc]:
        """Expand paths, folders and globs to a sorted list of files; missing ones are errors."""
        return resolve_paths(self.input.paths)


INPUT_SUFFIXES = (
    ".warc", ".warc.gz", ".wet", ".wet.gz", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".json",
    ".json.gz", ".ndjson", ".parquet",
)


def resolve_paths(paths: list[str]) -> list[Loc]:
    """Files, folders and globs -> files (local ``Path`` or, for URLs, ``RemotePath``)."""
    files: list[Loc] = []
    for raw in paths:
        try:
            files.extend(_resolve_one(raw))
        except (OSError, ValueError, KeyError, TypeError) as e:  # an unopenable scheme, an unreadable
            # folder, a snapshot whose manifest.json is not one
            if isinstance(e, SpecError):
                raise
            raise SpecError(f"input path {raw!r}: {e}") from None
    seen: set[Loc] = set()
    out: list[Loc] = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(f)
    return out


def _resolve_one(raw: str) -> list[Loc]:
    files: list[Loc] = []
    p = storage.as_loc(raw)
    if any(ch in raw for ch in "*?["):
        matches = storage.glob(raw) if storage.is_url(p) else [m for m in sorted(Path(m) for m in glob.glob(raw, recursive=True)) if m.is_file()]
        if not matches:
            raise SpecError(f"input path {raw!r} matches no files")
        files.extend(matches)
    elif storage.is_dir(p) and storage.exists(p / "manifest.json"):
        # a snapshot: its shards as the manifest lists them (not its state/ or quarantine/);
        # each is checked against its sha256 when read
        files.extend(p / s["path"] for s in storage.read_json(p / "manifest.json")["shards"])
    elif storage.is_dir(p):
        found = [f for f in storage.list_files(p) if f.name.endswith(INPUT_SUFFIXES)]
        if not found:
            raise SpecError(f"input folder {raw!r} holds no readable shards ({', '.join(INPUT_SUFFIXES)})")
        files.extend(found)
    elif storage.is_file(p):
        files.append(p)
    else:
        raise SpecError(f"input path {raw!r} does not exist")
    return files


def _one_line(err: ValidationError, data: Any, prefix: str = "") -> str:
    e = err.errors()[0]
    loc = ""
    for part in e["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; `assay stages` lists every field)"
    if e["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    value = e.get("input")
    quiet = e["type"] in ("missing", "extra_forbidden", "value_error") or isinstance(value, (dict, list))
    shown = "" if quiet else f", got {value!r}"
    more = f" (and {len(err.errors()) - 1} more error(s))" if len(err.errors()) > 1 else ""
    return f"spec error: {where}: {msg}{shown}{more}"
