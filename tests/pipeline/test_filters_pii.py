"""pii.redact against datatrove's PIIFormatter on real changelogs and documentation pages.

Changelogs and copyright files are full of real e-mail addresses: all must go. Doc pages are full
of things shaped like addresses and phone numbers (section numbers, versions, dates, times,
C++ scopes, slices): they must stay.
"""

from __future__ import annotations

import functools
import re

import pyarrow as pa
import pytest

from pipeline.filters.pii import EMAIL_RE, PiiRedactStage
from pipeline.stage import StageContext
from tests.conftest import doc_table, read_jsonl_zst, reference_in_processes


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


# --- the run pre-scan (numba) and the windowed passes against their references ----------------

#: the runs each pattern's matches lie in, as plain regular expressions (the kernel's reference)
_RUNS = [
    (1, re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@\[\]:-]+"), lambda r: "@" in r),
    (2, re.compile(r"[\d.]+"), lambda r: r.count(".") >= 3 and len(r) - r.count(".") >= 4),
    (4, re.compile(r"[0-9A-Fa-f:]+"), lambda r: r.count(":") >= 2),
    (8, re.compile(r"[\d .()+-]+"), lambda r: re.search(r"\+\d|\d{3}[ .-]\d{4}", r) is not None),
]

#: hand-made texts where runs touch, nest and use non-ASCII digits
EDGE_TEXTS = [
    "mail jane@192.168.1.20 or jane@[8.8.8.8] or x@8.8.4.4.example.org, ping 8.8.8.8",
    "call +٣٣ ١٢٣٤ ٥٦٧٨ or ٥٥٥-١٢٣-٤٥٦٧ or （555） 123-4567; ip ١.٢.٣.٤ and 1.2.3.4",
    "(555) 123-4567jane@example.org+1 512-346-8990 8.8.8.8:53 2001:4860:4860::8888",
    "ünïcødé bob@exämple.org ök, émile@example.fr, 𝟙𝟚𝟛-4567, 123-４５６７ 9.9.9.9",
    "a@b.c d@e.f 1.1.1.1.1 1.1.1.1 ::1 fe80::1 2606:4700:4700::1111 +49 30 1234 5678",
    "icon@2x.png pkg@1.2.3 user@localhost root@127.0.0.1 x@y.zz 203.0.113.7-1 v1.2.3.4",
    "",
    "no pii at all, only words and 12 numbers 3.14",
]


def _reference_runs(text: str) -> list[tuple[int, int, int]]:
    out = []
    for kind, rx, ok in _RUNS:
        out += [(kind, m.start(), m.end()) for m in rx.finditer(text) if ok(m.group())]
    return sorted(out)


@pytest.fixture(scope="module")
def pii_corpus(signed_texts, raw_docs) -> list[str]:
    """300 signed changelogs and copyright files, 600 raw documents, the edge cases."""
    return signed_texts + [d["text"] for d in raw_docs] + EDGE_TEXTS


def test_runs_kernel_matches_its_regex_reference(pii_corpus):
    from pipeline.filters.pii import _windows, scan_windows

    total = 0
    for t in pii_corpus:
        got = sorted(map(tuple, _windows(t).tolist()))
        assert got == _reference_runs(t), t[:80]
        total += len(got)
    assert total > 2000
    col = pa.array([None, *pii_corpus[:50], None], pa.large_string()).slice(1, 50)
    win, offsets = scan_windows(col)
    for i, t in enumerate(pii_corpus[:50]):
        assert sorted(map(tuple, win[offsets[i] : offsets[i + 1]].tolist())) == _reference_runs(t)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"only_public_ips": False},
        {"email_placeholder": "", "ip_placeholder": "1.2.3.4", "phone_placeholder": "555-123-4567"},
        {"email_placeholder": "x", "ip_placeholder": "::", "phone_placeholder": "+1"},
        {"rules": "datatrove"},
        {"rules": "datatrove", "only_public_ips": False, "email_placeholder": "8.8.8.8"},
    ],
)
def test_batch_output_equals_the_whole_text_passes(pii_corpus, config):
    """Runs, moved or re-found runs and the batch pre-scan change nothing: the output is what
    the patterns give over the whole text, for inert and for awkward placeholders."""
    stage = PiiRedactStage(config)
    out = stage.process(doc_table(pii_corpus), StageContext("pii"))
    reference = PiiRedactStage(config)
    ref = [reference.redact_reference(t) for t in pii_corpus]
    texts = out.column("text").to_pylist()
    bad = [i for i, (a, (b, _)) in enumerate(zip(texts, ref, strict=True)) if a != b]
    assert not bad, [(pii_corpus[i][:60], texts[i][:60], ref[i][0][:60]) for i in bad[:3]]
    assert out.column("pii.count").to_pylist() == [n for _, n in ref]
    assert sum(n > 0 for _, n in ref) > 250


def _piiformatter(texts: list[str], public: bool) -> list[str]:
    """datatrove's PIIFormatter over ``texts`` (module level: run in spawned processes)."""
    from datatrove.pipeline.formatters.pii import PIIFormatter

    dt = PIIFormatter(only_remove_public_ips=public, email_replacement="<EMAIL>", ip_replacement="<IP>")
    return [dt.format(t) for t in texts]


def test_datatrove_rules_give_piiformatter_output_on_every_real_document(shared_data):
    """rules="datatrove": 100% identical text to datatrove's PIIFormatter, on 1,000 raw documents
    and 1,553 changelogs and copyright files (placeholders as single strings: datatrove cycles
    through a tuple of them)."""
    pytest.importorskip("datatrove.pipeline.formatters.pii")
    texts = [d["text"] for d in read_jsonl_zst(shared_data / "pretrain_raw.jsonl.zst", limit=1000)]
    texts += [d["text"] for d in read_jsonl_zst(shared_data / "neardup_changelog.jsonl.zst")]
    texts += [d["text"] for d in read_jsonl_zst(shared_data / "neardup_copyright.jsonl.zst")]
    for public in (True, False):
        # datatrove's loop in two spawned processes, beside ours (same per-text calls)
        wait = reference_in_processes(functools.partial(_piiformatter, public=public), texts)
        stage = PiiRedactStage({"rules": "datatrove", "only_public_ips": public})
        got = stage.process(doc_table(texts), StageContext("pii")).column("text").to_pylist()
        expected = wait()
        assert len(expected) == len(texts)
        bad = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
        assert not bad, bad[:5]
        assert sum(a != b for a, b in zip(texts, expected, strict=True)) > 1500


def test_without_numba_the_stage_runs_the_whole_text_passes(monkeypatch, signed_texts, caplog):
    import pipeline.filters.pii as pii_mod

    texts = signed_texts[:30] + EDGE_TEXTS
    expected = PiiRedactStage().process(doc_table(texts), StageContext("pii"))
    monkeypatch.setattr(pii_mod, "_have_numba", lambda: False)
    stage = PiiRedactStage()
    stage.setup()
    out = stage.process(doc_table(texts), StageContext("pii"))
    assert stage._kernel is False and "numba is not installed" in caplog.text
    assert out.column("text").to_pylist() == expected.column("text").to_pylist()
    assert out.column("pii.count").to_pylist() == expected.column("pii.count").to_pylist()
    assert stage.redact(texts[0]) == stage.redact_reference(texts[0])
