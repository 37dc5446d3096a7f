"""PII redaction: e-mail addresses, IP addresses and phone numbers in ``text``.

Never drops a document: it rewrites ``text`` and adds ``pii.count`` (redactions per row).

The patterns start from datatrove's ``PIIFormatter`` (e-mails, dotted quads checked with
:mod:`ipaddress`, only public addresses by default) and are tightened on real documentation
pages and changelogs, where its false positives live. On 7,000 documents of
``pretrain_raw`` a bare dotted-quad pattern plus ``is_global`` (datatrove's rule) redacted
~1,000 "addresses", nearly all section numbers (``4.5.1.11. End of Stream``), package
versions (``binutils (2.10.0.27-1)``, ``Standards-Version to 4.6.1.0``) and user agents
(``rv:1.8.1.1``); with the rules below the redactions that remain are real addresses
(``tests/pipeline/test_filters_pii.py``).

- e-mails: ``local@domain.tld`` with an alphabetic TLD — datatrove's pattern also takes
  ``pkg@1.2.3`` and ``icon@2x.png``; we skip TLDs that are image/asset file extensions. Debian
  changelog trailers (``-- Jane Doe <jane@example.org>``) are redacted, which is the point.
- IPv4: a dotted quad, not inside a longer dotted or version run (``1.2.3.4.5``,
  ``1.2.6.1-1``, ``rv:1.2.3.4``, ``Firefox/2.0.0.1``), not after a version/section word within
  the line (``version``, ``Section``, ``release``...), not numbering a heading (followed by
  ``. `` or starting a line before a capitalised word, with every part < 100).
- IPv6: hex-and-colon runs with two or more colons, parsed by :mod:`ipaddress`; C++/Rust
  scopes (``a::b``), times (``12:30:45``) and MAC-like runs do not parse or are not global.
- phones: ``+<country> …`` numbers with 8–15 digits, ``(555) 123-4567`` and
  ``555-123-4567`` / ``555.123.4567`` (one separator throughout): not version numbers, dates,
  ISBNs or sizes.

``rules = "datatrove"`` applies datatrove's own e-mail and IPv4 patterns and validator instead
(no IPv6, no phones): the output text is identical to ``PIIFormatter`` with the same single
placeholders, on every document of the test corpus.

Speed: a numba pre-scan (:mod:`pipeline.filters._pii_kernel`) reads the Arrow buffer and
reports, per document, the runs of characters each pattern's matches must lie in (an ``@`` in
a run of e-mail characters, a dotted run with 3 dots...). Documents without one are not
touched by Python at all; in the others each regular expression searches only its runs. After a
replacement the later patterns' runs are moved by the length change (re-found when that would
not be exact). The output equals the patterns run over the whole text (tested on real text
with awkward placeholders). On 40 MB of ``pretrain_raw`` this is ~5–8x datatrove's
``PIIFormatter`` per CPU-second (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import re
from collections.abc import Callable
from functools import cache
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import Resources, ScoreStage, StageConfig

log = logging.getLogger(__name__)


def _have_numba() -> bool:
    return importlib.util.find_spec("numba") is not None


_ASSET_TLDS = "png|jpe?g|gif|svg|webp|ico|bmp|tiff?|css|js|mjs|map|woff2?|ttf|eot|mp[34]|webm|pdf"
EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+"
    rf"(?!(?:{_ASSET_TLDS})(?![A-Za-z]))[A-Za-z]{{2,24}}(?![\w-])"
)
IPV4_RE = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
# a run of hex digits and colons with at least two colons; ipaddress decides if it is one
IPV6_RE = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{3,39}(?![\w:])")
# words after which a dotted number is a version or a section, not an address (same line)
_VERSION_WORDS_RE = re.compile(
    r"(?is)(?:version|\bver\b|\brev\b|release|\bv\b|standard|policy|section|\bsect\b|§|chapter|"
    r"\bch\b|patch|firmware)\W.{0,30}$"
)
_SECTION_TAIL_RE = re.compile(r"\.(?:\s|$)")
_HEADING_TAIL_RE = re.compile(r"\s+[A-Z_]")
_RANGE_RE = re.compile(r"\s*~")
_PHONE_RE_TEXT = (
    r"(?<![\w.+-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"  # +49 30 1234 5678
    r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|(?:1[.-])?\d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4}"  # 555-123-4567, 1-800-555-0199
    r")(?![\w.-]?\d)"
)
PHONE_RE = re.compile(_PHONE_RE_TEXT)
_DIGITS_RE = re.compile(r"\d")

# datatrove's PIIFormatter patterns (datatrove/pipeline/formatters/pii.py, 0.10.1): the rules
# `rules = "datatrove"` reproduces, output text identical (tests/pipeline/test_filters_pii.py)
DT_EMAIL_RE = re.compile(
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
    r"A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|["
    r"01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])"
)
DT_IP_RE = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
)
_EMAIL, _IPV4, _IPV6, _PHONE = 1, 2, 4, 8  # the run kinds of pipeline.filters._pii_kernel
#: characters a pattern's look-aheads read past the end of its run (see _sub_in_runs)
_MARGIN = {"email": 1, "dt_ip": 0, "ipv4": 2, "ipv6": 1, "phone": 2}


def _windows(text: str) -> np.ndarray:
    """``[kind, start, end)`` runs of ``text`` that could hold a match (``_pii_kernel``)."""
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)
    offsets = np.array([0, len(data)], np.int64)
    offsets.setflags(write=False)  # the same kernel signature as Arrow's read-only offsets
    return _scan(data, offsets, np.ones(1, np.bool_))[0]


def _scan(
    data: np.ndarray, offsets: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.filters._pii_kernel import scan_batch

    n = len(offsets) - 1
    counts = np.zeros(n, np.int64)
    win = np.empty((4 * n + len(data) // 2000 + 64, 3), np.int64)
    total = scan_batch(data, offsets, valid, *_tables(), win, counts)
    if total > len(win):
        win = np.empty((total, 3), np.int64)
        scan_batch(data, offsets, valid, *_tables(), win, counts)
    row_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=row_offsets[1:])
    return win[: row_offsets[-1]], row_offsets


def _sub_in_runs(
    regex: re.Pattern[str],
    text: str,
    windows: np.ndarray,
    kind: int,
    repl: str | Callable[[re.Match[str]], str],
    margin: int,
) -> tuple[str, int, list[tuple[int, int, int]]]:
    """``regex.sub(repl, text)`` searching only the runs of ``kind``.

    Returns the new text, the number of matches and the spans that changed (start, end, new
    length). Every match lies inside one run (the characters around a run cannot be part of
    one). The pattern sees the whole string before a run (``\\b``, look-behinds) and ``margin``
    characters after it (look-aheads); no pattern matches fewer than 3 characters, so nothing
    in the margin starts a match."""
    pieces: list[str] = []
    spans: list[tuple[int, int, int]] = []
    last = n = 0
    size = len(text)
    for k, start, end in windows.tolist():
        if k != kind:
            continue
        for m in regex.finditer(text, start, min(size, end + margin)):
            n += 1
            r = repl if isinstance(repl, str) else repl(m)
            if r == m.group(0):
                continue
            pieces.append(text[last : m.start()])
            pieces.append(r)
            spans.append((m.start(), m.end(), len(r)))
            last = m.end()
    if not spans:
        return text, n, spans
    pieces.append(text[last:])
    return "".join(pieces), n, spans


def _carry(
    windows: np.ndarray, done: int, spans: list[tuple[int, int, int]], text: str, inert: bool
) -> np.ndarray:
    """The runs of kinds after ``done`` in ``text`` after the replacements ``spans``: the old
    runs moved, when that is exact, else found again.

    Moving is exact when the placeholder is inert (it starts and ends with a character of no
    pattern and holds no qualifying run itself) and no qualifying run overlaps a replaced
    span: every run of the new text is then an old run, or part of a non-qualifying one (each
    condition is monotone), or inside a placeholder."""
    if not spans:
        return windows
    if not inert:
        return _windows(text)
    windows = windows[windows[:, 0] > done]
    if not len(windows):
        return windows
    sp = np.array(spans, np.int64)
    starts, ends = sp[:, 0], sp[:, 1]
    shift = np.concatenate([[0], np.cumsum(sp[:, 2] - (ends - starts))])
    first_after = np.searchsorted(ends, windows[:, 1], side="right")  # spans ending <= start
    nxt = np.minimum(first_after, len(sp) - 1)
    overlaps = (first_after < len(sp)) & (starts[nxt] < windows[:, 2])
    if overlaps.any():
        return _windows(text)
    out = windows.copy()
    out[:, 1:] += shift[first_after][:, None]
    return out


@cache
def _inert(placeholder: str) -> bool:
    """Whether ``placeholder`` can neither join nor form a run of any pattern (see _carry)."""
    if not placeholder or len(_windows(placeholder)):
        return False
    classes = _tables()[1]

    def free(ch: str) -> bool:
        return not ch.isdecimal() if ord(ch) >= 128 else classes[ord(ch)] == 0

    return free(placeholder[0]) and free(placeholder[-1])


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    from pipeline.filters._pii_kernel import ascii_classes, nd_ranges

    return nd_ranges(), ascii_classes()


def scan_windows(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Every row's runs that could hold a match (:mod:`pipeline.filters._pii_kernel`):
    ``windows`` (``int64 [n, 3]``: kind, start, end in characters) and per-row ``offsets`` into
    it. ``column`` is one large_string array."""
    _, offs_buf, data_buf = column.buffers()
    if not len(column) or data_buf is None:
        return np.zeros((0, 3), np.int64), np.zeros(len(column) + 1, np.int64)
    offsets = np.frombuffer(offs_buf, dtype=np.int64)[
        column.offset : column.offset + len(column) + 1
    ]
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return _scan(np.frombuffer(data_buf, dtype=np.uint8), offsets, valid)


class PiiRedactConfig(StageConfig):
    """Configuration of ``pii.redact``."""

    emails: bool = Field(True, description="redact e-mail addresses")
    ips: bool = Field(True, description="redact IP addresses")
    phones: bool = Field(True, description="redact phone numbers")
    only_public_ips: bool = Field(
        True, description="leave private, loopback and reserved addresses (as datatrove does)"
    )
    rules: Literal["assay", "datatrove"] = Field(
        "assay",
        description="assay: the tightened rules above (e-mails, IPv4 with context rules, IPv6, "
        "phones); datatrove: PIIFormatter's e-mail and IPv4 patterns exactly (no IPv6, no phones)",
    )
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP>"
    phone_placeholder: str = "<PHONE>"


def _ipv4_is_numbering(m: re.Match[str]) -> bool:
    """A dotted quad that is a version or a section number, judged from its context."""
    s, start, end = m.string, m.start(), m.end()
    before = s[start - 1] if start else ""
    after = s[end : end + 2]
    if before in "/~-_#=" and not s.endswith("//", 0, start):  # Firefox/2.0.0.1, pkg==1.2.3.4
        return True
    if before == ":" and s[start - 2 : start - 1].isalpha():  # rv:1.8.1.1, Revision:1.2.3.4
        return True
    if after[:1] in "-~+" and after[1:2].isalnum():  # 1.2.6.1-1, 2.0.0.1~rc1, 1.2.3.4+dfsg
        return True
    if after[:1] == "$" or _RANGE_RE.match(s, end) or s[max(0, start - 3) : start].strip() == "~":
        return True  # $Revision: 1.2.3.4$, "2.3.0.0 ~ 2.3.0.9"
    if _VERSION_WORDS_RE.search(s, max(0, start - 40), start):
        return True
    line_start = s.rfind("\n", 0, start) + 1
    if max(int(g) for g in m.groups()) < 100:
        # heading or table-of-contents numbering: first on its line (or after a wide gap),
        # then "." or a capitalised title: "4.5.1.11. End of Stream", "13.1.2.3 Set Methods"
        first = not s[line_start:start].strip() or s.endswith("  ", 0, start)
        if first and (_SECTION_TAIL_RE.match(s, end) or _HEADING_TAIL_RE.match(s, end)):
            return True
    return False


@register
class PiiRedactStage(ScoreStage):
    """Replace e-mails, IPs and phone numbers in ``text`` by placeholders; adds ``pii.count``."""

    kind: ClassVar[str] = "pii.redact"
    Config = PiiRedactConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    outputs: ClassVar[tuple[str, ...]] = (schema.TEXT, schema.PII_COUNT)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.2)
    summary: ClassVar[str] = (
        "redact e-mails, IP addresses and phone numbers in text; adds pii.count"
    )
    config: PiiRedactConfig

    def _ip(self, m: re.Match[str]) -> str:
        text = m.group(0)
        if "." in text and _ipv4_is_numbering(m):
            return text
        if ":" in text:
            groups = [g for g in text.split(":") if g]
            if not _DIGITS_RE.search(text) or len(groups) < 3 or max(map(len, groups)) <= 2:
                # "a::b" (C++ scopes), "::2" / "1::2" (slices), 21:00:00:24:ff:31:4c:48 (WWN/MAC)
                return text
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return text
        if self.config.only_public_ips and not addr.is_global:
            return text
        self._n += 1
        return self.config.ip_placeholder

    def setup(self) -> None:
        """Load the pre-scan kernel (numba's cached code) and its tables once per worker."""
        self._kernel = _have_numba()
        if self._kernel:
            _windows("")
        else:
            log.warning(
                "pii.redact: numba is not installed (pip install numba==0.68.1): running the "
                "patterns over the whole text (same output, ~6x slower)"
            )

    def _dt_ip(self, m: re.Match[str]) -> str:
        """datatrove's ``public_ip_validator``: ``ipaddress`` parses it (and it is global)."""
        text = m.group(0)
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return text
        if self.config.only_public_ips and not addr.is_global:
            return text
        self._n += 1
        return self.config.ip_placeholder

    def redact(self, text: str, windows: np.ndarray | None = None) -> tuple[str, int]:
        """Return (redacted text, number of redactions).

        Each pattern runs only on the runs of characters that could hold its matches
        (``windows``, from :func:`scan_windows`, or found here); the runs are found again after
        a pattern changed the text."""
        if windows is None and not _have_numba():
            return self.redact_reference(text)
        self._n = 0
        c = self.config
        win = _windows(text) if windows is None else windows
        if not len(win):
            return text, 0
        if c.emails:
            regex = DT_EMAIL_RE if c.rules == "datatrove" else EMAIL_RE
            text, k, spans = _sub_in_runs(
                regex, text, win, _EMAIL, c.email_placeholder, _MARGIN["email"]
            )
            self._n += k
            win = _carry(win, _EMAIL, spans, text, _inert(c.email_placeholder))
        if c.rules == "datatrove":
            if c.ips:
                text, _, _ = _sub_in_runs(DT_IP_RE, text, win, _IPV4, self._dt_ip, _MARGIN["dt_ip"])
            return text, self._n
        if c.ips:
            inert = _inert(c.ip_placeholder)
            text, _, spans = _sub_in_runs(IPV4_RE, text, win, _IPV4, self._ip, _MARGIN["ipv4"])
            win = _carry(win, _IPV4, spans, text, inert)
            if "::" in text or text.count(":") >= 3:
                text, _, spans = _sub_in_runs(IPV6_RE, text, win, _IPV6, self._ip, _MARGIN["ipv6"])
                win = _carry(win, _IPV6, spans, text, inert)
        if c.phones:
            text, k, _ = _sub_in_runs(
                PHONE_RE, text, win, _PHONE, c.phone_placeholder, _MARGIN["phone"]
            )
            self._n += k
        return text, self._n

    def redact_reference(self, text: str) -> tuple[str, int]:
        """The patterns over the whole text, one after another, no pre-scan: the reference that
        :meth:`redact` and :meth:`score` must equal (tests, ``assay bench lid_pii``)."""
        c = self.config
        self._n = 0
        if c.rules == "datatrove":
            if c.emails:
                text, k = DT_EMAIL_RE.subn(c.email_placeholder, text)
                self._n += k
            if c.ips:
                text = DT_IP_RE.sub(self._dt_ip, text)
            return text, self._n
        if c.emails and "@" in text:
            text, k = EMAIL_RE.subn(c.email_placeholder, text)
            self._n += k
        if c.ips:
            if "." in text:
                text = IPV4_RE.sub(self._ip, text)
            if "::" in text or text.count(":") >= 3:
                text = IPV6_RE.sub(self._ip, text)
        if c.phones:
            text, k = PHONE_RE.subn(c.phone_placeholder, text)
            self._n += k
        return text, self._n

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        col = table.column(schema.TEXT)
        if col.null_count:
            col = pc.fill_null(col, "")
        if col.type != pa.large_string():
            col = col.cast(pa.large_string())
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if getattr(self, "_kernel", None) is None:
            self.setup()
        if not self._kernel:
            pairs = [self.redact_reference(t) for t in col.to_pylist()]
            return {
                schema.TEXT: pa.array([t for t, _ in pairs], pa.large_string()),
                schema.PII_COUNT: pa.array([n for _, n in pairs], pa.int32()),
            }
        windows, row_offsets = scan_windows(col)
        counts = np.zeros(len(col), np.int32)
        changed = np.zeros(len(col), np.bool_)
        new_texts: list[str] = []
        for i in np.flatnonzero(np.diff(row_offsets)).tolist():
            r, n = self.redact(col[i].as_py(), windows[row_offsets[i] : row_offsets[i + 1]])
            if n:
                counts[i] = n
                changed[i] = True
                new_texts.append(r)
        if new_texts:
            col = pc.replace_with_mask(
                col, pa.array(changed), pa.array(new_texts, pa.large_string())
            )
        return {schema.TEXT: col, schema.PII_COUNT: pa.array(counts, pa.int32())}
