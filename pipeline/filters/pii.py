"""PII redaction: e-mail addresses, IP addresses and phone numbers in ``text``.

Never drops a document: it rewrites ``text`` and adds ``pii.count`` (redactions per row).

The patterns are tuned on real documentation pages and changelogs, where the usual
false positives live:

- e-mails: ``local@domain.tld`` (datatrove's PIIFormatter pattern family); Debian changelog
  trailers (``-- Jane Doe <jane@example.org>``) are redacted, which is the point.
- IPs: dotted quads and IPv6 are validated with :mod:`ipaddress`; by default only public
  (global) addresses are redacted, as datatrove does — ``127.0.0.1``, ``192.168.0.1`` and
  documentation ranges are examples, not PII. A dotted quad inside a longer dotted run
  (``1.2.3.4.5``, a version string) is not an address.
- phones: only shapes that are phone numbers and not version numbers, dates or sizes —
  ``+<country> …`` international numbers with at least 8 digits, ``(555) 123-4567`` and
  ``555-123-4567`` / ``555.123.4567``.
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

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])")
IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
# a run of hex digits and colons with at least two colons; ipaddress decides if it is one
IPV6_RE = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{3,39}(?![\w:])")
VERSION_BEFORE_RE = re.compile(r"(?i)(?:version|ver\.?|release|v)\s*$")
PHONE_RE = re.compile(
    r"(?<![\w.+-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"  # +49 30 1234 5678, +1 (555) 123-4567
    r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|(?:1[.-])?\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567, 1-800-555-0199, 555.123.4567
    r")(?![\w.-]?\d)"
)


class PiiRedactConfig(StageConfig):
    emails: bool = Field(True, description="redact e-mail addresses")
    ips: bool = Field(True, description="redact IP addresses")
    phones: bool = Field(True, description="redact phone numbers")
    only_public_ips: bool = Field(True, description="leave private, loopback and reserved addresses (as datatrove does)")
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP>"
    phone_placeholder: str = "<PHONE>"


@register
class PiiRedactStage(ScoreStage):
    kind: ClassVar[str] = "pii.redact"
    Config = PiiRedactConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    outputs: ClassVar[tuple[str, ...]] = (schema.TEXT, schema.PII_COUNT)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.2)
    summary: ClassVar[str] = "redact e-mails, IP addresses and phone numbers in text; adds pii.count"
    config: PiiRedactConfig

    def _ip(self, m: re.Match[str]) -> str:
        if VERSION_BEFORE_RE.search(m.string, max(0, m.start() - 12), m.start()):
            return m.group(0)  # "version 1.2.3.4"
        if ":" in m.group(0) and not any(ch.isdigit() for ch in m.group(0)):
            return m.group(0)  # C++ scopes like "a::b" are valid IPv6 text but not addresses
        try:
            addr = ipaddress.ip_address(m.group(0))
        except ValueError:
            return m.group(0)
        if self.config.only_public_ips and not addr.is_global:
            return m.group(0)
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
            r, n = self.redact(t)
            texts.append(r)
            counts.append(n)
        return {schema.TEXT: pa.array(texts, pa.large_string()), schema.PII_COUNT: pa.array(counts, pa.int32())}
