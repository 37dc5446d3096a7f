"""The ``assay`` command line.

    assay run SPEC.toml [--input PATH ...] [--output DIR] [--ray auto|ADDRESS]
    assay stages                      # every stage kind with its config fields
    assay stage KIND INPUT OUTPUT [--set key=value ...]
    assay bench NAME [ARGS ...]       # us vs the peer, same data, same run
    assay show SNAPSHOT               # a snapshot's manifest summary

Subcommand groups of other packages (``dedup``, ``classifier``, ``curriculum``, ``train``,
``eval``) load lazily, so ``assay --help`` never imports torch or Ray.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from pipeline import __version__

#: lazily loaded subcommand groups: name -> "module:attribute"
LAZY_GROUPS: dict[str, str] = {
    "dedup": "dedup.cli:dedup",
    "classifier": "classifiers.cli:classifier",
    "curriculum": "curriculum.cli:curriculum",
    "train": "trainer_bridge.cli:train",
    "eval": "trainer_bridge.cli:eval_group",
    "synth": "synth.cli:synth",
    "serve": "pipeline.service.cli:serve",
    "token": "pipeline.service.cli:token",
    "report": "pipeline.service.cli:report",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        for name, target in LAZY_GROUPS.items():
            if importlib.util.find_spec(target.split(":")[0]) is not None:
                names.add(name)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_GROUPS:
            return cmd
        mod, attr = LAZY_GROUPS[name].split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise click.ClickException(f"`assay {name}` is unavailable: {e}") from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="assay")
def main() -> None:
    """assay: curate web shards into snapshots for pretraining compact language models.

    Start with `assay stages` to see what a spec can use, `assay run SPEC.toml` to run one,
    and `assay show SNAPSHOT` to look at what came out.
    """
    _check_env()


def _check_env() -> None:
    """The ASSAY_* variables and NUMBA_CACHE_DIR that name folders, checked before any work: a bad
    one is one line naming it (it was a traceback mid-run: ASSAY_TRACE in the first traced span,
    ASSAY_CACHE when a model or a remote snapshot was first cached, NUMBA_CACHE_DIR when the
    first kernel module was imported)."""
    import os

    trace = os.environ.get("ASSAY_TRACE")
    if trace:
        try:
            Path(trace).mkdir(parents=True, exist_ok=True)  # every traced process appends a file there
        except OSError as e:
            _fail(f"ASSAY_TRACE={trace!r}: not a folder one can write to ({e.strerror or e})")
    cache = os.environ.get("ASSAY_CACHE")
    if cache:
        p = Path(cache).absolute()
        while not p.exists() and p != p.parent:
            p = p.parent
        if not p.is_dir():
            _fail(f"ASSAY_CACHE={cache!r}: {str(p)!r} is a file, not a folder (the cache folder is made under it)")
    if os.environ.get("NUMBA_CACHE_DIR"):  # numba's kernel cache: made and written on the first kernel
        from pipeline._numba_cache import CacheDirError, check_cache_dir

        try:
            check_cache_dir()
        except CacheDirError as e:
            _fail(str(e))


def _size_words(t: dict) -> str:
    """``12,345 words`` (+ ``, 15,000 tokens`` when a tokenizer counted them); old manifests
    called their whitespace word count ``tokens``."""
    words = t.get("words", t.get("tokens") if "words" not in t else None) or 0
    out = f"{words:,} words"
    if "words" in t and t.get("tokens") is not None:
        out += f", {t['tokens']:,} tokens"
    return out


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@main.command()
@click.argument("spec_path", metavar="SPEC.toml", type=click.Path(dir_okay=False))
@click.option("--input", "inputs", multiple=True, help="input file/folder/glob; replaces the spec's input.paths (repeatable)")
@click.option("--output", help="output folder; replaces the spec's output.dir")
@click.option("--ray", "ray", metavar="auto|ADDRESS", help="run on Ray: `auto` starts/joins a local cluster, or a cluster address")
@click.option("--workers", type=click.IntRange(1, 1024), help="local worker processes (default: the spec's execution.workers)")
@click.option("--partitions", type=click.IntRange(1, 4096),
              help="partitions of each barrier reduce (default: workers, or the Ray cluster's CPUs); output is the same")
@click.option("--progress/--no-progress", default=True, show_default=True, help="progress bars on stderr")
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON instead of the table")
def run(spec_path: str, inputs: tuple[str, ...], output: str | None, ray: str | None, workers: int | None,
        partitions: int | None, progress: bool, as_json: bool) -> None:
    """Run a pipeline spec end to end and write a snapshot (resumes a killed run)."""
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec, SpecError

    try:
        spec = PipelineSpec.from_toml(spec_path)
        if inputs or output:
            spec = spec.with_overrides(list(inputs) or None, output)
        manifest = run_spec(spec, ray=ray, progress=progress, workers=workers, partitions=partitions)
    except SpecError as e:
        _fail(str(e))
        return
    except OSError as e:
        from pipeline.storage import is_disk_full

        if not is_disk_full(e):
            raise
        _fail(f"no space left on the device holding {spec.output.dir!r} ({e.strerror or e}); nothing written so far is "
              "lost or corrupt: free space (or grow the volume) and run the same command again to resume")
        return
    _report(spec.output.dir, manifest, as_json)


def _report(out: str, manifest: dict[str, Any], as_json: bool) -> None:
    from pipeline import storage

    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    root = storage.as_loc(out)
    stats = storage.read_json(root / "stats.json")
    click.echo(format_stats_table(stats))
    t = manifest["totals"]
    click.echo(
        f"\nsnapshot {manifest['snapshot_id']}: {t['rows']:,} docs, {t['shards']} shard(s), "
        f"{t['bytes'] / 1e6:.2f} MB, {_size_words(t)}\n  at {root / 'manifest.json'}"
    )
    if stats["quarantined"]:
        click.echo(f"  quarantined: {stats['quarantined']} record(s) in {root / 'quarantine'}")
    gen = f" + generated {stats['generated']:,}" if stats.get("generated") else ""
    click.echo(
        f"  balance: in {stats['docs_in']:,}{gen} = kept {stats['kept']:,} + dropped {stats['dropped']:,} "
        f"+ quarantined {stats['quarantined']:,}  [{'ok' if stats['balanced'] else 'UNBALANCED'}]"
    )


def format_stats_table(stats: dict[str, Any]) -> str:
    """The per-stage table: docs in/out, dropped by reason, MB/s."""
    head = f"{'stage':<26}{'docs in':>10}{'docs out':>10}{'dropped':>9}{'MB/s':>9}{'docs/s':>10}  dropped/quarantined by reason"
    lines = [head, "-" * len(head)]
    for s in stats["stages"]:
        reasons = {**s["dropped"], **{f"q:{k}": v for k, v in s["quarantined"].items()}}
        why = ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        n_drop = sum(s["dropped"].values()) + sum(s["quarantined"].values())
        mbs = f"{s['mb_per_s']:.1f}" if s.get("mb_per_s") else "-"
        dps = f"{s['docs_per_s']:,.0f}" if s.get("docs_per_s") else "-"
        lines.append(f"{s['name'][:25]:<26}{s['docs_in']:>10,}{s['docs_out']:>10,}{n_drop:>9,}{mbs:>9}{dps:>10}  {why}")
    lines.append(f"total wall time {stats['wall_s']:.1f} s")
    return "\n".join(lines)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def stages(as_json: bool) -> None:
    """List every registered stage kind with its config fields and defaults."""
    from pipeline.registry import all_stages
    from pipeline.stage import BarrierStage, FilterStage, ScoreStage

    out = []
    for kind, cls in all_stages().items():
        shape = ("barrier" if issubclass(cls, BarrierStage) else "filter" if issubclass(cls, FilterStage)
                 else "score" if issubclass(cls, ScoreStage) else "transform")
        fields = []
        for name, f in cls.Config.model_fields.items():
            default = None if f.is_required() else f.get_default(call_default_factory=True)
            fields.append({"name": name, "type": _type_name(f.annotation), "default": default,
                           "required": f.is_required(), "help": f.description or ""})
        out.append({"kind": kind, "shape": shape, "summary": cls.summary or (cls.__doc__ or "").strip().split("\n")[0],
                    "inputs": list(cls.inputs), "outputs": list(cls.outputs), "config": fields})
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for s in out:
        click.echo(f"{s['kind']}  [{s['shape']}]  {s['summary']}")
        for f in s["config"]:
            shown = repr(f["default"])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            d = "required" if f["required"] else f"default {shown}"
            click.echo(f"    {f['name']}: {f['type']} ({d}){'  - ' + f['help'] if f['help'] else ''}")
        click.echo("")


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _parse_value(raw: str) -> Any:
    """``--set`` values: TOML literals (numbers, booleans, ["lists"], "strings"), else a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


@main.command("stage")
@click.argument("kind")
@click.argument("input_path", metavar="INPUT")
@click.argument("output", metavar="OUTPUT")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="stage config field (repeatable); values are TOML literals")
@click.option("--text-field", default="text", show_default=True, help="input field holding the text")
@click.option("--progress/--no-progress", default=True, show_default=True)
def stage_cmd(kind: str, input_path: str, output: str, settings: tuple[str, ...], text_field: str, progress: bool) -> None:
    """Run one stage KIND alone on a JSONL/Parquet/WARC file or folder, writing a snapshot to OUTPUT.

    Example: assay stage filter.gopher_quality pages.jsonl out/ --set min_doc_words=80
    """
    from pipeline.run import run_spec, single_stage_spec
    from pipeline.spec import SpecError

    config: dict[str, Any] = {}
    for s in settings:
        if "=" not in s:
            _fail(f"--set {s!r}: expected KEY=VALUE")
        k, v = s.split("=", 1)
        config[k.strip()] = _parse_value(v.strip())
    try:
        spec = single_stage_spec(kind, config, [input_path], output, text_field=text_field)
        manifest = run_spec(spec, progress=progress)
    except SpecError as e:
        _fail(str(e))
        return
    _report(Path(output), manifest, False)


@main.command()
@click.argument("snapshot")
def show(snapshot: str) -> None:
    """Summarize a snapshot (folder or URL: s3://, gs://, any fsspec URL): id, spec, shards, columns, counts."""
    from pipeline.run import load_manifest

    try:
        m = load_manifest(snapshot)
    except (OSError, ValueError) as e:  # a missing folder or object, a bad URL, an unreachable store
        _fail(str(e))
        return
    t = m["totals"]
    click.echo(f"snapshot {m['snapshot_id']}  ({m['name']}, assay {m['code_version']})")
    click.echo(f"  {t['rows']:,} docs in {t['shards']} shard(s), {t['bytes'] / 1e6:.2f} MB, {_size_words(t)}")
    click.echo(f"  stages: {' -> '.join(s['kind'] for s in m['spec']['stages']) or '(none)'}")
    click.echo(f"  columns: {', '.join(c['name'] for c in m['schema'])}")
    st = m["stats"]
    click.echo(f"  in {st['docs_in']:,} = kept {st['kept']:,} + dropped {st['dropped']:,} + quarantined {st['quarantined']:,}")
    if m.get("parents"):
        click.echo(f"  parents: {', '.join(m['parents'])}")


@main.command()
@click.argument("snapshot")
def verify(snapshot: str) -> None:
    """Check every shard of SNAPSHOT (folder or URL) against its manifest: size, sha256, rows.

    Exits 1 and names each bad shard when one does not match (bit rot, a truncated copy, an
    edited file).
    """
    from pipeline.manifest import verify_snapshot

    try:
        manifest, problems = verify_snapshot(snapshot)
    except (OSError, ValueError) as e:  # a missing folder or object, a bad URL, an unreachable store
        _fail(str(e))
        return
    t = manifest["totals"]
    if problems:
        for p in problems:
            click.echo(f"CORRUPT {p}", err=True)
        click.echo(f"error: snapshot {manifest['snapshot_id']}: {len(problems)} problem(s) in {t['shards']} shards", err=True)
        sys.exit(1)
    click.echo(f"ok: snapshot {manifest['snapshot_id']}: {t['shards']} shards, {t['rows']:,} rows, "
               f"{t['bytes']:,} bytes verified by sha256")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(name: str, args: tuple[str, ...]) -> None:
    """Run benchmark NAME (pipeline, extract, filters, dedup, classifiers, trainer): us vs the peer.

    Arguments after NAME go to the benchmark; `assay bench NAME --help` lists them.
    """
    try:
        mod = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError:
        avail = sorted(p.stem for p in Path(importlib.import_module("bench").__path__[0]).glob("*.py") if not p.stem.startswith("_"))
        _fail(f"no benchmark {name!r}; available: {', '.join(avail)}")
        return
    mod.main(list(args))


if __name__ == "__main__":
    main()
