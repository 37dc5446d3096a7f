"""``assay dedup minhash`` as a whole command vs a plain datasketch loop, same docs, fresh processes.

What a user times: start the command on a JSONL file, wait for the output. Both sides are
separate processes started the same way (``python -m ...``), timed from spawn to exit (wall)
and by the CPU seconds of the command's whole process tree (``bench._tree_cpu``: the bench
is a child subreaper and waits for every descendant), so interpreter start, imports, numba
cache loading, reading and writing all count.

- **assay**: ``python -m pipeline.cli dedup minhash IN OUT`` (remove mode, threshold 0.8,
  verified; one shard, one worker): snapshot = Parquet shards + manifest + LSH state.
- **datasketch loop**: the usual script (``bench/_datasketch_loop.py``): read the JSONL,
  ``MinHash(128)`` over lower-cased ``\\w+`` 5-gram shingles (``update_batch``),
  ``MinHashLSH(0.8)``, keep a doc unless it collides with a kept one, write the kept docs as
  JSONL. No verification, no union-find (cheaper work than assay does).

Run: ``python -m bench.dedup_cmd --docs 25000`` (``assay bench dedup_cmd``).
``--compare-tree DIR`` also runs the assay command from another checkout (e.g. ``git archive
COMMIT | tar -x -C DIR``), alternating with this one in the same loop: a change's own effect.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_in(cwd: Path, cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """:func:`_timed` with the command started in ``cwd`` (another checkout's tree)."""
    from bench._tree_cpu import run_cmd_measured

    try:
        r = run_cmd_measured(cmd, env, cwd=cwd)
        r["stdout"] = r["stdout"][-400:]
        return r
    except RuntimeError as e:
        raise SystemExit(str(e)) from None


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall from spawn to the last exit; CPU of the command and of every process it started
    (forkserver workers included: :mod:`bench._tree_cpu`)."""
    from bench._tree_cpu import run_cmd_measured

    try:
        r = run_cmd_measured(cmd, env)
        r["stdout"] = r["stdout"][-400:]
        return r
    except RuntimeError as e:
        raise SystemExit(str(e)) from None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="assay bench dedup_cmd", description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=25_000)
    ap.add_argument("--repeats", type=int, default=2, help="runs per side (best kept)")
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data"))
    ap.add_argument("--profile", action="store_true", help="also cProfile the assay command")
    ap.add_argument("--compare-tree", default=None, metavar="DIR",
                    help="also time the assay command run from this checkout, alternating")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from bench.dedup import load_corpus

    import os

    table = load_corpus(Path(args.data), args.docs)
    res: dict[str, Any] = {"docs": table.num_rows}
    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / "docs.jsonl"
        with open(inp, "w") as f:
            for i, t in zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist()):
                f.write(json.dumps({"id": i, "text": t}) + "\n")
        res["input_mb"] = inp.stat().st_size / 1e6
        env = dict(os.environ, PYTHONPATH=str(REPO))
        runs: dict[str, list[dict[str, Any]]] = {"assay": [], "datasketch": []}
        trees = {"assay": (REPO, env)}
        if args.compare_tree:
            other = Path(args.compare_tree).resolve()
            trees["assay@compare"] = (other, dict(os.environ, PYTHONPATH=str(other)))
            runs["assay@compare"] = []
        for k in range(args.repeats):
            for side, (tree, tenv) in trees.items():
                r = run_in(tree, [sys.executable, "-m", "pipeline.cli", "dedup", "minhash", str(inp),
                                  str(Path(d) / f"out{k}-{side}")], tenv)
                runs[side].append(r)
            runs["datasketch"].append(_timed(
                [sys.executable, str(REPO / "bench" / "_datasketch_loop.py"), str(inp),
                 str(Path(d) / f"ds{k}.jsonl")], env))
        for side, rs in runs.items():
            res[side] = min(rs, key=lambda r: r["cpu_s"]) | {"all_cpu_s": [r["cpu_s"] for r in rs]}
        if args.compare_tree:
            res["compare_tree"] = str(Path(args.compare_tree).resolve())
            theirs = [f for k in range(args.repeats)
                      for f in sorted((Path(d) / f"out{k}-assay@compare" / "shards").glob("*.parquet"))]
            res["compare_same_shards"] = bool(theirs) and all(
                (f.parent.parent.parent / f.parent.parent.name.replace("-assay@compare", "-assay")
                 / "shards" / f.name).read_bytes() == f.read_bytes() for f in theirs)
        res["ratio_cpu"] = res["datasketch"]["cpu_s"] / res["assay"]["cpu_s"]
        res["ratio_wall"] = res["datasketch"]["wall_s"] / res["assay"]["wall_s"]
        base = _timed([sys.executable, "-c", "pass"], env)
        res["python_start_cpu_s"] = base["cpu_s"]
        if args.profile:
            prof = Path(d) / "assay.prof"
            _timed([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "pipeline.cli", "dedup",
                    "minhash", str(inp), str(Path(d) / "outp")], env)
            import pstats

            st = pstats.Stats(str(prof))
            st.sort_stats("cumulative").print_stats(25)
    print(f"{res['docs']} docs ({res['input_mb']:.1f} MB JSONL), fresh processes, best of {args.repeats}:")
    for side in [s for s in ("assay", "assay@compare", "datasketch") if s in res]:
        r = res[side]
        print(f"  {side:13s} wall {r['wall_s']:6.2f} s  CPU {r['cpu_s']:6.2f} s  (all CPU: {r['all_cpu_s']})")
    print(f"  -> assay is {res['ratio_cpu']:.1f}x by CPU-seconds, {res['ratio_wall']:.1f}x by wall "
          f"(bare `python -c pass`: {res['python_start_cpu_s']:.2f} CPU-s)")
    if args.compare_tree:
        print(f"  assay@compare = {res['compare_tree']}: {res['assay@compare']['cpu_s'] / res['assay']['cpu_s']:.2f}x "
              f"this tree's CPU (output shards identical: {res['compare_same_shards']})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
