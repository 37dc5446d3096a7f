"""Confinement: every path in a spec that arrives over HTTP resolves under the service's roots.

A submitted spec is hostile. Before anything is opened, :func:`confine_spec` rewrites every
path-like field of the raw spec to a concrete path under a configured root (or to a catalog
snapshot's folder):

- ``input.paths`` — files, folders or globs; globs and folders are expanded here by a bounded
  walk (:func:`expand`) that never follows a directory symlink, never leaves a root, stops at
  ``max_depth`` levels, ``max_visits`` entries, ``max_files`` matches and ``time_limit_s``;
  ``snapshot:<id>`` reads a catalog snapshot's shards;
- every stage config field declared with :func:`pipeline.stage.PathField` (model files,
  ``against`` indexes, ...) — one generic mechanism, no list of special cases; ``snapshot``
  fields also take a catalog id (``<id>``, ``snapshot:<id>`` or ``<name>@<alias>``);
- any other stage string that *looks* like a path (has a ``/`` or ``\\``, starts with ``~``)
  is refused: a stage that forgot to declare its path field cannot be used to open files.

Errors name the field and say nothing about the disk outside the roots: an absolute path
outside them gets the same message whether it exists or not, and that decision is taken on
the text of the path before any ``stat``. Symlinks inside a root that point out of it are
treated exactly like paths outside.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.spec import INPUT_SUFFIXES, SpecError

GLOB_CHARS = "*?["


class ConfinementError(SpecError):
    """A path in a spec that the service will not open (the message names the field only)."""


@dataclass(frozen=True)
class Limits:
    """Server policy for what one spec may ask for."""

    max_files: int = 10_000
    max_depth: int = 16
    max_visits: int = 200_000
    time_limit_s: float = 10.0
    max_path_chars: int = 4096


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 120 else raw[:117] + "...")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Confiner:
    """Resolves spec paths under ``roots``; ``snapshots(ref)`` maps a catalog reference to a
    snapshot folder (or ``None``)."""

    def __init__(self, roots: list[str | Path], snapshots: Callable[[str], Path | None] | None = None,
                 limits: Limits | None = None):
        self.roots = [os.path.realpath(str(r)) for r in roots]
        self.snapshots = snapshots or (lambda ref: None)
        self.limits = limits or Limits()

    # -- one path --------------------------------------------------------------------------

    def _outside(self, field: str, raw: str) -> ConfinementError:
        hint = ("a path under one of the service's input roots, relative to one, or a catalog snapshot "
                "(snapshot:<id>)") if self.roots else "a catalog snapshot (snapshot:<id>); the service has no input roots"
        return ConfinementError(f"spec error: {field}: {_show(raw)} is not allowed: give {hint}")

    def _check_text(self, field: str, raw: Any) -> str:
        if not isinstance(raw, str):
            raise ConfinementError(f"spec error: {field}: expected a string path")
        if "\0" in raw or len(raw) > self.limits.max_path_chars or not raw.strip():
            raise ConfinementError(f"spec error: {field}: not a usable path")
        if "://" in raw:
            raise ConfinementError(f"spec error: {field}: {_show(raw)}: URLs are not read by the service; "
                                   "give a path under its input roots")
        return raw

    def _candidates(self, field: str, raw: str) -> list[tuple[str, str]]:
        """(lexical candidate, its root) pairs, decided on the text alone (no disk access)."""
        if raw.startswith("~"):
            raise self._outside(field, raw)
        if os.path.isabs(raw):
            cand = os.path.normpath(raw)
            return [(cand, r) for r in self.roots if _under(cand, r)] or self._raise(self._outside(field, raw))
        out = []
        for r in self.roots:
            cand = os.path.normpath(os.path.join(r, raw))
            if _under(cand, r):
                out.append((cand, r))
        if not out:
            raise self._outside(field, raw)
        return out

    @staticmethod
    def _raise(e: Exception) -> Any:
        raise e

    def _inside(self, real: str) -> bool:
        return any(_under(real, r) for r in self.roots)

    def resolve(self, field: str, raw: Any, want: str = "any") -> Path:
        """A file or folder under the roots (``want``: ``file``, ``dir`` or ``any``)."""
        raw = self._check_text(field, raw)
        for cand, _root in self._candidates(field, raw):
            real = os.path.realpath(cand)
            if not self._inside(real):  # a symlink inside a root pointing out of it
                raise self._outside(field, raw)
            if os.path.exists(real):
                if want == "file" and not os.path.isfile(real):
                    raise ConfinementError(f"spec error: {field}: {_show(raw)} is a folder, expected a file")
                if want == "dir" and not os.path.isdir(real):
                    raise ConfinementError(f"spec error: {field}: {_show(raw)} is a file, expected a folder")
                return Path(real)
        raise ConfinementError(f"spec error: {field}: {_show(raw)} does not exist under the service's input roots")

    def snapshot(self, field: str, raw: Any) -> Path | None:
        """A catalog snapshot's folder for ``snapshot:<id>``, ``<id>`` or ``<name>@<alias>``."""
        if not isinstance(raw, str):
            return None
        ref = raw.removeprefix("snapshot:")
        if raw.startswith("snapshot:") or re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{12}|[\w.-]{1,200}@[\w.-]{1,64}", ref):
            folder = self.snapshots(ref)
            if folder is None:
                if raw.startswith("snapshot:") or "@" in ref:
                    raise ConfinementError(f"spec error: {field}: no snapshot {_show(ref)} in the catalog")
                return None
            return folder
        return None

    # -- globs and folders -----------------------------------------------------------------

    def expand(self, field: str, raw: Any) -> list[Path]:
        """Files named by an input path: a file, a folder (its readable shards) or a glob."""
        raw = self._check_text(field, raw)
        if not any(ch in raw for ch in GLOB_CHARS):
            p = self.resolve(field, raw)
            if p.is_file():
                return [p]
            found = self._walk(field, raw, str(p), None)
            if not found:
                raise ConfinementError(f"spec error: {field}: folder {_show(raw)} holds no readable shards "
                                       f"({', '.join(INPUT_SUFFIXES)})")
            return found
        parts = raw.split("/")
        first = next(i for i, part in enumerate(parts) if any(ch in part for ch in GLOB_CHARS))
        if len(parts) - first > self.limits.max_depth:
            raise ConfinementError(f"spec error: {field}: glob {_show(raw)} is deeper than {self.limits.max_depth} levels")
        prefix = "/".join(parts[:first]) or ("/" if raw.startswith("/") else ".")
        base = self.resolve(field, prefix, want="dir") if prefix != "." else None
        bases = [str(base)] if base is not None else [r for r in self.roots if os.path.isdir(r)]
        pattern = _translate("/".join(parts[first:]))
        out: list[Path] = []
        for b in bases:
            out.extend(self._walk(field, raw, b, pattern, budget=self.limits.max_files - len(out)))
        if not out:
            raise ConfinementError(f"spec error: {field}: {_show(raw)} matches no files under the service's input roots")
        return out

    def _walk(self, field: str, raw: str, base: str, pattern: re.Pattern[str] | None,
              budget: int | None = None) -> list[Path]:
        lim = self.limits
        budget = lim.max_files if budget is None else budget
        deadline = time.monotonic() + lim.time_limit_s
        visits = 0
        found: list[Path] = []
        stack: list[tuple[str, str, int]] = [(base, "", 0)]
        while stack:
            folder, rel, depth = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            subdirs = []
            for e in entries:
                visits += 1
                if visits > lim.max_visits or time.monotonic() > deadline:
                    raise ConfinementError(
                        f"spec error: {field}: {_show(raw)} visits more than {lim.max_visits:,} entries or takes "
                        f"over {lim.time_limit_s:g}s; name a narrower folder or pattern")
                erel = f"{rel}/{e.name}" if rel else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if depth + 1 < lim.max_depth:
                            subdirs.append((e.path, erel, depth + 1))
                        continue
                    is_file = e.is_file()  # a file symlink is followed, then checked below
                except OSError:
                    continue
                if not is_file:
                    continue
                if pattern is None:
                    if not e.name.endswith(INPUT_SUFFIXES):
                        continue
                elif not pattern.fullmatch(erel):
                    continue
                real = os.path.realpath(e.path)
                if not self._inside(real):
                    continue  # never read through a link out of the roots
                found.append(Path(real))
                if len(found) > budget:
                    raise ConfinementError(f"spec error: {field}: {_show(raw)} matches more than "
                                           f"{lim.max_files:,} files; the service's limit")
            stack.extend(reversed(subdirs))
        found.sort()
        return found


def _translate(pattern: str) -> re.Pattern[str]:
    """A glob (``*``, ``?``, ``[...]``, ``**`` for any folders) as a regex over '/'-joined paths."""
    out = []
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append("(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*")
            continue
        rx = ""
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[":
                k = part.find("]", j + 2 if part[j + 1: j + 2] in ("!", "]") else j + 1)
                if k == -1:
                    rx += re.escape(c)
                else:
                    body = part[j + 1:k]
                    neg = body.startswith("!")
                    body = body[1:] if neg else body
                    rx += "[" + ("^" if neg else "") + body.replace("\\", "\\\\").replace("^", "\\^") + "]"
                    j = k
            else:
                rx += re.escape(c)
            j += 1
        out.append(rx + ("" if last else "/"))
    return re.compile("".join(out), re.S)


FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow", ".bin", ".ftz", ".txt", ".csv", ".tsv", ".gz", ".zst",
                 ".sqlite", ".db", ".pt", ".safetensors", ".npy", ".toml", ".yaml", ".yml", ".warc", ".wet", ".model")


def _looks_like_path(value: str) -> bool:
    v = value.strip().lower()
    return "/" in v or "\\" in v or v.startswith(("~", ".")) or v.endswith(FILE_SUFFIXES)


def confine_spec(data: dict[str, Any], confiner: Confiner) -> tuple[dict[str, Any], list[str]]:
    """Rewrite every path in a raw spec dict under the roots; returns (new data, snapshot folders read).

    Runs before the spec is validated or any stage is built, so nothing is opened first.
    Values of the wrong type are left for the spec validation to report.
    """
    from pipeline.registry import UnknownStageError, get_stage_class

    data = dict(data)
    out = data.get("output")
    if isinstance(out, dict) and isinstance(out.get("tokenizer"), str):  # the one path field of a spec's output
        data["output"] = {**out, "tokenizer": str(confiner.resolve("output.tokenizer", out["tokenizer"]))}
    inp = data.get("input")
    if isinstance(inp, dict) and isinstance(inp.get("paths"), list):
        files: list[str] = []
        for i, raw in enumerate(inp["paths"]):
            field = f"input.paths[{i}]"
            snap = confiner.snapshot(field, raw) if isinstance(raw, str) and raw.startswith("snapshot:") else None
            got = [snap / "shards"] if snap is not None else confiner.expand(field, raw)
            files.extend(str(p) for p in got)
            if len(files) > confiner.limits.max_files:
                raise ConfinementError(f"spec error: input.paths: more than {confiner.limits.max_files:,} files")
        data["input"] = {**inp, "paths": list(dict.fromkeys(files))}
    stages = data.get("stages")
    if isinstance(stages, list):
        new = []
        for i, entry in enumerate(stages):
            if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
                new.append(entry)
                continue
            try:
                declared = get_stage_class(entry["kind"]).Config.path_fields()
            except UnknownStageError:
                new.append(entry)  # the spec validation reports the unknown kind
                continue
            entry = dict(entry)
            where = f"stages[{i}] ({entry['kind']})"
            for key, value in list(entry.items()):
                if key in ("kind", "name"):
                    continue
                kind = declared.get(key)
                if kind is None:
                    _refuse_hidden_paths(f"{where}.{key}", value)
                    continue
                if value is None:
                    continue
                if isinstance(value, list):
                    entry[key] = [_confine_one(f"{where}.{key}[{j}]", v, kind, confiner) for j, v in enumerate(value)]
                else:
                    entry[key] = _confine_one(f"{where}.{key}", value, kind, confiner)
            new.append(entry)
        data["stages"] = new
    return data, []


def _confine_one(field: str, value: Any, kind: str, confiner: Confiner) -> Any:
    if not isinstance(value, str):
        return value  # wrong type: the spec validation names it
    if kind == "snapshot":
        snap = confiner.snapshot(field, value)
        if snap is not None:
            return str(snap)
        p = confiner.resolve(field, value, want="dir")
        if not (p / "manifest.json").is_file():
            raise ConfinementError(f"spec error: {field}: {_show(value)} is not a snapshot (no manifest.json)")
        return str(p)
    want = "dir" if kind == "dir" else "any"  # `file` fields often take a folder of files too
    return str(confiner.resolve(field, value, want=want))


def _refuse_hidden_paths(field: str, value: Any, depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(value, str) and _looks_like_path(value):
        raise ConfinementError(
            f"spec error: {field}: {_show(value)} looks like a file path, but this stage does not declare "
            "the field as a path (PathField), so the service will not pass it on")
    if isinstance(value, list):
        for v in value:
            _refuse_hidden_paths(field, v, depth + 1)
    if isinstance(value, dict):
        for v in value.values():
            _refuse_hidden_paths(field, v, depth + 1)
