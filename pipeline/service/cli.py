"""``assay serve``, ``assay token create|list|revoke``, ``assay report``."""

from __future__ import annotations

import ipaddress
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def _opening(what: Callable[[], Any], root: str, catalog: str | None) -> Any:
    """``what()`` (it makes ROOT and opens the catalog); an unusable --root or --catalog (a file in
    the way, an unknown URL scheme, no server there) is one line naming the option."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"--root {root!r}: {e.strerror or e}") from None
    try:
        return what()
    except ImportError as e:  # sqlalchemy: no dialect / driver for the scheme
        raise click.UsageError(f"--catalog {_hide_password(catalog or '')!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - sqlalchemy's errors (bad URL, refused, auth): one line, no traceback
        if type(e).__module__.startswith("sqlalchemy"):
            first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            shown = _hide_password(catalog) if catalog else f"(sqlite in {root!r})"
            raise click.UsageError(f"--catalog {shown}: {type(e).__name__}: {first}") from None
        raise


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def _catalog(root: str, catalog: str | None):  # type: ignore[no-untyped-def]
    from pipeline.service.catalog import Catalog, catalog_url

    return _opening(lambda: Catalog(catalog_url(root, catalog)), root, catalog)


def _hours(ctx: click.Context, param: click.Parameter, v: float) -> float:
    if not (math.isfinite(v) and 0 <= v <= 24 * 3650):
        raise click.BadParameter(f"{v!r}: give hours from 0 to {24 * 3650}")
    return v


def _seconds(ctx: click.Context, param: click.Parameter, v: float) -> float:
    if not (math.isfinite(v) and 0 < v <= 3600):  # a FloatRange lets NaN through
        raise click.BadParameter(f"{v!r}: give seconds, more than 0 and at most 3600")
    return v


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--root", required=True, type=click.Path(file_okay=False), help="folder for the catalog, job work folders and snapshots")
@click.option("--input-root", "input_roots", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="folder that submitted specs may read from: inputs, models, earlier snapshots (repeatable)")
@click.option("--catalog", help="catalog URL (default: SQLite in ROOT); e.g. postgresql://user@host:5432/assay")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-jobs", default=2, show_default=True, type=click.IntRange(1, 256),
              help="jobs running at once (one worker process each)")
@click.option("--ray", metavar="auto|ADDRESS", help="run jobs on Ray")
@click.option("--keep-failed-hours", default=24.0, show_default=True, type=float, callback=_hours,
              help="work folders of failed/cancelled jobs are removed after this long (resubmitting resumes until then)")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="serve HTTPS with this certificate")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False))
@click.option("--header-timeout", default=10.0, show_default=True, type=float, callback=_seconds,
              help="seconds a client has to send a request's head (from connecting or the previous response); "
                   "a slower one is cut off")
@click.option("--body-timeout", default=30.0, show_default=True, type=float, callback=_seconds,
              help="seconds a client has to send a request's body after its head")
def serve(root: str, input_roots: tuple[str, ...], catalog: str | None, host: str, port: int, max_jobs: int,
          ray: str | None, keep_failed_hours: float, tls_cert: str | None, tls_key: str | None,
          header_timeout: float, body_timeout: float) -> None:
    """Serve the REST API (pipeline/service): jobs, snapshots, shards, reports. Needs tokens: `assay token create`."""
    import uvicorn

    from pipeline.service.app import create_app
    from pipeline.service.timeouts import protocol_class

    if bool(tls_cert) != bool(tls_key):  # else uvicorn dies with a bare traceback
        raise click.UsageError("--tls-cert and --tls-key go together: give both (or neither)")
    if not _loopback(host) and not tls_cert:
        click.echo(f"warning: serving on {host} without TLS: bearer tokens cross the network in clear text; "
                   "pass --tls-cert/--tls-key or put a TLS proxy in front", err=True)
    app = _opening(lambda: create_app(root, list(input_roots), catalog=catalog, max_jobs=max_jobs, ray=ray,
                                      keep_failed_s=keep_failed_hours * 3600), root, catalog)
    uvicorn.run(app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key, log_level="info",
                http=protocol_class(header_timeout, body_timeout))


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (roles: read < submit < admin)."""


@token.command("create")
@click.option("--root", required=True, type=click.Path(file_okay=False))
@click.option("--catalog", help="catalog URL (default: SQLite in ROOT)")
@click.option("--role", required=True, type=click.Choice(["read", "submit", "admin"]))
@click.option("--name", required=True, help="who or what uses it")
def token_create(root: str, catalog: str | None, role: str, name: str) -> None:
    """Print a new token once (only its sha256 is stored)."""
    cat = _catalog(root, catalog)
    tid, tok = cat.create_token(name, role)
    click.echo(f"token {tid} ({role}, {name}) — shown once, keep it safe:", err=True)
    click.echo(tok)


@token.command("list")
@click.option("--root", required=True, type=click.Path(file_okay=False))
@click.option("--catalog")
def token_list(root: str, catalog: str | None) -> None:
    import time

    for t in _catalog(root, catalog).list_tokens():
        state = "revoked" if t["revoked_at"] else "live"
        click.echo(f"{t['id']}  {t['role']:<6}  {state:<7}  {time.strftime('%Y-%m-%d %H:%M', time.gmtime(t['created_at']))}  {t['name']}")


@token.command("revoke")
@click.option("--root", required=True, type=click.Path(file_okay=False))
@click.option("--catalog")
@click.argument("token_id")
def token_revoke(root: str, catalog: str | None, token_id: str) -> None:
    """Revoke by token id or name."""
    n = _catalog(root, catalog).revoke_token(token_id)
    if not n:
        click.echo(f"error: no live token {token_id!r}", err=True)
        sys.exit(2)
    click.echo(f"revoked {n} token(s)")


@click.command()
@click.argument("snapshot")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="the HTML file to write")
@click.option("--token", "tok", envvar="ASSAY_TOKEN", help="bearer token when SNAPSHOT is a URL (or $ASSAY_TOKEN)")
def report(snapshot: str, out: str, tok: str | None) -> None:
    """Write a self-contained HTML report of SNAPSHOT (a folder, or http(s)://HOST/v1/snapshots/ID)."""
    if snapshot.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        url = snapshot.rstrip("/") + "/report"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {tok}"} if tok else {})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 - a URL the user gave
                html = r.read().decode()
        except urllib.error.HTTPError as e:
            click.echo(f"error: GET {url}: HTTP {e.code} {e.reason}", err=True)
            sys.exit(2)
        except (urllib.error.URLError, OSError, ValueError) as e:  # refused, no such host, timeout, not UTF-8
            click.echo(f"error: GET {url}: {getattr(e, 'reason', None) or e}", err=True)
            sys.exit(2)
    else:
        from pipeline.service.report import render_report

        if not (Path(snapshot) / "manifest.json").is_file():
            click.echo(f"error: {snapshot!r} is not a snapshot folder (no manifest.json)", err=True)
            sys.exit(2)
        html = render_report(Path(snapshot))
    Path(out).write_text(html, encoding="utf-8")
    click.echo(f"wrote {out} ({len(html) / 1e6:.1f} MB, self-contained)")
