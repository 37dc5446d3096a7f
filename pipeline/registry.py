"""The explicit stage registry: stages are found by ``kind``, never by import path.

A spec arrives over REST too, so it must never be able to name arbitrary Python. Each module
that defines stages is listed in ``STAGE_MODULES``; importing it runs ``@register``.
Stage modules import their heavy dependencies lazily (in ``setup``), so loading the registry
is cheap.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from pipeline.stage import Stage

#: Every module that defines registered stages. Add a line when you add a stage module.
STAGE_MODULES: tuple[str, ...] = (
    "pipeline.extract",
    "pipeline.filters.lid",
    "pipeline.filters.heuristics",
    "pipeline.filters.pii",
    "pipeline.filters.basic",
    "pipeline.filters.decontaminate",
    "dedup.exact",
    "dedup.minhash",
    "dedup.softdedup",
    "classifiers.fasttext_model",
    "classifiers.threshold",
    "classifiers.perplexity",
    "classifiers.embedding",
    "classifiers.toxicity",
    "synth.stage",
)

_REGISTRY: dict[str, type[Stage]] = {}
_loaded = False

S = TypeVar("S", bound=type[Stage])


class UnknownStageError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want a plain line
        return str(self.args[0])


def register(cls: S) -> S:
    """Class decorator: make a stage findable by its ``kind``."""
    kind = getattr(cls, "kind", None)
    if not kind or not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} must set a string `kind` to be registered")
    existing = _REGISTRY.get(kind)
    if existing is not None and existing is not cls:
        raise ValueError(f"stage kind {kind!r} registered twice: {existing.__name__} and {cls.__name__}")
    _REGISTRY[kind] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for mod in STAGE_MODULES:
        importlib.import_module(mod)
    _loaded = True


def get_stage_class(kind: str) -> type[Stage]:
    _load()
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownStageError(f"unknown stage kind {kind!r}; known kinds: {known}") from None


def all_stages() -> dict[str, type[Stage]]:
    _load()
    return dict(sorted(_REGISTRY.items()))
