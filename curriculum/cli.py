"""``assay curriculum …``: order a snapshot into training phases."""

from __future__ import annotations

import json

import click


@click.group("curriculum")
def curriculum() -> None:
    """Curriculum building: difficulty signals, phases, mixing, deterministic order."""


@curriculum.command("build")
@click.argument("snapshot", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option(
    "--phases",
    default="stable:0.9,anneal:0.1",
    show_default=True,
    help="Phases in training order as NAME:TOKEN_SHARE; later phases get the "
    "highest-quality documents (the last one is the anneal phase).",
)
@click.option(
    "--mix",
    multiple=True,
    metavar="PHASE:DOMAIN=WEIGHT",
    help="Rescale a domain inside a phase (repeatable), e.g. anneal:literature=2. "
    "A domain is `source` up to its first ':' or '='.",
)
@click.option(
    "--order",
    type=click.Choice(["random", "easy-to-hard"]),
    default="random",
    show_default=True,
    help="Order of documents inside each phase.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Shuffle seed.")
@click.option(
    "--epoch",
    default=0,
    type=click.IntRange(min=0),
    show_default=True,
    help="Epoch: a different epoch gives a different (still deterministic) order.",
)
@click.option("--rows-per-shard", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--budget-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Scale the phases to this training budget (tokens) rather than to the whole snapshot, "
    "so a run of that budget reaches the anneal phase; documents that do not fit go to a "
    "trailing `rest` phase.",
)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Tokenizer folder (tokenizer.json) to count tokens with; default: whitespace words.",
)
def build(
    snapshot: str,
    output: str,
    phases: str,
    mix: tuple[str, ...],
    order: str,
    seed: int,
    epoch: int,
    rows_per_shard: int,
    budget_tokens: int | None,
    tokenizer: str | None,
) -> None:
    """Read SNAPSHOT (a folder with manifest.json), write the curriculum snapshot to OUTPUT.

    Shards get `phase`, `order` and `weight` columns plus `curriculum.*` signals; the manifest's
    extra.curriculum records phases, per-phase domain mixture and token counts.
    """
    from curriculum.build import build_curriculum, parse_mix

    try:
        manifest = build_curriculum(
            snapshot,
            output,
            phases=phases,
            mix=parse_mix(mix),
            order=order,
            seed=seed,
            epoch=epoch,
            rows_per_shard=rows_per_shard,
            budget_tokens=budget_tokens,
            tokenizer=tokenizer,
        )
    except (ValueError, FileNotFoundError) as e:  # not a snapshot, a bad --phases/--mix: one line
        raise click.UsageError(str(e)) from None
    cur = manifest["extra"]["curriculum"]
    for p in cur["phases"]:
        top = list(cur["mixture"][p["name"]].items())[:3]
        click.echo(
            f"{p['name']:>10}: {p['docs']:>7} docs {p['tokens']:>11,} {cur['token_unit']} "
            f"({p['token_frac']:.1%}) quality {p['mean_quality']} top domains "
            + ", ".join(f"{d} {s:.0%}" for d, s in top)
        )
    click.echo(json.dumps({"snapshot_id": manifest["snapshot_id"], "output": output}))
