"""pii.redact against datatrove's PIIFormatter on real changelogs and documentation pages.

Changelogs and copyright files are full of real e-mail addresses: all must go. Doc pages are full
of things shaped like addresses and phone numbers (section numbers, versions, dates, times,
C++ scopes, slices): they must stay.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from pipeline.filters.pii import EMAIL_RE, PiiRedactStage
from pipeline.stage import StageContext
from tests.conftest import doc_table, read_jsonl_zst


@pytest.fixture(scope="module")
def signed_texts(shared_data) -> list[str]:
    changelogs = read_jsonl_zst(shared_data / "neardup_changelog.jsonl.zst", limit=150)
    copyrights = read_jsonl_zst(shared_data / "neardup_copyright.jsonl.zst", limit=150)
    return [d["text"] for d in changelogs + copyrights]


def test_every_email_datatrove_finds_is_redacted(signed_texts):
    dt_pii = pytest.importorskip("datatrove.pipeline.formatters.pii")
    dt_email = dt_pii.PIIFormatter().emails_replacer.regex
    stage = PiiRedactStage()
    out = stage.process(doc_table(signed_texts), StageContext("pii"))
    assert out.num_rows == len(signed_texts)
    assert out.schema.field("pii.count").type == pa.int32()
    texts = out.column("text").to_pylist()
    found = sum(len(dt_email.findall(t)) for t in signed_texts)
    assert found > 500
    left = [m.group(0) for t in texts for m in dt_email.finditer(t)]
    # what datatrove still sees are not addresses: asset names like icon@2x.png, pkg@1.2.3
    assert all(re.search(r"@[\w.-]*(\.\d+|\.(png|jpe?g|gif|svg|webp|css|js))$", x) for x in left), (
        left[:5]
    )
    assert sum(t.count("<EMAIL>") for t in texts) >= found - len(left)
    assert sum(out.column("pii.count").to_pylist()) >= found - len(left)


def test_doc_pages_keep_versions_sections_dates_and_code(raw_docs):
    dt_pii = pytest.importorskip("datatrove.pipeline.formatters.pii")
    dt_ip = dt_pii.PIIFormatter(remove_emails=False)
    ours = PiiRedactStage({"emails": False, "phones": False})
    texts = [d["text"] for d in raw_docs]
    dt_hits = sum(
        sum(
            1 for m in dt_ip.ip_replacer.regex.finditer(t) if dt_pii.public_ip_validator(m.group(0))
        )
        for t in texts
    )
    our_hits = sum(ours.redact(t)[1] for t in texts)
    # datatrove's rule takes section numbers and versions ("4.5.1.11. End of Stream") for
    # public addresses; ours keeps them
    assert dt_hits > 20 and our_hits <= dt_hits // 4, (dt_hits, our_hits)


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.11.7 was released on 2023-12-04 at 12:30:45.",
        "Upgrade to version 2.6.32.1 first; Standards-Version: 4.6.1.0.",
        "binutils (2.10.0.27-0.cvs20001011.2) unstable; urgency=low",
        "4.5.1.11. End of Stream\n4.5.1.12. Commit Points",
        "13.1.2.3 Set Methods",
        "Mozilla/5.0 (X11; U; Linux i686; rv:1.8.1.1) Gecko/20061204 Firefox/2.0.0.1",
        "uGuru 2.3.0.0 ~ 2.3.0.9 (AN8)",
        "Listen on 127.0.0.1:8080 or 192.168.1.20; docs use 192.0.2.30 and 2001:db8::1.",
        "std::vector and a::b are C++ scopes; a[::2] and b[1::2] are slices; fe80::1 is local.",
        "WWN 21:00:00:24:ff:31:4c:48 and MAC 00:1a:2b:3c:4d:5e",
        "ISBN 978-0-13-110362-7, a 1024 x 768 screen, 10.000.000 users, DFARS 252.227-7013.",
        "Retina assets icon@2x.png and logo@3x.jpg; npm install left-pad@1.3.0",
        "$Revision: 1.2.3.4$",
    ],
)
def test_not_pii(text):
    assert PiiRedactStage().redact(text) == (text, 0)


@pytest.mark.parametrize(
    ("text", "expected", "n"),
    [
        (
            "-- Jane Doe <jane.doe@example.org>  Thu, 14 May 2020",
            "-- Jane Doe <<EMAIL>>  Thu, 14 May 2020",
            1,
        ),
        (
            "Telephone: +1 (703) 827-2606. Fax: +1 512-346-8990.",
            "Telephone: <PHONE>. Fax: <PHONE>.",
            2,
        ),
        ("call (412) 268-7395 or 800-292-9263", "call <PHONE> or <PHONE>", 2),
        ("ping 8.8.8.8.", "ping <IP>.", 1),
        ("the server 128.42.1.30 answers", "the server <IP> answers", 1),
        (
            "echo add grand.central.org 18.9.48.14:128.2.203.61",
            "echo add grand.central.org <IP>:<IP>",
            2,
        ),
        ("dns 2001:4860:4860::8888 works", "dns <IP> works", 1),
    ],
)
def test_pii(text, expected, n):
    assert PiiRedactStage().redact(text) == (expected, n)


def test_placeholders_and_switches_are_configurable():
    text = "mail jane@example.org, call +49 30 1234 5678, ping 8.8.8.8 or 10.0.0.1"
    stage = PiiRedactStage(
        {"email_placeholder": "[email]", "phone_placeholder": "[tel]", "ip_placeholder": "[ip]"}
    )
    assert stage.redact(text) == ("mail [email], call [tel], ping [ip] or 10.0.0.1", 3)
    stage = PiiRedactStage({"phones": False, "only_public_ips": False})
    assert stage.redact(text) == ("mail <EMAIL>, call +49 30 1234 5678, ping <IP> or <IP>", 3)
    assert EMAIL_RE.fullmatch("first.last+tag@sub.example.co.uk")


def test_never_drops_and_counts_per_row(raw_docs):
    texts = [d["text"] for d in raw_docs[:200]] + ["", "no pii here"]
    ctx = StageContext("pii")
    out = PiiRedactStage().process(doc_table(texts), ctx)
    assert out.num_rows == len(texts) and ctx.counters["dropped"] == 0
    counts = out.column("pii.count").to_pylist()
    for before, after, n in zip(texts, out.column("text").to_pylist(), counts, strict=True):
        assert (before == after) == (n == 0)
