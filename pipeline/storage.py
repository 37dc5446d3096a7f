"""One storage layer for every path a run touches: inputs, shards, artifacts, state, markers.

A location is a local path (``runs/x``, ``/data/crawl``, ``file:///data``) or a URL:
``s3://bucket/prefix`` (pyarrow's native S3 client; the endpoint comes from the standard
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` variables, credentials and region from the usual
AWS variables and files), ``gs://bucket/prefix`` (pyarrow's GCS client; an emulator from the
standard ``STORAGE_EMULATOR_HOST`` variable) or any other fsspec
URL (``memory://``, ``az://`` with adlfs, ``hdfs://``…), reached through
``pyarrow.fs.FSSpecHandler``. Everything else in the pipeline goes through the functions here,
so readers, writers, the manifest and the run state do not care where the bytes live.

Commit semantics, the same everywhere: a file is written completely, then a small marker that
names it is published; only markers make work visible (resume, manifest). On a local disk a
file is written to a temp name, fsynced, renamed into place and its folder fsynced. On an
object store nothing relies on rename (S3 and GCS have none): the object is PUT at its final
key (a PUT is all-or-nothing) and the marker is PUT after it, so a killed writer leaves at
worst an object that no marker names, which the resumed run overwrites with the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pyarrow.fs as pafs

#: URL schemes handled by pyarrow's own clients; anything else with "://" goes to fsspec
_NATIVE = {"s3", "s3a", "gs", "gcs"}


def is_url(loc: str | os.PathLike[str] | RemotePath) -> bool:
    """True for a non-local location (``s3://…``, ``gs://…``, ``memory://…``)."""
    if isinstance(loc, RemotePath):
        return True
    s = str(loc)
    return "://" in s and not s.startswith("file://")


class RemotePath:
    """A URL with the few path operations the pipeline needs (``/``, ``name``, ``parent``).

    ``pathlib.Path`` cannot hold a URL (``Path("s3://b/k")`` becomes ``s3:/b/k``), so remote
    locations are this small value type; local ones stay ``pathlib.Path``.
    """

    __slots__ = ("url",)

    def __init__(self, url: str):
        scheme, rest = url.split("://", 1)
        self.url = f"{scheme}://{rest.rstrip('/')}" if rest.strip("/") else f"{scheme}://"

    def __truediv__(self, other: str | os.PathLike[str]) -> RemotePath:
        return RemotePath(f"{self.url}/{str(other).lstrip('/')}")

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.url.rsplit("/", 1)[0])

    def relative_to(self, other: RemotePath | str) -> str:
        base = str(other).rstrip("/") + "/"
        if not self.url.startswith(base):
            raise ValueError(f"{self.url!r} is not under {str(other)!r}")
        return self.url[len(base):]

    def exists(self) -> bool:
        return exists(self)

    def resolve(self) -> RemotePath:
        return self

    def is_relative_to(self, other: object) -> bool:
        """Only under another URL (a local root never contains a URL)."""
        return isinstance(other, RemotePath) and (self.url + "/").startswith(other.url + "/")

    def read_text(self) -> str:
        return read_bytes(self).decode()

    def read_bytes(self) -> bytes:
        return read_bytes(self)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: RemotePath) -> bool:
        return self.url < other.url


Loc = Path | RemotePath


def as_loc(loc: str | os.PathLike[str] | RemotePath) -> Loc:
    """``Path`` for a local location, :class:`RemotePath` for a URL."""
    if isinstance(loc, RemotePath):
        return loc
    s = os.fspath(loc) if not isinstance(loc, str) else loc
    if s.startswith("file://"):
        return Path(urlsplit(s).path)
    if "://" in s:
        return RemotePath(s)
    return Path(s)


@lru_cache(maxsize=32)
def _filesystem(scheme: str, netloc: str) -> pafs.FileSystem:
    if scheme in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kw: dict[str, Any] = {}
        if endpoint:
            ep = urlsplit(endpoint)
            kw["endpoint_override"] = ep.netloc or ep.path
            kw["scheme"] = ep.scheme or "https"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kw["region"] = region
        return pafs.S3FileSystem(**kw)
    if scheme in ("gs", "gcs"):
        # STORAGE_EMULATOR_HOST is the variable Google's client libraries read for an emulator
        # (``http://host:port``): anonymous, plain HTTP there; else the default credentials chain
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            ep = urlsplit(emulator if "://" in emulator else f"http://{emulator}")
            return pafs.GcsFileSystem(anonymous=True, endpoint_override=ep.netloc, scheme=ep.scheme or "http")
        return pafs.GcsFileSystem()
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec ships with the storage extra
        raise RuntimeError(f"{scheme}:// locations need fsspec: pip install 'assay[storage]'") from None
    try:
        cls = fsspec.get_filesystem_class(scheme)
        # one that needs a host or options fails in __init__ and then again, noisily, in its
        # __del__ ("Exception ignored in ... FTPFileSystem.__del__"): ask its signature first
        sig = inspect.signature(cls.__init__).parameters.values()
        need = [p.name for p in sig if p.name != "self" and p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if need:
            raise TypeError(f"{cls.__name__} needs {', '.join(need)}")
        fs = cls()  # what fsspec.filesystem(scheme) does
    except (ValueError, TypeError, ImportError) as e:  # unknown protocol, one needing a host or options, a missing driver
        raise ValueError(f"{scheme}:// locations cannot be opened: {e}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def check_scheme(loc: str | os.PathLike[str] | RemotePath) -> None:
    """ValueError naming the scheme when a URL's scheme cannot be opened here (unknown, one that
    needs a host or options, a missing driver); nothing for local paths and the native clients.
    Builds only the fsspec filesystem object (cached, as a run would), contacting nothing."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return
    scheme, rest = loc.url.split("://", 1)
    if scheme not in _NATIVE:
        _filesystem(scheme, rest.split("/", 1)[0])


def resolve(loc: str | os.PathLike[str] | RemotePath) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a location."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return _local(), str(loc.absolute())
    scheme, rest = loc.url.split("://", 1)
    netloc = rest.split("/", 1)[0]
    fs = _filesystem(scheme, netloc)
    if scheme in _NATIVE:
        return fs, rest
    return fs, fs.handler.fs._strip_protocol(loc.url)  # fsspec's own path form ("/x" for memory://x)


@lru_cache(maxsize=1)
def _local() -> pafs.LocalFileSystem:
    return pafs.LocalFileSystem()


# -- reading ----------------------------------------------------------------------------------------


def exists(loc: str | os.PathLike[str] | RemotePath) -> bool:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return loc.exists()
    fs, p = resolve(loc)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def is_file(loc: str | os.PathLike[str] | RemotePath) -> bool:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return loc.is_file()
    fs, p = resolve(loc)
    return fs.get_file_info(p).type == pafs.FileType.File


def is_dir(loc: str | os.PathLike[str] | RemotePath) -> bool:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return loc.is_dir()
    fs, p = resolve(loc)
    return fs.get_file_info(p).type == pafs.FileType.Directory


def size(loc: str | os.PathLike[str] | RemotePath) -> int:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return loc.stat().st_size
    fs, p = resolve(loc)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(str(loc))
    return int(info.size or 0)


def open_input(loc: str | os.PathLike[str] | RemotePath) -> BinaryIO:
    """A binary stream for sequential reading (readers, hashing)."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return open(loc, "rb")
    fs, p = resolve(loc)
    return io.BufferedReader(_RawStream(fs.open_input_stream(p)), buffer_size=1 << 20)  # type: ignore[return-value]


class _RawStream(io.RawIOBase):
    """A pyarrow input stream as a Python raw file (so ``readline``, gzip and zstd work on it)."""

    def __init__(self, native: Any):
        self._native = native

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._native.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()


def open_input_file(loc: str | os.PathLike[str] | RemotePath) -> Any:
    """A seekable file (Parquet footers); a local path is returned as is."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return loc
    fs, p = resolve(loc)
    return fs.open_input_file(p)


def read_bytes(loc: str | os.PathLike[str] | RemotePath) -> bytes:
    with open_input(loc) as fh:
        return fh.read()


def read_json(loc: str | os.PathLike[str] | RemotePath) -> Any:
    return json.loads(read_bytes(loc))


def list_files(loc: str | os.PathLike[str] | RemotePath) -> list[Loc]:
    """Every file under a folder (recursive), sorted; [] when the folder does not exist."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return sorted(f for f in loc.rglob("*") if f.is_file()) if loc.is_dir() else []
    fs, p = resolve(loc)
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    base = p.rstrip("/") + "/"
    return sorted(loc / i.path[len(base):] for i in infos if i.type == pafs.FileType.File and i.path.startswith(base))


def glob(pattern: str) -> list[Loc]:
    """Files matching a glob (``*``, ``?``, ``[…]``; ``**`` spans folders) under its fixed prefix."""
    import glob as _glob

    loc = as_loc(pattern)
    if isinstance(loc, Path):
        return sorted(Path(m) for m in _glob.glob(pattern, recursive=True) if Path(m).is_file())
    url = loc.url
    cut = min(url.find(c) for c in "*?[" if c in url)
    prefix = url[:cut].rsplit("/", 1)[0]
    rx = _glob_regex(url)
    return [f for f in list_files(prefix) if rx.fullmatch(str(f))]


def _glob_regex(pattern: str) -> Any:
    import re

    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            j = pattern.index("]", i + 1)
            body = pattern[i + 1:j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def sha256(loc: str | os.PathLike[str] | RemotePath) -> str:
    h = hashlib.sha256()
    with open_input(loc) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(loc: str | os.PathLike[str] | RemotePath) -> str:
    """A content fingerprint of an input file: its size and the xxh3-128 of every byte.

    Name and size do not tell an edited file from the original (a changed character keeps the
    size); this does. xxh3 streams at several GB/s, so fingerprinting costs far less than the
    read the run itself does.
    """
    import xxhash

    h = xxhash.xxh3_128()
    n = 0
    with open_input(loc) as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
            n += len(chunk)
    return f"{n}:xxh3_128:{h.hexdigest()}"


# -- writing ----------------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def tmp_name(path: Path, tag: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp{tag}-{os.getpid()}")


def publish_local(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final``, fsync the folder: after this the file survives a crash."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def write_bytes(loc: str | os.PathLike[str] | RemotePath, data: bytes) -> None:
    """Write a whole file durably and atomically (see the module docstring)."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        loc.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(loc)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            publish_local(tmp, loc)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. ENOSPC: leave no half-written temp file behind
            raise
        return
    fs, p = resolve(loc)
    with fs.open_output_stream(p) as out:  # one PUT: the object appears whole or not at all
        out.write(data)


def write_json(loc: str | os.PathLike[str] | RemotePath, obj: Any) -> None:
    write_bytes(loc, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def open_output(loc: str | os.PathLike[str] | RemotePath) -> Any:
    """A stream to write ``loc`` directly (object stores: its final key; PUT on close)."""
    fs, p = resolve(loc)
    if isinstance(as_loc(loc), Path):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    return fs.open_output_stream(p)


def makedirs(loc: str | os.PathLike[str] | RemotePath) -> None:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        loc.mkdir(parents=True, exist_ok=True)
    # object stores have no folders: a key's prefix exists once a key under it does


def remove(loc: str | os.PathLike[str] | RemotePath) -> None:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        loc.unlink(missing_ok=True)
        return
    fs, p = resolve(loc)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(p)


def remove_tree(loc: str | os.PathLike[str] | RemotePath) -> None:
    loc = as_loc(loc)
    if isinstance(loc, Path):
        shutil.rmtree(loc, ignore_errors=True)
        return
    for f in list_files(loc):
        remove(f)


def copy_file(src: str | os.PathLike[str] | RemotePath, dst: str | os.PathLike[str] | RemotePath) -> None:
    """Copy one file to ``dst`` (object stores: a server-side copy when both are in one store)."""
    s, d = as_loc(src), as_loc(dst)
    if isinstance(s, Path) and isinstance(d, Path):
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(d)
        shutil.copyfile(s, tmp)
        publish_local(tmp, d)
        return
    fs_s, ps = resolve(s)
    fs_d, pd = resolve(d)
    if fs_s is fs_d:
        fs_s.copy_file(ps, pd)
        return
    with open_input(s) as fin, open_output(d) as out:
        for chunk in iter(lambda: fin.read(1 << 22), b""):
            out.write(chunk)


# -- local working copies (for code that needs a POSIX folder: a third-party barrier's reduce) --


@contextlib.contextmanager
def local_dir(loc: str | os.PathLike[str] | RemotePath) -> Iterator[Path]:
    """A local folder with the contents of ``loc`` (the folder itself when it is local)."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        yield loc
        return
    with tempfile.TemporaryDirectory(prefix="assay-get-") as tmp:
        for f in list_files(loc):
            dst = Path(tmp) / f.relative_to(loc)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(read_bytes(f))
        yield Path(tmp)


@contextlib.contextmanager
def staged_dir(loc: str | os.PathLike[str] | RemotePath) -> Iterator[Path]:
    """A local folder whose files are uploaded to ``loc`` when the block ends without error."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        loc.mkdir(parents=True, exist_ok=True)
        yield loc
        return
    with tempfile.TemporaryDirectory(prefix="assay-put-") as tmp:
        yield Path(tmp)
        for f in sorted(Path(tmp).rglob("*")):
            if f.is_file():
                write_bytes(loc / str(f.relative_to(tmp)), f.read_bytes())


def local_file(loc: str | os.PathLike[str] | RemotePath, cache: Path) -> Path:
    """A local copy of one file under ``cache`` (the file itself when it is local)."""
    loc = as_loc(loc)
    if isinstance(loc, Path):
        return loc
    dst = cache / hashlib.sha1(str(loc).encode()).hexdigest()[:16] / loc.name
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(dst)
        with open_input(loc) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dst)
    return dst


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC / EDQUOT however it arrives (Python's OSError, or pyarrow's IOError text)."""
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, OSError) and ("No space left on device" in str(err) or "Disk quota exceeded" in str(err))
