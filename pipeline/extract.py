"""HTML → main text: the ``extract.html`` stage.

Input is the ``html`` column: raw HTTP body bytes from the WARC reader (``large_binary``) or a
string from JSONL. Bytes are decoded with resiliparse's encoding detection (``<meta charset>``
first, then uchardet), so a page in cp1252, Shift-JIS, KOI8-R or UTF-16 (with its BOM) reads
as text, not mojibake.

Two engines, measured on 455 real documentation pages against a template-derived main-text
reference (bag-of-words overlap; ``docs/benchmarks/extract.md``, ``assay bench extract``):

- ``resiliparse`` (default) — Resiliparse's C++ HTML-to-text with its main-content heuristics:
  precision 0.942, F1 0.879 (0.927 with every doc generator weighted alike), ~320 pages per
  CPU-second;
- ``trafilatura`` — FineWeb's extractor with datatrove's settings (favour precision, no
  comments, deduplicate): precision 0.964, F1 0.885 (0.857 generator-balanced), ~11 pages per
  CPU-second. Same quality within noise, 29× slower: an option, not the default.

``main_content=False`` (all visible text) has recall 1.0 but precision 0.876: navigation and
footers come along and repeat on every page of a site.

Pages that cannot give text are dropped with a reason, never raised: ``empty_html`` (null or
whitespace body), ``binary_content`` (the decoded body is mostly control or replacement
characters: images, PDFs, compressed bodies served as HTML), ``extract_error`` (the engine
raised) and ``empty_extraction`` (fewer than ``min_chars`` characters of text came out).
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import Resources, Stage, StageConfig, StageContext

log = logging.getLogger(__name__)

#: How much of a decoded body ``looks_binary`` inspects, and the share of control /
#: replacement characters above which a body is treated as binary junk.
_BINARY_PROBE_CHARS = 4096
_BINARY_MAX_RATIO = 0.10
#: Nesting depth above which main-content extraction is skipped (real pages stay under ~60).
_MAX_DEPTH = 256
#: an element with _MAX_DEPTH element ancestors; no spaces around ``>``: lexbor parses the
#: selector on every call, and the 513-character form parses in ~60% of the spaced one's time
_TOO_DEEP = "*" + ">*" * _MAX_DEPTH
#: where the count of ``<`` looks first: most pages with more than _MAX_DEPTH tags have them here
_TAG_PROBE_CHARS = 1 << 15
_CONTROL = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r\f\v") | {"\x7f", "\ufffd"}
_CONTROL_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(_CONTROL)) + "]")


class HtmlExtractConfig(StageConfig):
    """Configuration of ``extract.html``."""

    engine: Literal["resiliparse", "trafilatura"] = Field(
        "resiliparse",
        description="resiliparse (default) or trafilatura (FineWeb's; ~30x slower)",
    )
    main_content: bool = Field(
        True,
        description="keep only the main content (drop navigation, sidebars, footers); "
        "resiliparse only: trafilatura always extracts main content",
    )
    keep_html: bool = Field(False, description="keep the `html` column after extraction")
    min_chars: int = Field(
        1, ge=0, description="drop pages whose extracted text (stripped) is shorter than this"
    )


def decode_html(data: bytes | str | None) -> str:
    """Bytes → str with resiliparse's encoding detection (meta charset first, then uchardet)."""
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    return bytes_to_str(data, detect_encoding(data, from_html_meta=True), errors="replace")


def looks_binary(text: str) -> bool:
    """True when the start of ``text`` is mostly control/replacement characters (not markup)."""
    probe = text[:_BINARY_PROBE_CHARS]
    if not probe:
        return False
    bad = len(_CONTROL_RE.findall(probe))  # the characters of probe in _CONTROL, counted in C
    return bad / len(probe) > _BINARY_MAX_RATIO


def _many_tags(page: str) -> bool:
    """``page.count("<") > _MAX_DEPTH``, counting the whole page only when its start has too few."""
    return page.count("<", 0, _TAG_PROBE_CHARS) > _MAX_DEPTH or page.count("<") > _MAX_DEPTH


@register
class HtmlExtractStage(Stage):
    """Extract main text from raw HTML into ``text``; drop pages that give none."""

    kind: ClassVar[str] = "extract.html"
    Config = HtmlExtractConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.HTML,)
    outputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.5)
    summary: ClassVar[str] = "HTML → main text (resiliparse or trafilatura); drops empty pages"

    config: HtmlExtractConfig

    def setup(self) -> None:
        if self.config.engine == "trafilatura":
            try:
                import trafilatura  # noqa: F401
            except ImportError as e:
                raise ImportError(
                    "extract.html engine='trafilatura' needs trafilatura and lxml_html_clean: "
                    "pip install 'assay[peers]' (or use engine='resiliparse')"
                ) from e

    def extract_one(self, html: bytes | str | None) -> tuple[str | None, str | None]:
        """Return (text, None) or (None, drop reason) for one page. Never raises."""
        try:
            # ``not x or x.isspace()`` is ``not x.strip()`` (the same whitespace) without a copy
            if html is None or (isinstance(html, bytes | str) and (not html or html.isspace())):
                return None, "empty_html"
            page = decode_html(html)
            if not page or page.isspace():
                return None, "empty_html"
            if looks_binary(page):
                return None, "binary_content"
            text = self._extract(page)
        except Exception as e:  # noqa: BLE001 - one bad page must never stop a shard
            log.debug("extract.html: %s: %s", type(e).__name__, e)
            return None, "extract_error"
        text = (text or "").strip()
        if len(text) < max(self.config.min_chars, 1):
            return None, "empty_extraction"
        return text, None

    def _extract(self, page: str) -> str | None:
        if self.config.engine == "resiliparse":
            from resiliparse.extract.html2text import extract_plain_text
            from resiliparse.parse.html import HTMLTree

            tree = HTMLTree.parse(page)
            main = self.config.main_content
            if main and _many_tags(page) and tree.document.query_selector(_TOO_DEEP):
                # resiliparse's main-content pass is quadratic in nesting depth (20,000 nested
                # <div>s: 40 s); such pages are junk or attacks, plain extraction is linear
                main = False
            return extract_plain_text(tree, main_content=main)
        from trafilatura import extract

        return extract(page, favor_precision=True, include_comments=False, deduplicate=True)

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        if schema.HTML not in table.column_names:
            raise ValueError(
                f"{self.name}: input has no {schema.HTML!r} column (has {table.column_names}); "
                "extract.html needs raw HTML: read WARC files, or JSONL with an `html` field"
            )
        texts: list[str] = []
        keep: list[int] = []
        dropped: list[int] = []
        reasons: list[str] = []
        for i, html in enumerate(_iter_html(table.column(schema.HTML))):
            text, reason = self.extract_one(html)
            if reason is None:
                assert text is not None
                texts.append(text)
                keep.append(i)
            else:
                dropped.append(i)
                reasons.append(reason)
        ctx.add("extracted_chars", sum(len(t) for t in texts))
        if dropped:
            ctx.drop(table.take(pa.array(dropped, pa.int64())), reasons)
        out = table.take(pa.array(keep, pa.int64())) if dropped else table
        out = _set_column(out, schema.TEXT, pa.array(texts, pa.large_string()))
        if not self.config.keep_html:
            out = out.drop_columns([schema.HTML])
        return out

    def output_columns(self) -> tuple[str, ...]:
        return self.outputs


def _iter_html(column: pa.ChunkedArray) -> Any:
    """Python values of the html column: bytes for binary types, str for string types."""
    for chunk in column.chunks:
        yield from chunk.to_pylist()


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
