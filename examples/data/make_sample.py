"""Build the demo sample committed in examples/data/ from ../shared/data/warc (real pages).

Takes every 4th `response` record of the three Debian-docs WARC files (about 375 pages) and
writes them, unmodified, to two gzip-per-record WARC files, plus three exact copies of pages
already in the sample (so the demo's exact dedup has real work), plus one deliberately broken
record (so the demo shows its quarantine). Run from the repo root:

    python examples/data/make_sample.py ../shared/data/warc examples/data
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecordType


def records(src: Path):
    for f in sorted(src.glob("*.warc.gz")):
        with open(f, "rb") as fh:
            for i, rec in enumerate(ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=False)):
                buf = io.BytesIO()
                rec.write(buf)
                yield i, buf.getvalue()


def main(src: str, dst: str, every: int = 4) -> None:
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    picked = [raw for i, raw in records(Path(src)) if i % every == 0]
    half = len(picked) // 2
    # 3 exact re-crawls of English prose pages from the first half (the Rust book and the Python
    # tutorial pass the demo's filters, so its exact dedup has something to find)
    def uri(raw: bytes) -> bytes:
        return raw.split(b"WARC-Target-URI: ", 1)[1].split(b"\r\n", 1)[0]

    prose = [raw for raw in picked[:half] if b"/html/book/" in uri(raw) or b"python3.11/html/tutorial/" in uri(raw)]
    parts = [picked[:half], picked[half:] + prose[:3]]
    for n, part in enumerate(parts):
        path = out / f"debian-docs-sample-{n}.warc.gz"
        with open(path, "wb") as fh:
            for raw in part:
                fh.write(gzip.compress(raw, mtime=0))
            if n == 1:  # one broken record: a header line without a colon and a bad length
                fh.write(gzip.compress(b"WARC/1.0\r\nWARC-Type: response\r\nthis header is broken\r\n"
                                       b"Content-Length: twelve\r\n\r\nnot a record\r\n\r\n", mtime=0))
        print(f"{path}: {len(part)} records, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(*(sys.argv[1:3] or ["../shared/data/warc", "examples/data"]))
