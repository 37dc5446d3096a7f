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
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import Resources, ScoreStage, StageConfig

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


class PiiRedactConfig(StageConfig):
    """Configuration of ``pii.redact``."""

    emails: bool = Field(True, description="redact e-mail addresses")
    ips: bool = Field(True, description="redact IP addresses")
    phones: bool = Field(True, description="redact phone numbers")
    only_public_ips: bool = Field(
        True, description="leave private, loopback and reserved addresses (as datatrove does)"
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

    def redact(self, text: str) -> tuple[str, int]:
        """Return (redacted text, number of redactions)."""
        self._n = 0
        c = self.config
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
        texts, counts = [], []
        for t in table.column(schema.TEXT).to_pylist():
            r, n = self.redact(t or "")
            texts.append(r)
            counts.append(n)
        return {
            schema.TEXT: pa.array(texts, pa.large_string()),
            schema.PII_COUNT: pa.array(counts, pa.int32()),
        }
