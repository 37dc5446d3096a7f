"""`assay bench warc_corpus`: build the ≥ 10k-page WARC corpus for `assay bench pipeline`.

The pages are real HTML from Debian bookworm documentation packages, fetched with
``apt-get download`` (nothing is installed system-wide: ``dpkg-deb -x`` unpacks them under the
cache folder), as ``../shared/data/recipe/00_fetch.sh`` does. Every page of
``html_pages_sample.jsonl.zst`` comes back by its ``source_pkg`` and ``installed_path`` (its
unmodified HTML: the sample file holds only the extracted text); the rest are further ``.html``
files of the same packages, chosen in a fixed order (sha1 of the path), until ``--pages``.

Output: ``<cache>/warc/assay-docs-NNNNN.warc.gz`` (``--per-file`` pages each, WARC/1.0
``response`` records with synthesized HTTP headers, like ``../shared/data/warc``) and
``<cache>/warc/corpus.json`` (package versions, page counts, each file's sha256). The records
carry a fixed date and name-based record ids, so the same packages give the same bytes. The
output is not committed and CI does not need it (~100 MB compressed for 12,000 pages).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / ".." / "shared" / "data" / "html_pages_sample.jsonl.zst"
WARC_DATE = "2026-12-01T00:00:00Z"
MIN_BYTES, MAX_BYTES = 1_000, 1_000_000


def default_cache() -> Path:
    return Path(os.environ.get("ASSAY_CACHE", Path.home() / ".cache" / "assay")) / "warc-corpus"


def _sample_pages() -> list[dict[str, Any]]:
    import zstandard

    with open(SAMPLE, "rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh).read()
    rows = []
    for line in raw.decode("utf-8").splitlines():
        r = json.loads(line)
        rows.append({"id": r["id"], "pkg": r["source_pkg"], "path": r["installed_path"]})
    return rows


def fetch_packages(pkgs: list[str], cache: Path) -> dict[str, str]:
    """``apt-get download`` + ``dpkg-deb -x`` each package once; returns package -> version."""
    debs, extract = cache / "debs", cache / "extract"
    debs.mkdir(parents=True, exist_ok=True)
    extract.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_")[0]: p for p in debs.glob("*.deb")}
    missing = [p for p in pkgs if p not in have]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
        have = {p.name.split("_")[0]: p for p in debs.glob("*.deb")}
    versions = {}
    for p in pkgs:
        deb = have[p]
        versions[p] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                     capture_output=True, text=True).stdout.strip()
        dest = extract / p
        if not (dest / ".unpacked").exists():
            dest.mkdir(exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
            (dest / ".unpacked").touch()
    return versions


def _html_files(root: Path) -> list[str]:
    """Installed paths (``/usr/...``) of the package's HTML files within the size bounds."""
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith((".html", ".htm")):
                f = Path(dirpath) / n
                if f.is_symlink() or not f.is_file():
                    continue
                if MIN_BYTES <= f.stat().st_size <= MAX_BYTES:
                    out.append("/" + str(f.relative_to(root)))
    return out


def select_pages(sample: list[dict[str, Any]], extract: Path, n_pages: int) -> tuple[list[tuple[str, str]], int]:
    """(package, installed path) pairs: the sample's pages first, then the rest by sha1 order."""
    chosen: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for r in sample:
        key = (r["pkg"], r["path"])
        if key not in seen and (extract / r["pkg"] / r["path"].lstrip("/")).is_file():
            seen.add(key)
            chosen.append(key)
    from_sample = len(chosen)
    rest = []
    for pkg_dir in sorted(p for p in extract.iterdir() if p.is_dir()):
        for path in _html_files(pkg_dir):
            if (pkg_dir.name, path) not in seen:
                rest.append((hashlib.sha1(f"{pkg_dir.name}:{path}".encode()).hexdigest(), pkg_dir.name, path))
    rest.sort()
    for _, pkg, path in rest[: max(0, n_pages - len(chosen))]:
        chosen.append((pkg, path))
    return chosen[:n_pages], from_sample


def write_warcs(pages: list[tuple[str, str]], versions: dict[str, str], extract: Path, out: Path,
                per_file: int) -> list[dict[str, Any]]:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("assay-docs-*.warc.gz"):
        old.unlink()
    files = []
    for i in range(0, len(pages), per_file):
        name = f"assay-docs-{i // per_file:05d}.warc.gz"
        tmp = out / (name + ".tmp")
        with open(tmp, "wb") as fh:
            w = WARCWriter(fh, gzip=True)
            for pkg, path in pages[i: i + per_file]:
                body = (extract / pkg / path.lstrip("/")).read_bytes()
                url = "file://" + path
                http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                                   ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
                rec = w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                           warc_headers_dict={
                                               "WARC-Date": WARC_DATE,
                                               "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>",
                                               "X-Source-Package": f"{pkg}={versions[pkg]}",
                                           })
                w.write_record(rec)
        tmp.replace(out / name)
        files.append({"file": name, "pages": len(pages[i: i + per_file]),
                      "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()})
    return files


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="assay bench warc_corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(default_cache()), help="work folder (default $ASSAY_CACHE/warc-corpus)")
    ap.add_argument("--pages", type=int, default=12_000, help="pages in the corpus (default 12,000)")
    ap.add_argument("--per-file", type=int, default=1_000, help="pages per WARC file (default 1,000)")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    sample = _sample_pages()
    pkgs = sorted({r["pkg"] for r in sample})
    versions = fetch_packages(pkgs, cache)
    pages, from_sample = select_pages(sample, cache / "extract", args.pages)
    if len(pages) < args.pages:
        raise SystemExit(f"only {len(pages)} pages within {MIN_BYTES}..{MAX_BYTES} bytes; lower --pages")
    files = write_warcs(pages, versions, cache / "extract", cache / "warc", args.per_file)
    info = {"pages": len(pages), "from_html_pages_sample": from_sample, "sample_pages": len(sample),
            "packages": versions, "files": files, "warc_date": WARC_DATE}
    (cache / "warc" / "corpus.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    mb = sum((cache / "warc" / f["file"]).stat().st_size for f in files) / 1e6
    print(f"{len(pages)} pages ({from_sample} of the sample's {len(sample)}) in {len(files)} WARC files, "
          f"{mb:.1f} MB, under {cache / 'warc'}")
    return info


if __name__ == "__main__":
    main()
