"""``synth.generate``: new documents from seed documents, with provenance, cached and verified.

For every selected seed row and every sample index ``0..samples-1`` the stage builds the task's
conversation, looks the request up in the SQLite request cache, generates what is missing in
batches (each batch committed to the cache as soon as it returns, so a killed job resumes
without regenerating), parses the completions and — for ``reasoning`` — runs each program in
the sandbox and keeps a sample only if

- its executed result equals its stated answer, and
- with a reference answer (``reference_field``): equals the reference; without one: equals the
  self-consistency majority over the seed's samples (``min_votes``, default a strict majority
  of ``samples``).

Output rows are new documents (``source = "synth/<task>"``, ``doc_id`` from seed id, task,
sample and text) with provenance columns ``synth.model``, ``synth.backend``, ``synth.task``,
``synth.template_hash``, ``synth.seed_doc_id``, ``synth.sample``, ``synth.seed``,
``synth.params``, ``synth.verdict``, ``synth.votes``... Seeds themselves go on only with
``keep_seeds``; otherwise they are recorded as dropped (``synth.seed``), so that with
``write_dropped`` nothing is lost. Rejected samples are dropped with their reason
(``synth.wrong_answer``, ``synth.unparseable``, ...). Counters: ``generated`` (new rows made,
which the run's balance adds to ``docs_in``), ``synth.cache_hits``, ``synth.requests_generated``,
``synth.completion_tokens_generated``.

Seeds are deterministic: each request's sampling seed is derived from (``seed``, template
hash, seed doc id, sample index), so a rerun asks the engine for exactly the same thing.
The engine loads in ``setup()`` — once per worker process or Ray actor — and is shared by the
stages of that process that use the same backend, model and options.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import PathField, Resources, Stage, StageConfig, StageContext

COLUMNS: dict[str, pa.DataType] = {
    "synth.model": pa.string(), "synth.backend": pa.string(), "synth.task": pa.string(),
    "synth.template_hash": pa.string(), "synth.seed_doc_id": pa.string(), "synth.sample": pa.int32(),
    "synth.seed": pa.int64(), "synth.params": pa.string(), "synth.verdict": pa.string(),
    "synth.votes": pa.int32(), "synth.reason": pa.string(), "synth.prompt_tokens": pa.int32(),
    "synth.completion_tokens": pa.int32(), "synth.finish_reason": pa.string(),
    "synth.question": pa.string(), "synth.answer": pa.string(), "synth.grounding": pa.float64(),
    "synth.program": pa.string(), "synth.result": pa.string(), "synth.reference": pa.string(),
    "synth.critique": pa.string(), "synth.original": pa.large_string(),
}


class SynthConfig(StageConfig):
    task: Literal["rewrite", "qa", "reasoning", "critique"] = Field(description="what to generate")
    backend: Literal["vllm", "hf", "openai"] = "vllm"
    model: str = PathField("smollm2-135m-instruct", kind="model",
                           description="local folder, hub id, smollm2-135m-instruct or tiny-random-llama")
    device: Literal["cpu", "cuda"] = Field("cpu", description="cuda: the stage declares gpus = 1")
    base_url: str | None = Field(None, description="openai backend: http://host:port/v1")
    served_model: str | None = Field(None, description="openai backend: model name on the server (default: model)")
    api_key_env: str | None = Field(None, description="openai backend: name of the env var holding the API key")
    samples: int = Field(1, ge=1, le=64, description="completions per seed (k)")
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, description="base seed; each request's seed derives from it")
    max_chars: int = Field(3000, ge=16, le=100_000, description="seed text is cut to this many characters")
    quality_column: str | None = Field(None, description="pick seeds whose column >= min_quality")
    min_quality: float | None = None
    keep_seeds: bool = Field(False, description="pass seed rows through beside the new ones")
    reference_field: str = Field("reference", description="reasoning: column with a reference answer (optional)")
    min_votes: int | None = Field(None, ge=1, description="reasoning without reference: votes needed (default: > samples/2)")
    keep_unverified: bool = Field(False, description="reasoning: keep rejected samples (their verdict says why)")
    min_grounding: float = Field(0.5, ge=0.0, le=1.0, description="qa: drop answers with fewer document words")
    constitution: str | None = PathField(None, description="critique: TOML file with rules = [...]")
    constitution_rules: list[str] | None = Field(None, description="critique: the rules inline")
    cache: str | None = PathField(None, description="SQLite request cache (default $ASSAY_CACHE/synth/requests.sqlite)")
    request_batch: int = Field(64, ge=1, le=4096, description="requests per engine call (each committed to the cache)")
    max_model_len: int = Field(2048, ge=64)
    prefix_caching: bool = True
    hf_batch_size: int = Field(8, ge=1)
    sandbox_wall_s: float = Field(10.0, gt=0, le=300)
    sandbox_cpu_s: int = Field(5, ge=1, le=300)

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if (self.quality_column is None) != (self.min_quality is None):
            raise ValueError("set quality_column and min_quality together")
        if self.task == "critique" and not (self.constitution or self.constitution_rules):
            raise ValueError("task 'critique' needs constitution (a TOML file) or constitution_rules")
        return self


def derive_seed(base: int, template_hash: str, seed_doc_id: str, sample: int) -> int:
    h = hashlib.sha256(f"{base}:{template_hash}:{seed_doc_id}:{sample}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def default_cache_path() -> str:
    from synth.models import cache_dir

    return str(cache_dir() / "synth" / "requests.sqlite")


@register
class SynthGenerateStage(Stage):
    """Generate synthetic documents (rewrite, qa, reasoning, critique) from seed documents."""

    kind = "synth.generate"
    Config = SynthConfig
    summary = "synthetic documents from seeds (textbook rewrite, grounded Q&A, verified reasoning, critique) via vllm/openai/hf"
    inputs = (schema.TEXT, schema.DOC_ID)
    outputs = tuple(COLUMNS)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=4.0)
    config: SynthConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        from synth.tasks import make_task

        c = self.config
        self.resources = Resources(cpus=1.0, gpus=1.0 if c.device == "cuda" else 0.0, memory_gb=4.0)  # type: ignore[misc]
        try:
            self.task = make_task(c.task, c.max_chars, c.constitution, c.constitution_rules)
        except ValueError as e:
            from pipeline.spec import SpecError

            raise SpecError(f"spec error: {self.name}: {e}") from None
        self.backend = None
        self.cache = None
        self.sandbox = None

    # -- lifecycle ----------------------------------------------------------------------------

    def setup(self) -> None:
        from synth.backends import make_backend
        from synth.cache import RequestCache
        from synth.models import model_fingerprint, resolve_model

        c = self.config
        if c.backend == "openai":
            key = os.environ.get(c.api_key_env) if c.api_key_env else None
            self.model_id = c.served_model or c.model
            self.fingerprint = f"openai:{c.base_url}:{self.model_id}"
            self.backend = make_backend("openai", self.model_id, base_url=c.base_url, api_key=key)
        else:
            path = resolve_model(c.model)
            self.model_id = c.model
            self.fingerprint = model_fingerprint(path)
            if c.backend == "vllm":
                self.backend = make_backend("vllm", path, max_model_len=c.max_model_len,
                                            prefix_caching=c.prefix_caching, device=c.device)
            else:
                self.backend = make_backend("hf", path, batch_size=c.hf_batch_size,
                                            device="cuda" if c.device == "cuda" else "cpu")
        self.cache = RequestCache(c.cache or default_cache_path())
        if c.task == "reasoning":
            from synth.sandbox import Sandbox, SandboxLimits

            self.sandbox = Sandbox(SandboxLimits(wall_s=c.sandbox_wall_s, cpu_s=c.sandbox_cpu_s))
            self.sandbox.check()  # fails loudly, before any generation, if there is no sandbox

    def teardown(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # -- work -----------------------------------------------------------------------------------

    def _params(self):  # type: ignore[no-untyped-def]
        from synth.backends import GenParams

        c = self.config
        return GenParams(max_tokens=c.max_tokens, temperature=c.temperature, top_p=c.top_p)

    def complete(self, seeds: list[tuple[str, str]], ctx: StageContext | None = None) -> list[list[Any]]:
        """Completions for (seed_doc_id, text) pairs: ``samples`` each, from the cache or the engine."""
        from synth.cache import request_key

        assert self.backend is not None and self.cache is not None, "setup() first"
        c = self.config
        params = self._params()
        pdict = params.as_dict()
        th = self.task.template_hash
        reqs = []
        for doc_id, text in seeds:
            conv = self.task.conversation(text)
            for s in range(c.samples):
                key = request_key(self.backend.name, self.fingerprint, th, pdict, doc_id, s, conv)
                reqs.append((key, doc_id, s, conv, derive_seed(c.seed, th, doc_id, s)))
        have = self.cache.get_many([r[0] for r in reqs])
        missing = [r for r in reqs if r[0] not in have]
        if ctx is not None:
            ctx.add("synth.cache_hits", len(reqs) - len(missing))
        for i in range(0, len(missing), c.request_batch):
            part = missing[i:i + c.request_batch]
            outs = self.backend.generate([r[3] for r in part], params, [r[4] for r in part])
            self.cache.put_many([(r[0], self.fingerprint, th, r[1], r[2], o) for r, o in zip(part, outs, strict=True)])
            for r, o in zip(part, outs, strict=True):
                have[r[0]] = o
            if ctx is not None:
                ctx.add("synth.requests_generated", len(part))
                ctx.add("synth.completion_tokens_generated", sum(o.completion_tokens for o in outs))
        per_seed: list[list[Any]] = []
        for j in range(len(seeds)):
            per_seed.append([(reqs[j * c.samples + s], have[reqs[j * c.samples + s][0]]) for s in range(c.samples)])
        return per_seed

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        import numpy as np
        import pyarrow.compute as pc

        c = self.config
        if table.num_rows == 0:
            return table
        if self.backend is None:
            self.setup()
        if c.quality_column:
            if c.quality_column not in table.column_names:
                raise ValueError(f"{self.name}: quality_column {c.quality_column!r} is not a column of the input "
                                 f"(has {table.column_names}); run its scorer stage first")
            q = pc.fill_null(table.column(c.quality_column).cast(pa.float64()), -np.inf)
            selected = np.asarray(pc.greater_equal(q, c.min_quality).to_numpy(zero_copy_only=False), dtype=bool)
        else:
            selected = np.ones(table.num_rows, dtype=bool)
        sel_table = table.filter(pa.array(selected))
        ids = sel_table.column(schema.DOC_ID).to_pylist()
        texts = sel_table.column(schema.TEXT).to_pylist()
        urls = sel_table.column(schema.URL).to_pylist()
        refs: list[Any] = [None] * len(ids)
        if c.task == "reasoning" and c.reference_field in sel_table.column_names:
            refs = [None if r is None else str(r) for r in sel_table.column(c.reference_field).to_pylist()]
        ctx.add("synth.seeds", len(ids))
        completions = self.complete(list(zip(ids, [t or "" for t in texts], strict=True)), ctx)
        rows: list[dict[str, Any]] = []
        params_json = json.dumps({**self._params().as_dict(), "seed": c.seed}, sort_keys=True)
        for doc_id, text, url, ref, samples in zip(ids, texts, urls, refs, completions, strict=True):
            group = []
            for (key, _, s, _conv, rseed), comp in samples:
                fields = self.task.parse(comp.text, text or "")
                row = {
                    "synth.model": self.model_id, "synth.backend": self.backend.name, "synth.task": c.task,
                    "synth.template_hash": self.task.template_hash, "synth.seed_doc_id": doc_id,
                    "synth.sample": s, "synth.seed": rseed, "synth.params": params_json,
                    "synth.prompt_tokens": comp.prompt_tokens, "synth.completion_tokens": comp.completion_tokens,
                    "synth.finish_reason": comp.finish_reason, "_url": url, "_drop": None,
                    "text": comp.text.strip(),
                }
                row.update(fields)
                if c.task == "qa" and row["_drop"] is None and row["synth.grounding"] < c.min_grounding:
                    row["_drop"] = "synth.ungrounded"
                group.append(row)
            if c.task == "reasoning":
                self._verify_group(group, ref)
            rows.extend(group)
        ctx.add("generated", len(rows))
        new = self._to_table(rows)
        keep = np.array([r["_drop"] is None for r in rows], dtype=bool)
        if len(rows) and not keep.all():
            dropped = new.filter(pa.array(~keep))
            ctx.drop(dropped, [r["_drop"] for r in rows if r["_drop"] is not None])
        new = new.filter(pa.array(keep)) if len(rows) else new
        if c.keep_seeds:
            return pa.concat_tables([table, new], promote_options="permissive")
        ctx.drop(table.filter(pa.array(~selected)), "synth.not_selected")
        ctx.drop(sel_table, "synth.seed")
        return new

    def _verify_group(self, group: list[dict[str, Any]], reference: str | None) -> None:
        """Sandbox-run each sample's program, then keep by reference or self-consistency."""
        from synth.verify import answer_key, judge

        assert self.sandbox is not None
        todo = [r for r in group if r["_drop"] is None]
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda r: self.sandbox.run(r["synth.program"]), todo))
        for r, run in zip(todo, runs, strict=True):
            v = judge(run, r["synth.answer"], reference)
            r["synth.verdict"], r["synth.result"], r["synth.reason"] = v.verdict, v.result, v.reason
            r["synth.reference"] = reference
        for r in group:
            if r["_drop"] is not None:  # unparseable: no program to run
                r["synth.verdict"] = "error"
                r["synth.reason"] = r.get("synth.reason") or "no program/answer in the completion"
        ok = [r for r in todo if r["synth.verdict"] == "verified"]
        votes: dict[str, int] = {}
        for r in ok:
            k = answer_key(r["synth.result"])
            votes[k] = votes.get(k, 0) + 1
        for r in todo:
            if r["synth.verdict"] == "verified":
                r["synth.votes"] = votes[answer_key(r["synth.result"])]
        if reference is None and ok:
            need = self.config.min_votes or (self.config.samples // 2 + 1)
            best = max(votes.values())
            winners = [k for k, n in votes.items() if n == best]
            for r in ok:
                k = answer_key(r["synth.result"])
                if best < need or len(winners) > 1 or k != winners[0]:
                    r["synth.verdict"] = "wrong_answer"
                    r["synth.reason"] = (f"not the self-consistency majority: {r['synth.votes']} of {self.config.samples} "
                                         f"samples agree, {need} needed")
                else:
                    r["synth.reason"] = f"executed == stated == majority ({best} of {self.config.samples})"
        if not self.config.keep_unverified:
            for r in todo:
                if r["synth.verdict"] != "verified":
                    r["_drop"] = f"synth.{r['synth.verdict']}"

    def _to_table(self, rows: list[dict[str, Any]]) -> pa.Table:
        cols: dict[str, pa.Array] = {}
        doc_ids = [schema.make_doc_id(f"synth:{r['synth.task']}:{r['synth.seed_doc_id']}:{r['synth.sample']}", r["text"])
                   for r in rows]
        cols[schema.DOC_ID] = pa.array(doc_ids, pa.string())
        cols[schema.TEXT] = pa.array([r["text"] for r in rows], pa.large_string())
        cols[schema.SOURCE] = pa.array([f"synth/{r['synth.task']}" for r in rows], pa.string())
        cols[schema.URL] = pa.array([r["_url"] for r in rows], pa.string())
        for name, typ in COLUMNS.items():
            cols[name] = pa.array([r.get(name) for r in rows], typ)
        return pa.table(cols)
