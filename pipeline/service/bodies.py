"""Hostile request bodies: bounded reading, strict parsing, server policy on sizes.

- :func:`read_body` streams the body and stops at ``max_bytes`` (413) — a 50 MB body is never
  read whole, and the event loop keeps answering ``/health`` meanwhile.
- :func:`parse_spec_body` accepts ``application/json`` or ``application/toml`` only (415
  otherwise: ``text/plain``, forms and multipart are what a browser can send cross-site without
  a preflight); the document must be an object; integers are bounded (a 5,000-digit integer is
  a 422, not a 500), NaN/Infinity are refused, nesting is bounded.
- :func:`check_policy` bounds what a spec may ask of the server: name and string lengths,
  list sizes, stage count, ``workers``, ``batch_size``, ``split``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

#: Content types a browser may send cross-site without a CORS preflight (refused on writes).
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
SPEC_TYPES = ("application/json", "application/toml")


@dataclass(frozen=True)
class Policy:
    max_body_bytes: int = 1 << 20
    max_depth: int = 32
    max_int_digits: int = 19
    max_string_chars: int = 4096
    max_name_chars: int = 200
    max_list_items: int = 10_000
    max_stages: int = 64
    max_workers: int = 4
    max_batch_size: int = 100_000
    max_split: int = 64


def mime(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise HTTPException(413, f"request body is over the service's limit of {max_bytes:,} bytes")
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
    from starlette.requests import ClientDisconnect

    chunks: list[bytes] = []
    n = 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > max_bytes:
                raise HTTPException(413, f"request body is over the service's limit of {max_bytes:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone mid-body: no one to answer, and no traceback in the server's log
        raise HTTPException(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def _bounded_int(policy: Policy):  # type: ignore[no-untyped-def]
    def parse(s: str) -> int:
        if len(s.lstrip("-")) > policy.max_int_digits:
            raise ValueError(f"an integer has {len(s)} digits; the limit is {policy.max_int_digits}")
        return int(s)

    return parse


def _no_constant(s: str) -> Any:
    raise ValueError(f"{s} is not allowed in a spec")


def parse_spec_body(raw: bytes, content_type: str, policy: Policy) -> dict[str, Any]:
    """The spec document as a dict (422 with a one-line reason for anything malformed)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, "spec body is not UTF-8") from None
    _check_depth_text(text, policy.max_depth)
    try:
        if content_type == "application/json":
            data = json.loads(text, parse_int=_bounded_int(policy), parse_constant=_no_constant)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise HTTPException(422, f"spec is not valid {'JSON' if content_type == 'application/json' else 'TOML'}: {e}") from None
    except (ValueError, RecursionError) as e:
        raise HTTPException(422, f"spec refused: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise HTTPException(422, f"spec must be a JSON/TOML object (a table), got {type(data).__name__}")
    _check_values(data, policy, "", 0)
    return data


def _check_depth_text(text: str, max_depth: int) -> None:
    """Refuse deep nesting before a recursive parser sees it ([[[[...]]]] 100,000 deep)."""
    depth = 0
    in_str = False
    esc = False
    quote = ""
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                in_str = False
            continue
        if ch in "\"'":
            in_str, quote = True, ch
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise HTTPException(422, f"spec is nested deeper than {max_depth} levels")
        elif ch in "]}":
            depth -= 1


def _check_values(v: Any, policy: Policy, where: str, depth: int) -> None:
    if depth > policy.max_depth:
        raise HTTPException(422, f"spec is nested deeper than {policy.max_depth} levels")
    if isinstance(v, str):
        if "\x00" in v:  # PostgreSQL text cannot hold one (a 500 there), and no path or name needs it
            raise HTTPException(422, f"spec error: {where or 'value'}: a NUL character is not allowed")
        if len(v) > policy.max_string_chars:
            raise HTTPException(422, f"spec error: {where or 'value'}: string of {len(v):,} characters; "
                                     f"the limit is {policy.max_string_chars:,}")
    elif isinstance(v, bool):
        return
    elif isinstance(v, int):
        if abs(v) >= 10 ** policy.max_int_digits:
            raise HTTPException(422, f"spec error: {where or 'value'}: integer too large")
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise HTTPException(422, f"spec error: {where or 'value'}: NaN/Infinity are not allowed")
    elif isinstance(v, list):
        if len(v) > policy.max_list_items:
            raise HTTPException(422, f"spec error: {where}: {len(v):,} items; the limit is {policy.max_list_items:,}")
        for i, x in enumerate(v):
            _check_values(x, policy, f"{where}[{i}]", depth + 1)
    elif isinstance(v, dict):
        if len(v) > policy.max_list_items:
            raise HTTPException(422, f"spec error: {where}: too many keys")
        for k, x in v.items():
            if len(str(k)) > 200:
                raise HTTPException(422, f"spec error: {where}: a key of {len(str(k)):,} characters")
            if "\x00" in str(k):
                raise HTTPException(422, f"spec error: {where or 'spec'}: a key with a NUL character")
            _check_values(x, policy, f"{where}.{k}" if where else str(k), depth + 1)
    elif v is not None and not hasattr(v, "isoformat"):  # TOML dates are harmless values
        raise HTTPException(422, f"spec error: {where}: unsupported value")


def check_policy(data: dict[str, Any], policy: Policy) -> None:
    """Bounds on what the spec asks of the server (before validation; types are checked later)."""
    name = data.get("name")
    if isinstance(name, str) and len(name) > policy.max_name_chars:
        raise HTTPException(422, f"spec error: name: {len(name):,} characters; the limit is {policy.max_name_chars}")
    stages = data.get("stages")
    if isinstance(stages, list) and len(stages) > policy.max_stages:
        raise HTTPException(422, f"spec error: stages: {len(stages)} stages; the limit is {policy.max_stages}")
    ex = data.get("execution")
    if isinstance(ex, dict):
        for key, lim in (("workers", policy.max_workers), ("batch_size", policy.max_batch_size)):
            v = ex.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > lim:
                raise HTTPException(422, f"spec error: execution.{key}: {v} is over the service's limit of {lim}")
    inp = data.get("input")
    if isinstance(inp, dict):
        v = inp.get("split")
        if isinstance(v, int) and not isinstance(v, bool) and v > policy.max_split:
            raise HTTPException(422, f"spec error: input.split: {v} is over the service's limit of {policy.max_split}")
    if isinstance(stages, list):
        for i, st in enumerate(stages):
            if isinstance(st, dict):
                for key in ("workers", "batch_size", "threads"):
                    v = st.get(key)
                    lim = policy.max_batch_size if key == "batch_size" else policy.max_workers
                    if isinstance(v, int) and not isinstance(v, bool) and v > lim:
                        raise HTTPException(422, f"spec error: stages[{i}].{key}: {v} is over the service's limit of {lim}")
