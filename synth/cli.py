"""`assay synth ...`: generate synthetic documents and verify programs in the sandbox.

    assay synth verify IN OUT [--program-field program] [--answer-field answer] ...
    assay synth generate SPEC.toml [--output DIR]      # see examples/synth.toml
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@click.group()
def synth() -> None:
    """Synthetic data: textbook rewrites, grounded Q&A, verified reasoning traces, critiques."""


@synth.command()
@click.argument("input_path", metavar="IN", type=click.Path(exists=True, dir_okay=False))
@click.argument("output_path", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--program-field", default="program", show_default=True)
@click.option("--answer-field", default="answer", show_default=True)
@click.option("--reference-field", default="reference", show_default=True)
@click.option("--wall-s", default=10.0, show_default=True, help="wall-time limit per program")
@click.option("--cpu-s", default=5, show_default=True, help="CPU-time limit per program")
@click.option("--memory-mb", default=512, show_default=True, help="address-space limit per program")
@click.option("--max-output-bytes", default=1_000_000, show_default=True)
@click.option("--workers", default=2, show_default=True, help="programs run at once")
def verify(input_path: str, output_path: str, program_field: str, answer_field: str, reference_field: str,
           wall_s: float, cpu_s: int, memory_mb: int, max_output_bytes: int, workers: int) -> None:
    """Run each row's program in the sandbox; write every row back with synth.verdict/result/reason.

    IN and OUT are JSONL (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet (.parquet). A program answers
    by printing its result as the LAST line of stdout; numbers compare with rel_tol 1e-6.
    """
    from pipeline.rowfiles import RowWriter, iter_row_chunks
    from synth.sandbox import Sandbox, SandboxLimits, SandboxUnavailable
    from synth.verify import COL_REASON, COL_RESULT, COL_VERDICT, ERROR, VERDICTS, Verdict, verify_programs

    if Path(output_path).resolve() == Path(input_path).resolve():
        _fail("OUT must differ from IN")
    try:
        sb = Sandbox(SandboxLimits(wall_s=wall_s, cpu_s=cpu_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes))
        sb.check()
    except SandboxUnavailable as e:
        _fail(f"sandbox unavailable, nothing was run: {e}")
        return
    counts: Counter[str] = Counter()
    writer = RowWriter(output_path)
    try:
        for rows in iter_row_chunks(input_path):
            todo = [(r.get(program_field), r.get(answer_field), r.get(reference_field)) for r in rows]
            verdicts = list(verify_programs(sb, todo, workers=workers))
            for r, v in zip(rows, verdicts, strict=True):
                if "_malformed" in r:
                    v = Verdict(ERROR, None, f"malformed input row: {r['_malformed']}")
                r[COL_VERDICT], r[COL_RESULT], r[COL_REASON] = v.verdict, v.result, v.reason
                counts[v.verdict] += 1
            writer.write(rows)
        writer.close()
    except BaseException:
        writer.tmp.unlink(missing_ok=True)
        raise
    total = sum(counts.values())
    click.echo(f"{total} row(s) -> {output_path}")
    for v in VERDICTS:
        click.echo(f"  {v:<13}{counts.get(v, 0):>6}")
    click.echo(json.dumps({"rows": total, **{v: counts.get(v, 0) for v in VERDICTS}}))


@synth.command()
@click.argument("job_path", metavar="JOB.toml", type=click.Path(dir_okay=False))
@click.option("--output", required=True, help="folder for one snapshot per task + summary.json")
@click.option("--progress/--no-progress", default=False, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def generate(job_path: str, output: str, progress: bool, as_json: bool) -> None:
    """Run a synth job (see examples/synth.toml): each [[tasks]] entry becomes a snapshot under OUTPUT.

    A killed job resumes: finished shards are skipped and every completion already in the
    request cache is reused, so nothing is generated twice.
    """
    from pipeline.spec import SpecError
    from synth.backends import BackendUnavailable
    from synth.job import format_summary, run_job
    from synth.sandbox import SandboxUnavailable

    try:
        results = run_job(job_path, output, progress=progress)
    except (SpecError, BackendUnavailable, SandboxUnavailable) as e:
        _fail(str(e))
        return
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
        return
    click.echo(format_summary(results))
    click.echo(f"\nsnapshots under {output}/<task>/, summary in {Path(output) / 'summary.json'}")
