"""The WARC corpus builder: sample pages first, the rest in a fixed order, same bytes twice,
and the files read back as the same pages by fastwarc. Real HTML from ../shared/data/warc
(the full corpus needs apt-get download; CI does not build it)."""

from __future__ import annotations

from pathlib import Path

from bench import warc_corpus as wc

SHARED_WARC = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "warc" / "debian-docs-00000.warc.gz"


def _real_pages(n: int) -> list[tuple[str, bytes]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    with open(SHARED_WARC, "rb") as fh:
        for rec in ArchiveIterator(fh, record_types=WarcRecordType.response):
            url = rec.headers.get("WARC-Target-URI")
            rec.parse_http()
            body = rec.reader.read()
            if url.startswith("file:///") and wc.MIN_BYTES <= len(body) <= wc.MAX_BYTES:
                out.append((url[len("file://"):], body))
            if len(out) == n:
                break
    return out


def test_select_and_write_are_deterministic(tmp_path: Path) -> None:
    extract = tmp_path / "extract"
    pages = _real_pages(12)
    for i, (path, body) in enumerate(pages):
        f = extract / ("pkg-a" if i % 2 else "pkg-b") / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body)
    sample = [{"id": "x", "pkg": "pkg-a", "path": pages[1][0]},
              {"id": "y", "pkg": "pkg-a", "path": "/usr/share/doc/not-there.html"}]
    chosen, from_sample = wc.select_pages(sample, extract, 9)
    assert from_sample == 1 and chosen[0] == ("pkg-a", pages[1][0])  # the sample's page first
    assert len(chosen) == 9 and len(set(chosen)) == 9
    again, _ = wc.select_pages(sample, extract, 9)
    assert again == chosen

    versions = {"pkg-a": "1.0", "pkg-b": "2:3.4-1"}
    f1 = wc.write_warcs(chosen, versions, extract, tmp_path / "w1", per_file=4)
    f2 = wc.write_warcs(chosen, versions, extract, tmp_path / "w2", per_file=4)
    assert [f["pages"] for f in f1] == [4, 4, 1]
    assert [f["sha256"] for f in f1] == [f["sha256"] for f in f2]  # same pages -> same bytes

    from fastwarc.warc import ArchiveIterator, WarcRecordType

    back = []
    for f in f1:
        with open(tmp_path / "w1" / f["file"], "rb") as fh:
            for rec in ArchiveIterator(fh, record_types=WarcRecordType.response):
                pkg = rec.headers.get("X-Source-Package")
                url = rec.headers.get("WARC-Target-URI")
                rec.parse_http()
                back.append((pkg, url, rec.reader.read()))
    assert [(p.split("=")[0], u[len("file://"):]) for p, u, _ in back] == chosen
    by_path = dict(pages)
    assert all(body == by_path[u[len("file://"):]] for _, u, body in back)  # unmodified HTML
    assert back[0][0] == "pkg-a=1.0"
